"""Train, load, save, apply and evaluate translators on vector files: the jobs behind `train`, `translate`, `eval`.

Every input is checked before any work starts (files, sidecars, pairs, pivots, the output's place), and
every output goes through `safe_write`: staged, validated, published.
"""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from align import Translator, translator_class
from align.metrics import evaluate as evaluate_metrics
from align.vectors import check_vectors
from vecbridge import safe_write, storage
from vecbridge.errors import UserError, user_errors
from vecbridge.jobs import pivots as pivot_data

TRANSLATOR_FILES = {"config.json", "model.safetensors"}
# Fewest paired rows an evaluation ranks among: below it top-1 says nothing (1 row: top-1 is always 1.0).
MIN_EVAL_POOL = 10


def is_translator_dir(path: Path) -> bool:
    """Whether `path` is a translator directory vecbridge wrote (its config marker, nothing else inside)."""
    try:
        if not set(os.listdir(path)) <= TRANSLATOR_FILES:
            return False
        Translator.read_config(path)
    except (OSError, ValueError):
        return False
    return True


@user_errors
def load_translator(path: str | os.PathLike) -> Translator:
    """A translator directory, fully validated (schema, shapes, finite weights); never runs stored code."""
    return Translator.load(path)


def save_translator(translator: Translator, output: str | os.PathLike, meta: dict | None = None,
                    overwrite: bool = False) -> Path:
    """Publish `translator` at `output`: written beside it, re-loaded to validate, then renamed into place."""
    output = safe_write.check_dir_output(output, overwrite, is_translator_dir, "translator")
    with safe_write.disk_errors(output), safe_write.staged() as stage:
        tmp = stage.file(output)
        translator.save(tmp, meta=meta)
        Translator.load(tmp)
    return output


def read_pairs(path: str | os.PathLike | None) -> np.ndarray | None:
    """Known pairs: an integer (k, 2) .npy of (source_row, target_row); checked before it is loaded."""
    if path is None:
        return None
    path = storage.check_regular_file(path, "--pairs")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"--pairs {path} is not a readable .npy array ({str(e).splitlines()[0]}); give an integer "
                        "(k, 2) array of (source_row, target_row) saved with numpy.save") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype,
                                                                                                  np.integer):
        shape = getattr(arr, "shape", None)
        raise UserError(f"--pairs {path} must be an integer array of shape (k, 2) = (source_row, target_row); "
                        f"got {getattr(arr, 'dtype', type(arr).__name__)} {shape}")
    if len(arr) == 0:
        raise UserError(f"--pairs {path} holds no pairs")
    return np.array(arr)


def _check_params(cls, params: dict) -> None:
    accepted = set(cls.param_names())
    for name in params:
        if name not in accepted:
            raise UserError(f"parameter {name!r} does not apply to method {cls.method!r}; "
                            f"it takes: {', '.join(sorted(accepted))}")


def _encoder_names() -> dict[str, bool]:
    from encoders.registry import list_encoders

    return {e["name"]: bool(e.get("installed")) for e in list_encoders()}


def _check_pivots(names: list[str], cls) -> None:
    if not names:
        return
    if "pivots" not in inspect.signature(cls.fit).parameters:
        raise UserError(f"--pivot does not apply to method {cls.method!r} (only to geometric)")
    known = _encoder_names()
    for name in names:
        if name not in known:
            raise UserError(f"unknown encoder {name!r} for --pivot; built-in encoders: {', '.join(known)}")
        if not known[name]:
            raise UserError(f"pivot encoder {name!r} is not installed; install the models extra "
                            "(pip install -e '.[models]')")


@user_errors
def train_translator(source: str | os.PathLike, target: str | os.PathLike, output: str | os.PathLike, *,
                     method: str = "geometric", params: dict | None = None, pairs: str | os.PathLike | None = None,
                     pivots: list[str] | tuple[str, ...] = (), pivot_texts: str = pivot_data.DEFAULT_TEXTS,
                     pivot_rows: int = pivot_data.DEFAULT_ROWS, overwrite: bool = False) -> dict:
    """Fit a translator source -> target from two vector files and publish it at `output`.

    Returns the result: output, method, dims, seconds, the label-free confidence (and its verdict), the fit
    report and, for a low verdict, `warning` (what it means and what to try).
    """
    cls = translator_class(method)
    params = dict(params or {})
    _check_params(cls, params)
    inputs = [p for p in (source, target, pairs) if p is not None]
    safe_write.check_dir_output(output, overwrite, is_translator_dir, "translator", inputs=inputs)
    src_meta, tgt_meta = storage.read_sidecar(source), storage.read_sidecar(target)
    pair_index = read_pairs(pairs)
    pivot_names = list(dict.fromkeys(pivots))  # in the order given, each once
    _check_pivots(pivot_names, cls)
    if pivot_rows < 1:
        raise UserError(f"--pivot-rows must be a positive number of texts, got {pivot_rows}")
    translator = cls(**params)
    src = storage.read_vectors(source, "--source", min_rows=cls.min_rows)
    tgt = storage.read_vectors(target, "--target", min_rows=cls.min_rows)
    fit_args: dict = {"pairs": pair_index}
    if pivot_names:
        fit_args["pivots"] = {name: pivot_data.pivot_vectors(name, pivot_texts, pivot_rows) for name in pivot_names}

    start = time.perf_counter()
    translator.fit(src, tgt, **fit_args)
    seconds = round(time.perf_counter() - start, 2)
    fit_report = getattr(translator, "fit_report_", None)
    meta = {
        "source_encoder": src_meta.get("encoder"),
        "target_encoder": tgt_meta.get("encoder"),
        "trained_on": {"source": str(source), "target": str(target), "source_rows": len(src),
                       "target_rows": len(tgt), "pairs": None if pair_index is None else int(len(pair_index)),
                       "pivots": None if not pivot_names else {"encoders": pivot_names, "texts": pivot_texts,
                                                               "rows": pivot_rows}},
        "train_seconds": seconds,
        "fit_report": fit_report,
    }
    save_translator(translator, output, meta=meta, overwrite=overwrite)
    confidence = getattr(translator, "confidence_", None)
    result = {"output": str(output), "method": method, "dim_source": int(translator.dim_source_),
              "dim_target": int(translator.dim_target_), "train_seconds": seconds, "confidence": confidence,
              "fit_report": fit_report, "pivots": pivot_names}
    if confidence and confidence.get("verdict") == "low":
        result["warning"] = low_confidence_warning(confidence)
    return result


def low_confidence_warning(confidence: dict) -> str:
    check = confidence.get("validation")
    evidence = (f"label-free confidence {confidence['score']:.2f} is low" if check is None else
                f"only {check['top1']:.0%} of {check['pairs']} held-out known pairs find their own target first "
                f"among {check['pool']} rows")
    return (f"{evidence}: this translator probably does not map the spaces onto each other. Try a pivot "
            "encoder close to one side (--pivot minilm-l6), known pairs (--pairs: a few dozen are often enough; "
            "with 16 or more, a quarter validate the map), more vectors per side or another --seed; check with "
            "`vecbridge eval` if you have paired vectors.")


def _direction(translator: Translator, reverse: bool) -> tuple[int, int, str | None, str | None]:
    """(input dim, output dim, input encoder, output encoder) of one direction of `translator`."""
    config = getattr(translator, "config_", {}) or {}
    if reverse:
        return (translator.dim_target_, translator.dim_source_, config.get("target_encoder"),
                config.get("source_encoder"))
    return translator.dim_source_, translator.dim_target_, config.get("source_encoder"), config.get("target_encoder")


def _check_input_space(translator: Translator, path, dim: int, reverse: bool, allow_mismatch: bool,
                       flag: str = "--input") -> None:
    dim_in, _, encoder_in, _ = _direction(translator, reverse)
    if dim != dim_in:
        side = "target" if reverse else "source"
        hint = " (vectors of the translator's other space need --reverse)" if dim == _direction(
            translator, not reverse)[0] else ""
        raise UserError(f"{flag} {path} has {dim} dims but the translator's {side} space has {dim_in}{hint}")
    encoder = storage.read_sidecar(path).get("encoder")
    if encoder and encoder_in and encoder != encoder_in and not allow_mismatch:
        side = "target" if reverse else "source"
        raise UserError(f"{flag} {path} was embedded by {encoder!r} but the translator's {side} space is "
                        f"{encoder_in!r}; translate vectors of {encoder_in!r} (or pass --allow-encoder-mismatch)")


def translate_vectors(translator: Translator, vectors, reverse: bool = False, search: bool = False,
                      name: str = "vectors") -> np.ndarray:
    """Translate rows in memory (the service's path, and each block of `translate`); output always finite."""
    block = check_vectors(np.array(vectors, dtype=np.float32), name, _direction(translator, reverse)[0])
    out = (translator.inverse_transform if reverse else translator.transform)(block, search=search)
    if not np.isfinite(out).all():
        raise UserError("the translator produced NaN or inf; it is damaged: retrain or restore it")
    return out


@user_errors
def translate(translator: Translator | str | os.PathLike, input: str | os.PathLike, output: str | os.PathLike, *,
              reverse: bool = False, search: bool = False, chunk: int = 65536, overwrite: bool = False,
              allow_encoder_mismatch: bool = False, progress: bool | None = None) -> dict:
    """Translate the vector file `input` block by block into `output` (.npy + sidecar, published together)."""
    if chunk < 1:
        raise UserError(f"--chunk must be a positive number of rows, got {chunk}")
    translator_path = None
    if not isinstance(translator, Translator):
        translator_path, translator = str(translator), Translator.load(translator)
    output = Path(output)
    if output.suffix != ".npy":
        raise UserError(f"--output {output} must end in .npy")
    src = storage.open_vectors(input, "--input")
    _check_input_space(translator, input, src.shape[1], reverse, allow_encoder_mismatch)
    if search:
        translator.check_search()
    input_meta = storage.read_sidecar(input)
    safe_write.check_file_output(output, overwrite, inputs=[input], what="--output")
    rows, (_, dim_out, _, encoder_out) = src.shape[0], _direction(translator, reverse)
    safe_write.check_free_space(output, rows * dim_out * 4 + 2**16)
    config = getattr(translator, "config_", {}) or {}
    meta = {"encoder": encoder_out, "normalised": True,
            "translated_by": {"translator": translator_path, "method": config.get("method", translator.method),
                              "direction": "reverse" if reverse else "forward",
                              "output": "search" if search else "faithful",
                              "input": str(input), "input_meta": input_meta}}
    start = time.perf_counter()
    with safe_write.disk_errors(output), safe_write.staged() as stage:
        with safe_write.npy_file(stage.file(output), rows, dim_out) as f, \
                tqdm(total=rows, unit="vec", unit_scale=True, desc="translate",
                     disable=None if progress is None else not progress) as bar:
            for i in range(0, rows, chunk):
                block = translate_vectors(translator, src[i:i + chunk], reverse, search,
                                          name=f"--input {input} (block from row {i})")
                f.write(block.astype("<f4", copy=False).tobytes())
                bar.update(len(block))
        safe_write.write_json_file(stage.file(storage.sidecar_path(output)),
                                   storage.vectors_meta(meta, (rows, dim_out)))
    seconds = time.perf_counter() - start
    return {"output": str(output), "rows": int(rows), "dim_in": int(src.shape[1]), "dim_out": int(dim_out),
            "seconds": round(seconds, 3), "vectors_per_minute": round(rows / max(seconds, 1e-9) * 60)}


@user_errors
def evaluate(translator: Translator | str | os.PathLike, source: str | os.PathLike, target: str | os.PathLike, *,
             pool: int = 8192, reverse: bool = False, search: bool = False,
             allow_encoder_mismatch: bool = False) -> dict:
    """Translate `source` and score it against the paired `target` (row i = the same text in both)."""
    if pool < MIN_EVAL_POOL:
        raise UserError(f"--pool must be at least {MIN_EVAL_POOL}: smaller pools say nothing about retrieval")
    if not isinstance(translator, Translator):
        translator = Translator.load(translator)
    src_file, tgt_file = storage.open_vectors(source, "--source"), storage.open_vectors(target, "--target")
    _check_input_space(translator, source, src_file.shape[1], reverse, allow_encoder_mismatch, "--source")
    dim_out = _direction(translator, reverse)[1]
    if tgt_file.shape[1] != dim_out:
        raise UserError(f"--target {target} has {tgt_file.shape[1]} dims but the translator's output space has "
                        f"{dim_out}; give the same texts embedded by the other encoder")
    if len(src_file) != len(tgt_file):
        raise UserError(f"--source has {len(src_file)} rows and --target {len(tgt_file)}; eval needs paired "
                        "files (row i = the same text embedded by both encoders)")
    if len(src_file) < MIN_EVAL_POOL:
        raise UserError(f"eval needs at least {MIN_EVAL_POOL} paired rows to rank among; got {len(src_file)}")
    if search:
        translator.check_search()
    src = storage.read_vectors(source, "--source")
    tgt = storage.read_vectors(target, "--target")
    pred = translate_vectors(translator, src, reverse, search, name=f"--source {source}")
    metrics = evaluate_metrics(pred, tgt, pool=pool)
    metrics["method"] = (getattr(translator, "config_", {}) or {}).get("method", translator.method)
    metrics["output"] = "search" if search else "faithful"
    return metrics
