"""Train, load, save, apply and evaluate translators on vector files: the jobs behind `train`, `translate`, `eval`.

Every input is checked before any work starts (files, sidecars, pairs, pivots, the output's place), and
every output goes through `safe_write`: staged, validated, published.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from align import Translator, default_method, translator_class
from align.metrics import evaluate as evaluate_metrics
from align.vectors import check_vectors
from vecbridge import files, stores
from vecbridge.errors import UserError, user_errors
from vecbridge.jobs import pivots as pivot_data
from vecbridge.jobs import references
from vecbridge.jobs.checks import check_encoder, check_space, direction
from vecbridge.jobs.translate import translate_vectors
from vecbridge.texts import read_texts

TRANSLATOR_FILES = {"config.json", "model.safetensors"}
# Fewest paired rows an evaluation ranks among: below it top-1 says nothing (1 row: top-1 is always 1.0).
MIN_EVAL_POOL = 10
# Texts `train --target-encoder` embeds when there is no target store (disjoint from the pivots' train_a).
REFERENCE_TEXTS = "builtin:pool:train_b"
REFERENCE_LIMIT = 25000


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
    """Publish `translator` at `output`: written under a temporary name beside it, re-loaded to validate, then
    renamed into place."""
    output = files.check_dir_output(output, overwrite, is_translator_dir, "translator")
    with files.disk_errors(output), files.staged() as stage:
        tmp = stage.directory(output)
        tmp.rmdir()  # the artifact makes its own directory
        translator.save(tmp, meta=meta)
        Translator.load(tmp)
    return output


def read_pairs(path: str | os.PathLike | None) -> np.ndarray | None:
    """Known pairs: an integer (k, 2) .npy of (source_row, target_row); checked before it is loaded."""
    if path is None:
        return None
    path = files.check_regular_file(path, "`pairs`")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"`pairs` {path} is not a readable .npy array ({str(e).splitlines()[0]}); give an integer "
                        "(k, 2) array of (source_row, target_row) saved with numpy.save") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype,
                                                                                                  np.integer):
        shape = getattr(arr, "shape", None)
        raise UserError(f"`pairs` {path} must be an integer array of shape (k, 2) = (source_row, target_row); "
                        f"got {getattr(arr, 'dtype', type(arr).__name__)} {shape}")
    if len(arr) == 0:
        raise UserError(f"`pairs` {path} holds no pairs")
    return np.array(arr)


def _check_params(cls, params: dict) -> None:
    accepted = set(cls.param_names())
    for name in params:
        if name not in accepted:
            raise UserError(f"parameter {name!r} does not apply to method {cls.method!r}; "
                            f"it takes: {', '.join(sorted(accepted))}")


def reference_vectors(encoder: str, texts: str = REFERENCE_TEXTS, limit: int = REFERENCE_LIMIT) -> np.ndarray:
    """The first `limit` texts of `texts` embedded by the built-in `encoder` (cached under
    $VECBRIDGE_HOME/references): the target side built on the fly, or public pairs with two encoders."""
    return pivot_data.cached_vectors("references", encoder, read_texts(texts, limit=limit))


def document_pairs(documents: list | None, k: int, encoder: str, source, seed: int,
                    exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """(source rows, their documents embedded by `encoder`) for `k` documents sampled from the source store,
    none of the rows in `exclude` (documents held out to verify a migration)."""
    if not documents or all(d is None for d in documents):
        raise UserError(f"`pairs_from_documents` needs documents, but `source` {source} holds none; give known "
                        "pairs with `pairs`, or public pairs with `source_encoder`")
    rows = np.array([i for i, d in enumerate(documents) if isinstance(d, str) and d.strip()])
    if exclude is not None and len(exclude):
        rows = np.setdiff1d(rows, np.asarray(exclude))
    if len(rows) < k:
        raise UserError(f"`pairs_from_documents` {k}: `source` {source} has only {len(rows)} rows with a "
                        "document; ask for fewer")
    rows = np.sort(np.random.default_rng(seed).choice(rows, size=k, replace=False))
    from encoders.registry import get_encoder

    return rows, get_encoder(encoder).encode([documents[i] for i in rows])


@dataclasses.dataclass
class _Sides:
    """The two sides a fit sees: vectors, the known pairs between them, and where each came from."""

    src: np.ndarray
    tgt: np.ndarray | None
    src_encoder: str | None
    tgt_encoder: str | None
    documents: list | None
    pairs: np.ndarray | None = None
    reference: dict | None = None


def _check_train_args(target, target_encoder, source_encoder, pairs, pairs_from_documents, reference_limit,
                      pivot_rows) -> None:
    if target is None and target_encoder is None:
        raise UserError("give the target side: `target` STORE, or `target_encoder` NAME to embed reference texts")
    if target is not None and source_encoder:
        raise UserError("`source_encoder` embeds reference texts with both encoders in place of `target`; drop one")
    if source_encoder and not target_encoder:
        raise UserError("`source_encoder` needs `target_encoder`: public pairs are the same texts in both spaces")
    if pairs_from_documents is not None and not target_encoder:
        raise UserError("`pairs_from_documents` needs `target_encoder` to embed the documents in the target space")
    if sum(x is not None for x in (pairs, source_encoder, pairs_from_documents)) > 1:
        raise UserError("`pairs`, `source_encoder` and `pairs_from_documents` each give known pairs; give one")
    if reference_limit < 1 or (pairs_from_documents is not None and pairs_from_documents < 1):
        raise UserError("`reference_limit` and `pairs_from_documents` must be positive numbers of texts")
    if pivot_rows < 1:
        raise UserError(f"`pivot_rows` must be a positive number of texts, got {pivot_rows}")
    for name, flag in ((target_encoder, "`target_encoder`"), (source_encoder, "`source_encoder`")):
        if name:
            check_encoder(name, flag, builtin=True)


def _named_pivots(pivots, cls) -> tuple[bool, list[str]]:
    """(auto, the pivots named in the order given, each once), checked against the method and the registry."""
    auto = pivots == pivot_data.AUTO or list(pivots) == [pivot_data.AUTO]
    names = [] if auto else list(dict.fromkeys(pivots))
    if pivot_data.AUTO in names:
        raise UserError("`pivots` auto tries every built-in encoder by itself; give it alone, or name pivots")
    if names and "pivots" not in cls.fit_options:
        raise UserError(f"`pivots` does not apply to method {cls.method!r} (only to geometric)")
    for name in names:
        check_encoder(name, "`pivots`", builtin=True)
    return auto, names


def _read_sides(source, target, source_encoder, target_encoder, cls) -> _Sides:
    with contextlib.ExitStack() as readers:
        src_reader = readers.enter_context(stores.open_reader(source, "`source`"))
        tgt_reader = readers.enter_context(stores.open_reader(target, "`target`")) if target is not None else None
        src_encoder = src_reader.info.encoder or source_encoder
        if source_encoder and src_encoder != source_encoder:
            raise UserError(f"`source` {source} was embedded by {src_encoder!r}, not `source_encoder` "
                            f"{source_encoder!r}; give the encoder that made the source vectors")
        src, _, documents = stores.read_all(src_reader, "`source`", min_rows=1 if source_encoder else cls.min_rows)
        tgt = stores.read_all(tgt_reader, "`target`", min_rows=cls.min_rows)[0] if tgt_reader else None
        return _Sides(src, tgt, src_encoder, tgt_reader.info.encoder if tgt_reader else target_encoder, documents)


def _add_reference(sides: _Sides, target_encoder: str, reference_texts: str, reference_limit: int, min_rows: int,
                   log) -> str:
    """Embed reference texts with `target_encoder` as the target side; return the texts used (after "auto")."""
    choice = None
    if reference_texts == references.AUTO:
        reference_texts, choice = references.choose_reference(sides.src, target_encoder, log=log)
    sides.tgt = check_vectors(reference_vectors(target_encoder, reference_texts, reference_limit),
                              f"`target_encoder` {target_encoder} on {reference_texts}", min_rows=min_rows)
    sides.reference = {"texts": reference_texts, "rows": len(sides.tgt), "target_encoder": target_encoder,
                       **({"auto": choice} if choice is not None else {})}
    return reference_texts


def _add_public_pairs(sides: _Sides, source, source_encoder: str, reference_texts: str, reference_limit: int):
    """The reference texts embedded by the source's encoder too: appended to the source as known pairs."""
    public = reference_vectors(source_encoder, reference_texts, reference_limit)
    if public.shape[1] != sides.src.shape[1]:
        raise UserError(f"`source` {source} has {sides.src.shape[1]} dims but `source_encoder` {source_encoder} "
                        f"makes {public.shape[1]}; give the encoder that made the source vectors")
    sides.pairs = np.stack([np.arange(len(public)) + len(sides.src), np.arange(len(public))], axis=1)
    sides.src = np.concatenate([sides.src, public])
    sides.reference.update(source_encoder=source_encoder, public_pairs=len(public))


def _add_document_pairs(sides: _Sides, source, k: int, target_encoder: str, seed: int, exclude) -> None:
    """K of the source's documents embedded by the target encoder: appended to the target as known pairs."""
    rows, embedded = document_pairs(sides.documents, k, target_encoder, source, seed, exclude)
    if embedded.shape[1] != sides.tgt.shape[1]:
        raise UserError(f"`target_encoder` {target_encoder} makes {embedded.shape[1]} dims but the target side "
                        f"has {sides.tgt.shape[1]}; give the encoder of the target space")
    sides.pairs = np.stack([rows, np.arange(len(rows)) + len(sides.tgt)], axis=1)
    sides.tgt = np.concatenate([sides.tgt, embedded])


def _pivot_args(cls, sides: _Sides, auto: bool, names: list[str], texts: str, rows: int, log) -> tuple[dict, dict]:
    """(the pivot arguments of `fit`, what the translator records of them)."""
    if names:
        return ({"pivots": {name: pivot_data.pivot_vectors(name, texts, rows) for name in names}},
                {"encoders": names, "texts": texts, "rows": rows})
    if not auto or "fallback_pivots" not in cls.fit_options:
        return {}, None
    record = {"mode": pivot_data.AUTO, "texts": texts, "rows": rows}
    if min(len(sides.src), len(sides.tgt)) < pivot_data.AUTO_MIN_ROWS:
        record["skipped"] = f"fewer than {pivot_data.AUTO_MIN_ROWS} rows on a side"
        return {}, record
    fallback = pivot_data.auto_pivots({sides.src_encoder, sides.tgt_encoder}, texts, rows, log)
    record["candidates"] = list(fallback)
    return {"fallback_pivots": fallback}, record


@user_errors
def train_translator(source: str | os.PathLike, target: str | os.PathLike | None, output: str | os.PathLike, *,
                     method: str | None = None, params: dict | None = None, pairs: str | os.PathLike | None = None,
                     pivots: list[str] | tuple[str, ...] | str = pivot_data.AUTO,
                     pivot_texts: str = pivot_data.DEFAULT_TEXTS,
                     pivot_rows: int = pivot_data.DEFAULT_ROWS, target_encoder: str | None = None,
                     source_encoder: str | None = None, reference_texts: str = REFERENCE_TEXTS,
                     reference_limit: int = REFERENCE_LIMIT, pairs_from_documents: int | None = None,
                     exclude_document_rows=None, seed: int | None = None, overwrite: bool = False,
                     log: Callable[[str], None] | None = None) -> dict:
    """Fit a translator source -> target from two vector files or stores (any spec) and publish it at `output`.

    Without `target`, `target_encoder` embeds the first `reference_limit` texts of `reference_texts` as the
    target side (unpaired); `reference_texts` "auto": the built-in corpus whose profile is closest to the source
    vectors' (`vecbridge.jobs.references`). With `source_encoder` as well, the same texts embedded by both
    encoders are public pairs: the map is fitted on them (`method` defaults to a paired one then, see
    `align.default_method`). `pairs_from_documents` K: K documents sampled from the source store, embedded by
    `target_encoder`, are known pairs (geometric: a quarter held out to validate), never the rows
    `exclude_document_rows` (a migration's held-out documents). `pivots`: built-in encoder names tried as pivots
    before the anchor search, or "auto" (the default): when no direct start passes, every other installed
    built-in encoder is tried as a pivot, in turn (methods whose `fit_options` take them, both sides with
    `pivot_data.AUTO_MIN_ROWS` rows or more). `seed`: the method's seed (where it takes one, unless `params`
    names it) and the documents' sample. Returns the result: output, method, dims, seconds, the label-free
    confidence (and its verdict), the fit report, the pivots given or tried and, for a low verdict, `warning`.
    """
    method = method or default_method(paired=bool(source_encoder))
    cls = translator_class(method)
    params = dict(params or {})
    if seed is not None and "seed" in cls.param_names():
        params.setdefault("seed", seed)
    _check_params(cls, params)
    _check_train_args(target, target_encoder, source_encoder, pairs, pairs_from_documents, reference_limit,
                      pivot_rows)
    files.check_dir_output(output, overwrite, is_translator_dir, "translator",
                           inputs=[*stores.spec_paths(source, target), *([pairs] if pairs else [])])
    auto, pivot_names = _named_pivots(pivots, cls)
    translator = cls(**params)  # refuses bad parameter values before any work
    sides = _read_sides(source, target, source_encoder, target_encoder, cls)
    sides.pairs = read_pairs(pairs)
    if sides.tgt is None:
        reference_texts = _add_reference(sides, target_encoder, reference_texts, reference_limit, cls.min_rows, log)
    if source_encoder:
        _add_public_pairs(sides, source, source_encoder, reference_texts, reference_limit)
    if pairs_from_documents is not None:
        _add_document_pairs(sides, source, pairs_from_documents, target_encoder,
                            params.get("seed", seed) or 0, exclude_document_rows)
    fit_args, pivot_record = _pivot_args(cls, sides, auto, pivot_names, pivot_texts, pivot_rows, log)
    if log is not None and "log" in cls.fit_options:
        fit_args["log"] = log  # stage notes such as which pivot leg is being fitted
    start = time.perf_counter()
    translator.fit(sides.src, sides.tgt, pairs=sides.pairs, **fit_args)
    seconds = round(time.perf_counter() - start, 2)
    fit_report = getattr(translator, "fit_report_", None)
    trained_on = {"source": str(source), "target": None if target is None else str(target),
                  "source_rows": len(sides.src), "target_rows": len(sides.tgt),
                  "pairs": None if sides.pairs is None else int(len(sides.pairs)), "pivots": pivot_record,
                  "reference": sides.reference, "pairs_from_documents": pairs_from_documents}
    save_translator(translator, output, overwrite=overwrite,
                    meta={"source_encoder": sides.src_encoder, "target_encoder": sides.tgt_encoder,
                          "trained_on": trained_on, "train_seconds": seconds, "fit_report": fit_report})
    confidence = getattr(translator, "confidence_", None)
    result = {"output": str(output), "method": method, "dim_source": int(translator.dim_source_),
              "dim_target": int(translator.dim_target_), "train_seconds": seconds, "confidence": confidence,
              "fit_report": fit_report, "pivots": pivot_names or _pivots_tried(fit_report)}
    if confidence and confidence.get("verdict") == "low":
        result["warning"] = low_confidence_warning(confidence)
    return result


def _pivots_tried(fit_report: dict | None) -> list[str]:
    """The pivots a fit reached (auto pivots are only tried when no direct start passed)."""
    return list((fit_report or {}).get("stages", {}).get("init", {}).get("pivots") or {})


def low_confidence_warning(confidence: dict) -> str:
    check = confidence.get("validation")
    evidence = (f"label-free confidence {confidence['score']:.2f} is low" if check is None else
                f"only {check['top1']:.0%} of {check['pairs']} held-out known pairs find their own target first "
                f"among {check['pool']} rows")
    return (f"{evidence}: this translator probably does not map the spaces onto each other. Try a pivot "
            "encoder close to one side (`pivots` minilm-l6; the default, auto, tries each built-in on 2,000+ rows), "
            "known pairs (`pairs`: a few dozen are often enough; "
            "with 16 or more, a quarter validate the map), more vectors per side or another `seed`; check with "
            "`vecbridge eval` if you have paired vectors.")


def _paired_rows(src_ids: list, tgt_ids: list, target) -> np.ndarray:
    """The target rows in the source's id order (stores with ids pair by id, not by position)."""
    where = {str(i): k for k, i in enumerate(tgt_ids)}
    missing = [i for i in src_ids if str(i) not in where]
    if missing or len(where) != len(tgt_ids):
        reason = f"has no id {missing[0]!r}" if missing else "repeats ids"
        raise UserError(f"`target` {target} {reason}; eval pairs stores by id: give the same ids on both sides")
    return np.array([where[str(i)] for i in src_ids])


@user_errors
def evaluate(translator: Translator | str | os.PathLike, source: str | os.PathLike, target: str | os.PathLike, *,
             pool: int = 8192, reverse: bool = False, search: bool = False,
             allow_encoder_mismatch: bool = False) -> dict:
    """Translate `source` and score it against the paired `target` (vector files or stores: the same text under
    the same id where both have ids, else row i in both)."""
    if pool < MIN_EVAL_POOL:
        raise UserError(f"`pool` must be at least {MIN_EVAL_POOL}: smaller pools say nothing about retrieval")
    if not isinstance(translator, Translator):
        translator = Translator.load(translator)
    with stores.open_reader(source, "`source`") as src_reader, stores.open_reader(target, "`target`") as tgt_reader:
        src_info, tgt_info = src_reader.info, tgt_reader.info
        check_space(translator, f"`source` {source}", src_info.dim, src_info.encoder, reverse,
                    allow_encoder_mismatch)
        dim_out = direction(translator, reverse)[1]
        if tgt_info.dim != dim_out:
            raise UserError(f"`target` {target} has {tgt_info.dim} dims but the translator's output space has "
                            f"{dim_out}; give the same texts embedded by the other encoder")
        if src_info.count != tgt_info.count:
            raise UserError(f"`source` has {src_info.count} rows and `target` {tgt_info.count}; eval needs paired "
                            "vectors (the same texts embedded by both encoders: the same ids, or row i = row i)")
        if src_info.count < MIN_EVAL_POOL:
            raise UserError(f"eval needs at least {MIN_EVAL_POOL} paired rows to rank among; got {src_info.count}")
        if search:
            translator.check_search()
        src, src_ids, _ = stores.read_all(src_reader, "`source`")
        tgt, tgt_ids, _ = stores.read_all(tgt_reader, "`target`")
    if src_info.id_type != "row" and tgt_info.id_type != "row":
        tgt = tgt[_paired_rows(src_ids, tgt_ids, target)]
    pred = translate_vectors(translator, src, reverse, search, name=f"`source` {source}")
    metrics = evaluate_metrics(pred, tgt, pool=pool)
    metrics["method"] = (getattr(translator, "config_", {}) or {}).get("method", translator.method)
    metrics["output"] = "search" if search else "faithful"
    return metrics
