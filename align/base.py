"""The translator contract (scikit-learn style) and its on-disk artifact: `config.json` + `model.safetensors`.

`Translator.fit(src, tgt)` -> self; `transform(x)` maps source rows to the target space, `inverse_transform`
the other way. Learned state ends with `_`. Saving writes JSON and safetensors only, so loading runs no code.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from align.errors import AlignError

FORMAT = "vecbridge-translator"
FORMAT_VERSION = 1

# method name -> "module:Class"; imported only when used so that `align` stays light to import.
METHODS = {
    "geometric": "align.geometric:GeometricTranslator",
    "vec2vec": "align.vec2vec:Vec2VecTranslator",
    "procrustes": "align.paired:ProcrustesTranslator",
    "ridge": "align.paired:RidgeTranslator",
    "mlp": "align.paired:MLPTranslator",
}


def translator_class(method: str) -> type[Translator]:
    if method not in METHODS:
        raise AlignError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    module, cls = METHODS[method].split(":")
    return getattr(importlib.import_module(module), cls)


def check_vectors(x, name: str = "input", dim: int | None = None, min_rows: int = 1) -> np.ndarray:
    """Validate a block of vectors at the boundary and return it as float32 (rows = items)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise AlignError(f"{name} has shape {x.shape}; expected a 2-D array (items x dims)")
    if not np.issubdtype(x.dtype, np.floating):
        raise AlignError(f"{name} has dtype {x.dtype}; expected float vectors")
    if dim is not None and x.shape[1] != dim:
        raise AlignError(f"{name} has {x.shape[1]} dims but the translator expects {dim}; "
                         "use vectors from the encoder the translator was trained on (or --reverse)")
    if x.shape[0] < min_rows:
        raise AlignError(f"{name} has {x.shape[0]} vectors; this method needs at least {min_rows}")
    x = x.astype(np.float32, copy=False)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise AlignError(f"{name}: row {int(np.argmax(bad))} contains NaN or inf ({int(bad.sum())} rows); "
                         "remove or re-embed them")
    zero = ~x.any(axis=1)
    if zero.any():
        raise AlignError(f"{name}: row {int(np.argmax(zero))} is all zeros ({int(zero.sum())} rows); "
                         "zero vectors have no direction to translate")
    return x


def select_pairs(src: np.ndarray, tgt: np.ndarray, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `src` and `tgt` named by an integer (k, 2) array of (source_row, target_row) index pairs."""
    idx = np.asarray(pairs)
    if idx.ndim != 2 or idx.shape[1] != 2 or not np.issubdtype(idx.dtype, np.integer):
        raise AlignError(f"pairs must be an integer array of shape (k, 2) = (source_row, target_row); "
                         f"got {idx.dtype} {idx.shape}")
    if idx.size and (idx.min() < 0 or idx[:, 0].max() >= len(src) or idx[:, 1].max() >= len(tgt)):
        raise AlignError("pairs index rows outside the source/target arrays")
    return src[idx[:, 0]], tgt[idx[:, 1]]


def package_versions(*names: str) -> dict:
    out = {"python": platform.python_version()}
    for name in ("vecbridge", "numpy", "torch", "faiss-cpu", "scikit-learn", "lightning", *names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


class Translator:
    """Base class: hyper-parameters in `__init__` only; subclasses implement fit/_forward/_backward/state."""

    method: str = ""
    min_rows: int = 2

    # -- scikit-learn style parameters -------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        return [k for k in inspect.signature(cls.__init__).parameters if k != "self"]

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in self.param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @classmethod
    def _upgrade(cls, params: dict, tensors: dict, state: dict) -> tuple[dict, dict, dict]:
        """Translate an artifact written by an earlier release of this method into the current layout."""
        return params, tensors, state

    # -- the contract ------------------------------------------------------------------------------
    def fit(self, src, tgt, pairs=None) -> Translator:
        raise NotImplementedError

    def _forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _backward(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _score_confidence(self, src: np.ndarray, tgt: np.ndarray) -> dict:
        """Set and return `confidence_`: the shared label-free score of this fitted translator."""
        from align.confidence import translation_confidence  # here: align.confidence imports this module

        try:
            self.confidence_ = translation_confidence(src, tgt, self.transform, self.inverse_transform)
        except AlignError as e:  # too few vectors to measure: say so instead of failing the fit
            self.confidence_ = {"score": None, "reason": str(e)}
        return self.confidence_

    def _check_fitted(self) -> None:
        if not hasattr(self, "dim_source_"):
            raise AlignError(f"this {type(self).__name__} is not fitted yet; call fit() or load() first")

    def transform(self, x, search: bool = False) -> np.ndarray:
        """Translate source-space rows into the target space (L2-normalised float32 rows). `search`: rows
        meant as queries against native target vectors (translators that support it; see `_search`)."""
        self._check_fitted()
        if search:
            self.check_search()
        x = check_vectors(x, "source vectors", self.dim_source_)
        return unit_rows(self._search(x, reverse=False) if search else self._forward(x)).numpy()

    def inverse_transform(self, y, search: bool = False) -> np.ndarray:
        """Translate target-space rows back into the source space (L2-normalised float32 rows)."""
        self._check_fitted()
        if search:
            self.check_search()
        y = check_vectors(y, "target vectors", self.dim_target_)
        return unit_rows(self._search(y, reverse=True) if search else self._backward(y)).numpy()

    supports_search = False  # whether `transform(..., search=True)` is available

    def check_search(self) -> None:
        """Raise a clear error when this translator has no search output (callers may check before any work)."""
        if not self.supports_search:
            raise AlignError(f"search output is not available for method {self.method!r}: it is only available "
                             "for geometric translators; translate without --search")

    def _search(self, x: np.ndarray, reverse: bool) -> np.ndarray:
        raise NotImplementedError

    # -- persistence: subclasses return/accept arrays and JSON-able state --------------------------
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        raise NotImplementedError

    def _set_state(self, tensors: dict[str, np.ndarray], state: dict) -> None:
        raise NotImplementedError

    def save(self, directory: str | os.PathLike, meta: dict | None = None, overwrite: bool = False) -> Path:
        """Write the artifact directory atomically (built beside it, then renamed into place)."""
        self._check_fitted()
        directory = Path(directory)
        if directory.exists() and not overwrite:
            raise AlignError(f"{directory} already exists; pass --overwrite or choose another directory")
        directory.parent.mkdir(parents=True, exist_ok=True)
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
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
                      str(tmp / "model.safetensors"))
            (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return directory

    @staticmethod
    def load(directory: str | os.PathLike, method: str | None = None) -> Translator:
        """Load an artifact directory: JSON config + safetensors weights; never executes stored code."""
        directory = Path(directory)
        cfg_path, weights = directory / "config.json", directory / "model.safetensors"
        if not directory.is_dir():
            raise AlignError(f"translator directory {directory} does not exist; train one with `vecbridge train`")
        if not cfg_path.exists() or not weights.exists():
            raise AlignError(f"{directory} is not a translator: it needs config.json and model.safetensors")
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise AlignError(f"{cfg_path} is corrupt ({e.msg}); retrain or restore the translator") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise AlignError(f"{cfg_path} is not a vecbridge translator config")
        if config.get("format_version") != FORMAT_VERSION:
            raise AlignError(f"{directory} has format version {config.get('format_version')}; "
                             f"this vecbridge reads version {FORMAT_VERSION}")
        if method is not None and config.get("method") != method:
            raise AlignError(f"{directory} holds a {config.get('method')!r} translator, not {method!r}")
        cls = translator_class(config.get("method", ""))
        try:
            tensors = load_file(str(weights))
        except Exception as e:  # safetensors raises its own error types for truncated/garbled files
            raise AlignError(f"{weights} is corrupt ({e}); retrain or restore the translator") from None
        try:
            params, tensors, state = cls._upgrade(dict(config.get("params", {})), dict(tensors),
                                                  dict(config.get("state") or {}))
            obj = cls(**params)
            obj.dim_source_, obj.dim_target_ = int(config["dim_source"]), int(config["dim_target"])
            obj.confidence_ = config.get("confidence")
            obj._set_state(tensors, state)
        except (KeyError, TypeError, ValueError) as e:
            raise AlignError(f"{directory} does not match the {cls.__name__} format ({e}); "
                             "it may be corrupt or from another vecbridge version") from None
        obj.config_ = config
        return obj


def unit_rows(x) -> torch.Tensor:
    """Rows scaled to unit L2 norm, as a float32 tensor (the one normalising helper used across `align`)."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    return torch.nn.functional.normalize(t.float(), dim=1)
