"""The translator contract (scikit-learn style) and its on-disk artifact: `config.json` + `model.safetensors`.

`Translator.fit(src, tgt)` -> self; `transform(x)` maps source rows to the target space, `inverse_transform`
the other way. Learned state ends with `_`. Saving writes JSON and safetensors only, so loading runs no code,
and loading checks everything it reads (schema, shapes, finite values) before a translator is built.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import os
import shutil
import types
import typing
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from align.confidence import REPORT_DRAWS, translation_confidence
from align.errors import AlignError
from align.vectors import check_vectors, package_versions, unit_rows

FORMAT = "vecbridge-translator"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
RESTORE = "retrain or restore the translator"

# method name -> "module:Class"; imported only when used so that `align` stays light to import.
METHODS = {
    "geometric": "align.geometric:GeometricTranslator",
    "vec2vec": "align.vec2vec:Vec2VecTranslator",
    "procrustes": "align.paired:ProcrustesTranslator",
    "ridge": "align.paired:RidgeTranslator",
    "mlp": "align.paired:MLPTranslator",
}

# config keys the artifact itself writes; `meta` given to `save` may not replace them
_CONFIG_KEYS = ("format", "format_version", "method", "params", "dim_source", "dim_target", "confidence", "state",
                "versions")


def default_method(paired: bool) -> str:
    """The method used when none is named: a paired fit when the sides are known pairs, else the unsupervised one."""
    return "procrustes" if paired else "geometric"


def translator_class(method: str) -> type[Translator]:
    if method not in METHODS:
        raise AlignError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    module, cls = METHODS[method].split(":")
    return getattr(importlib.import_module(module), cls)


def select_pairs(src: np.ndarray, tgt: np.ndarray, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `src` and `tgt` named by an integer (k, 2) array of (source_row, target_row) index pairs."""
    idx = np.asarray(pairs)
    if idx.ndim != 2 or idx.shape[1] != 2 or not np.issubdtype(idx.dtype, np.integer):
        raise AlignError(f"pairs must be an integer array of shape (k, 2) = (source_row, target_row); "
                         f"got {idx.dtype} {idx.shape}")
    if idx.size and (idx.min() < 0 or idx[:, 0].max() >= len(src) or idx[:, 1].max() >= len(tgt)):
        raise AlignError("pairs index rows outside the source/target arrays")
    return src[idx[:, 0]], tgt[idx[:, 1]]


class Translator:
    """Base class: hyper-parameters in `__init__` only; subclasses implement fit/_forward/_backward/state."""

    method: str = ""
    min_rows: int = 2
    # Capabilities, read by callers instead of signatures (as scikit-learn's estimator tags):
    supports_search = False  # whether `transform(..., search=True)` is available
    fit_options: frozenset[str] = frozenset()  # keyword arguments `fit` takes beyond `pairs`
    # numeric values every artifact of the method holds in its config's `state`
    state_numbers: tuple[str, ...] = ()

    # -- scikit-learn style parameters -------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        return [k for k in inspect.signature(cls.__init__).parameters if k != "self"]

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in self.param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- the contract ------------------------------------------------------------------------------
    def fit(self, src, tgt, pairs=None) -> Translator:
        raise NotImplementedError

    def _forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _backward(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _search(self, x: np.ndarray, reverse: bool) -> np.ndarray:
        raise NotImplementedError

    def _score_confidence(self, src: np.ndarray, tgt: np.ndarray) -> dict:
        """Set and return `confidence_`: the shared label-free score of this fitted translator."""
        try:
            self.confidence_ = translation_confidence(src, tgt, self.transform, self.inverse_transform,
                                                      draws=REPORT_DRAWS)
        except AlignError as e:  # too few vectors to measure: say so instead of failing the fit
            self.confidence_ = {"score": None, "reason": str(e)}
        return self.confidence_

    def _check_fitted(self) -> None:
        if not hasattr(self, "dim_source_"):
            raise AlignError(f"this {type(self).__name__} is not fitted yet; call fit() or load() first")

    def transform(self, x, search: bool = False) -> np.ndarray:
        """Translate source-space rows into the target space (L2-normalised float32 rows). `search`: rows
        meant as queries against native target vectors (translators that support it; see `_search`)."""
        return self._translate(x, reverse=False, search=search)

    def inverse_transform(self, y, search: bool = False) -> np.ndarray:
        """Translate target-space rows back into the source space (L2-normalised float32 rows)."""
        return self._translate(y, reverse=True, search=search)

    def _translate(self, x, reverse: bool, search: bool) -> np.ndarray:
        self._check_fitted()
        if search:
            self.check_search()
        if reverse:
            x = check_vectors(x, "target vectors", self.dim_target_)
            out = self._search(x, reverse=True) if search else self._backward(x)
        else:
            x = check_vectors(x, "source vectors", self.dim_source_)
            out = self._search(x, reverse=False) if search else self._forward(x)
        out = np.asarray(out if isinstance(out, np.ndarray) else out.numpy(), dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", out, out))
        if np.isfinite(norms).all():
            out = out if out.flags.writeable and out.base is None and out is not x else out.copy()
            out /= np.maximum(norms, 1e-12)[:, None]  # unit rows, in place (what `unit_rows` gives)
            return out
        out = unit_rows(out).numpy()  # rows too long for float32 norms, or NaN / inf
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            raise AlignError(f"translating produced NaN or inf in {int(bad.sum())} rows (first: row "
                             f"{int(np.argmax(bad))}); the translator is damaged or the input is extreme; "
                             f"check the input, or {RESTORE}")
        return out

    def check_search(self) -> None:
        """Raise a clear error when this translator has no search output (callers may check before any work)."""
        if not self.supports_search:
            raise AlignError(f"search output is not available for method {self.method!r}: it is only available "
                             "for geometric translators; translate without search output")

    # -- persistence: subclasses return/accept arrays and JSON-able state --------------------------
    def fingerprint(self) -> str:
        """sha256 of what decides this fitted translator's output: method, parameters, state and weights."""
        self._check_fitted()
        tensors, state = self._get_state()
        h = hashlib.sha256(json.dumps([self.method, self.get_params(), state], sort_keys=True, default=str).encode())
        for name in sorted(tensors):
            h.update(name.encode())
            h.update(np.ascontiguousarray(tensors[name]).tobytes())
        return h.hexdigest()

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        raise NotImplementedError

    def _set_state(self, tensors: dict[str, np.ndarray], state: dict) -> None:
        raise NotImplementedError

    def _tensor_shapes(self, state: dict) -> tuple[dict[str, tuple[int, ...]], set[str]]:
        """Shapes of the tensors an artifact of this translator holds (from its params, dims and `state`), and the
        names among them that may be absent."""
        raise NotImplementedError

    def save(self, directory: str | os.PathLike, meta: dict | None = None) -> Path:
        """Write the artifact into a new directory (an existing one is an error); a failed save removes what it
        made. Publishing it atomically beside other files is the caller's part (`vecbridge.jobs.save_translator`
        stages it under a temporary name)."""
        self._check_fitted()
        directory = Path(directory)
        clash = sorted(set(meta or {}) & set(_CONFIG_KEYS))
        if clash:
            raise AlignError(f"meta may not replace the artifact's own config keys: {', '.join(clash)}")
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            # not mkdtemp: its folder is private (0700); mkdir gives the artifact the user's usual permissions
            directory.mkdir()
        except FileExistsError:
            raise AlignError(f"{directory} already exists; save the translator to a new directory") from None
        tensors, state = self._get_state()
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "params": self.get_params(),
            "dim_source": int(self.dim_source_),
            "dim_target": int(self.dim_target_),
            "confidence": getattr(self, "confidence_", None),
            "state": state,
            "versions": package_versions(),
            **(meta or {}),
        }
        try:
            save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
                      str(directory / WEIGHTS_FILE))
            (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)  # only the directory this call made
            raise
        return directory

    @staticmethod
    def read_config(directory: str | os.PathLike) -> dict:
        """The validated `config.json` of a translator directory (no tensors read): format, version, a known
        method, positive integer dims, parameters the method accepts, finite state. Raises AlignError."""
        directory = Path(directory)
        if not directory.is_dir():
            raise AlignError(f"translator directory {directory} does not exist; train one or check the path")
        path = directory / CONFIG_FILE
        if not path.is_file():  # a FIFO or a directory would hang or fail to read
            what = "is missing" if not path.exists() else "is not a regular file"
            raise AlignError(f"{directory} is not a translator: {CONFIG_FILE} {what}")
        try:
            config = json.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise AlignError(f"{path} is damaged: it is not UTF-8 text; {RESTORE}") from None
        except json.JSONDecodeError as e:
            raise AlignError(f"{path} is damaged: not valid JSON ({e.msg}, line {e.lineno}); {RESTORE}") from None
        except OSError as e:
            raise AlignError(f"{path} cannot be read ({e.strerror})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise AlignError(f"{path} is not a vecbridge translator config")
        if config.get("format_version") != FORMAT_VERSION:
            raise AlignError(f"{directory} has format version {config.get('format_version')!r}; "
                             f"this vecbridge reads version {FORMAT_VERSION}")

        def damaged(what: str) -> AlignError:
            return AlignError(f"{path} is damaged: {what}; {RESTORE}")

        method = config.get("method")
        if method not in METHODS:
            raise damaged(f"unknown method {method!r} (known: {', '.join(METHODS)})")
        for key in ("dim_source", "dim_target"):
            if not _is_int(config.get(key)) or config[key] < 1:
                raise damaged(f"{key} is {config.get(key)!r}, not a positive integer")
        for key in ("params", "state"):
            if not isinstance(config.get(key), dict):
                raise damaged(f"{key} is missing or not an object")
        if not isinstance(config.get("confidence"), (dict, type(None))):
            raise damaged("confidence is not an object")
        cls = translator_class(method)
        hints = _init_hints(cls)
        for name, value in config["params"].items():
            if name not in hints:
                raise damaged(f"parameter {name!r} is not a {method} parameter")
            if not _accepts(hints[name], value):
                raise damaged(f"parameter {name} is {value!r}, not a valid {_type_name(hints[name])}")
        for name in cls.state_numbers:
            value = config["state"].get(name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise damaged(f"state {name} is {'missing' if value is None else repr(value)}, not a number")
        bad = _non_finite(config["state"])
        if bad:
            raise damaged(bad)
        return config

    @staticmethod
    def load(directory: str | os.PathLike, method: str | None = None) -> Translator:
        """Load an artifact directory: JSON config + safetensors weights, both fully validated; never executes
        stored code. Raises AlignError (one line: the file and what is wrong) for anything damaged."""
        directory = Path(directory)
        config = Translator.read_config(directory)
        if method is not None and config["method"] != method:
            raise AlignError(f"{directory} holds a {config['method']!r} translator, not {method!r}")
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            what = "is missing" if not weights.exists() else "is not a regular file"
            raise AlignError(f"{directory} is not a translator: {WEIGHTS_FILE} {what}")
        try:
            tensors = load_file(str(weights))
        except Exception as e:  # safetensors raises its own error types for truncated/garbled files
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise AlignError(f"{weights} is damaged ({reason}); {RESTORE}") from None

        def damaged(what: str) -> AlignError:
            return AlignError(f"{weights} is damaged: {what}; {RESTORE}")

        cls = translator_class(config["method"])
        obj = cls(**config["params"])
        obj.dim_source_, obj.dim_target_ = config["dim_source"], config["dim_target"]
        try:
            shapes, optional = obj._tensor_shapes(config["state"])
        except (AlignError, TypeError, ValueError) as e:  # parameters of the right types that no model accepts
            raise AlignError(f"{directory / CONFIG_FILE} is damaged: {e}; {RESTORE}") from None
        unexpected = sorted(set(tensors) - set(shapes))
        if unexpected:
            raise damaged(f"tensor {unexpected[0]!r} is not a {config['method']} tensor")
        for name, shape in shapes.items():
            if name not in tensors:
                if name in optional:
                    continue
                raise damaged(f"tensor {name!r} is missing")
            t = tensors[name]
            if t.dtype != np.float32:
                raise damaged(f"tensor {name!r} has dtype {t.dtype}, not float32")
            if tuple(t.shape) != tuple(shape):
                raise damaged(f"tensor {name!r} has shape {tuple(t.shape)}, expected {tuple(shape)}")
            if not np.isfinite(t).all():
                raise damaged(f"tensor {name!r} contains NaN or inf")
        obj.confidence_ = config.get("confidence")
        obj._set_state(tensors, config["state"])
        obj.config_ = config
        return obj


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _init_hints(cls: type) -> dict:
    """Parameter name -> type annotation of `cls.__init__` (None where there is none)."""
    hints = typing.get_type_hints(cls.__init__)
    return {name: hints.get(name) for name in cls.param_names()}


def _accepts(hint, value) -> bool:
    """Whether a JSON value fits a parameter annotation (numbers finite; lists stand for tuples)."""
    if hint is None or hint is typing.Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _is_int(value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint in (list, tuple) or origin in (list, tuple):
        return isinstance(value, (list, tuple))
    return True


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def _non_finite(value, where: str = "state") -> str | None:
    """Where the first non-finite number in a JSON value is and what it is ("state.target_scale is NaN"), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is {'NaN' if math.isnan(value) else 'inf'}"
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}")
        if found:
            return found
    return None
