"""`migrate`: move a store to a new encoder's space in one job: plan, train or reuse a translator, verify on
held-out re-embedded documents, translate."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from align import Translator, default_method
from encoders.registry import ENCODERS, get_encoder
from vecbridge import files, stores
from vecbridge.errors import UserError, user_errors
from vecbridge.jobs import progressive as progressive_jobs
from vecbridge.jobs.checks import check_encoder, check_space, installed_encoders, same_store
from vecbridge.jobs.progressive import Progressive
from vecbridge.jobs.translate import translate, translate_vectors
from vecbridge.jobs.translators import (
    REFERENCE_LIMIT,
    REFERENCE_TEXTS,
    is_translator_dir,
    train_translator,
)
from vecbridge.jobs.verify import neighbourhood_check, pseudo_queries, pseudo_query_check, recommendation

VERIFY_DOCUMENTS = 1000  # held-out documents re-embedded to predict how the migrated store will serve
SPEED_SAMPLE = 32  # documents embedded to measure the new encoder's speed for the plan
# The plan's rough cost model on 2 cores: geometric seconds for 25k + 25k rows at 384 + 768 dims (a paired fit
# takes seconds), and translated vectors per minute. The plan calls them estimates.
GEOMETRIC_SECONDS = 130.0
TRANSLATE_PER_MINUTE = 2.0e6


def _documents_and_rows(reader: stores.StoreReader, rows: np.ndarray | None, documents=None) -> tuple:
    """(rows with a document, {row: (vector, document)} for the wanted `rows`) in one pass; the documents are
    the store's own, or those of the file `documents` (one line per row)."""
    wanted = None if rows is None else set(int(r) for r in rows)
    found, with_doc = {}, []
    for row, _, vector, doc in progressive_jobs.documented_rows(reader, documents):
        with_doc.append(row)
        if wanted is not None and row in wanted:
            found[row] = (vector, doc)
    return np.array(with_doc, dtype=np.int64), found


def _encoder_speed(encoder: str, texts: list[str]) -> float:
    """Texts per second of `encoder` on `texts` (after loading it): the plan's basis for re-embedding costs."""
    enc = get_encoder(encoder)
    enc.encode(texts[:2])  # warm up: first call pays for lazy initialisation
    start = time.perf_counter()
    enc.encode(texts)
    return len(texts) / max(time.perf_counter() - start, 1e-6)


def _verify(translator: Translator, held: np.ndarray, held_rows: dict, new_encoder: str, old_encoder: str | None,
            seed: int, log: Callable[[str], None]) -> tuple[dict, dict]:
    """The verdict's evidence on held-out documents: pseudo-queries (spans of the documents) searched as each option
    leaves the documents (see `vecbridge.jobs.verify`); staying is measured only when the old model runs. Also the
    arrays it rests on (rows, re-embedded and translated vectors, pseudo-queries), which a progressive migration
    measures its checkpoints with."""
    log(f"verifying on {len(held)} held-out documents and their pseudo-queries, embedded by {new_encoder}"
        + (f" and {old_encoder}" if old_encoder else ""))
    old = np.stack([held_rows[r][0] for r in held]).astype(np.float32)
    documents = [held_rows[r][1] for r in held]
    queries = pseudo_queries(documents, seed)
    new_enc = get_encoder(new_encoder)
    new, queries_new = new_enc.encode(documents), new_enc.encode(queries)
    migrated = translate_vectors(translator, old, name="held-out documents")
    back = translate_vectors(translator, queries_new, reverse=True, name="pseudo-queries")
    queries_old = get_encoder(old_encoder).encode(queries) if old_encoder else None
    check = pseudo_query_check(new, queries_new, migrated=migrated, old=old, queries_back=back,
                               queries_old=queries_old)
    check["neighbourhoods"] = neighbourhood_check(old, new, migrated=migrated,
                                                  query_side=translate_vectors(translator, new, reverse=True))
    return check, {"rows": np.asarray(held, np.int64), "new": new, "migrated": migrated, "queries": queries_new}


def _scan_source(reader: stores.StoreReader, verify_documents: int, seed: int, documents=None) -> tuple:
    """(rows with a document, the held-out rows, {row: (vector, document)} for them): `verify_documents` of the
    documented rows drawn with `seed` (none when fewer than 48 rows have a document), never used to train. The
    documents are the store's, or those of the file `documents`."""
    if not reader.info.documents and documents is None:
        return np.array([], np.int64), np.array([], np.int64), {}
    with_doc, _ = _documents_and_rows(reader, None, documents)
    n_verify = min(verify_documents, len(with_doc) // 4) if len(with_doc) >= 4 * 12 else 0
    if not n_verify:
        return with_doc, np.array([], np.int64), {}
    held = np.sort(np.random.default_rng(seed).choice(with_doc, size=n_verify, replace=False))
    return with_doc, held, _documents_and_rows(reader, held, documents)[1]


def _plan(in_spec, out_spec, info: stores.StoreInfo, dim_out: int, target_encoder: str, with_doc, held,
          speed: float | None, old_encoder: str | None, loaded, translator, source_encoder, pairs_from_documents,
          method: str | None, reference_limit: int) -> dict:
    """What the migration will do and roughly cost, before any work."""
    path = ("reuse " + str(translator) if loaded is not None else
            f"public pairs: {reference_limit} reference texts embedded by {source_encoder} and {target_encoder}"
            if source_encoder else f"few-shot: {pairs_from_documents} documents re-embedded as known pairs"
            if pairs_from_documents else f"unsupervised: the store's vectors against {reference_limit} reference "
                                         f"texts embedded by {target_encoder}")
    method_used = loaded.method if loaded is not None else (method or default_method(paired=bool(source_encoder)))
    train_s = 0.0 if loaded is not None else (
        2.0 if method_used in ("procrustes", "ridge") else
        GEOMETRIC_SECONDS * (info.count + reference_limit) / 50000 * (info.dim + dim_out) / 1152)
    return {"from": str(in_spec), "to": str(out_spec), "rows": int(info.count), "dim_in": int(info.dim),
            "dim_out": int(dim_out), "metric": info.metric, "exact": info.exact, "source_encoder": info.encoder,
            "target_encoder": target_encoder, "documents": int(len(with_doc)), "translator": path,
            "method": method_used, "verify_documents": int(len(held)), "old_model_runs": old_encoder,
            "estimated_seconds": {"train": round(train_s), "translate": round(info.count / TRANSLATE_PER_MINUTE * 60),
                                  "verify": None if not speed else round(len(held) / speed)},
            "reembed_instead": None if not speed else {
                "documents": int(len(with_doc)), "texts_per_second": round(speed, 1),
                "seconds": round(len(with_doc) / speed)}}


def _check_outputs(loaded: Translator | None, target_encoder: str, save_translator_to, in_spec) -> None:
    """Refuse, before any work, a reused translator whose target side is not `target_encoder`'s (its dims), and a
    `save_translator_to` that cannot be written (the translator is staged beside it and published with the new
    store: a failed migration leaves no translator behind)."""
    if save_translator_to is not None:
        files.check_dir_output(save_translator_to, False, is_translator_dir, "translator",
                               inputs=stores.spec_paths(in_spec), what="`save_translator_to`")
    dim = ENCODERS[target_encoder].dim
    if loaded is not None and dim is not None and loaded.dim_target_ != dim:
        raise UserError(f"`translator` maps into {loaded.dim_target_} dims but `target_encoder` {target_encoder} "
                        f"makes {dim}; give a translator trained into {target_encoder}'s space, or drop `translator` "
                        "to train one")


def _check_sources(pairs_from_documents: int | None, in_spec, with_doc, held, loaded, force: bool) -> None:
    """Refuse, before any work, `pairs_from_documents` that the store's documents cannot give, and a reused
    translator that rates itself low when no documents can verify it (see `_unverified_low`)."""
    if loaded is not None and not len(held):
        _unverified_low(getattr(loaded, "confidence_", None), None, force)
    if pairs_from_documents is None:
        return
    if not len(with_doc):
        raise UserError(f"`pairs_from_documents` needs the store's documents, but `source` {in_spec} holds none; fit "
                        "on public pairs with `source_encoder` (if the old model still runs), or drop "
                        "`pairs_from_documents`")
    if len(with_doc) - len(held) < pairs_from_documents:
        raise UserError(f"`pairs_from_documents` {pairs_from_documents}: `source` {in_spec} has "
                        f"{len(with_doc) - len(held)} rows with a document besides the {len(held)} held out to "
                        "verify; ask for fewer (or fewer `verify_documents`)")


def _unverified_low(confidence: dict | None, check: dict | None, force: bool) -> dict | None:
    """A migration its own translator rates `low` (no start passed, or a score at chance) with no held-out
    documents to verify it is not a translation: refused, unless `force`; then the mark its provenance records."""
    if check is not None or (confidence or {}).get("verdict") != "low":
        return None
    said = f"label-free confidence {confidence.get('score', float('nan')):.2f}" + (
        f", {confidence['verdict_from']}" if confidence.get("verdict_from") else "")
    if not force:
        raise UserError(f"the translator rates itself low ({said}) and the store has no documents to verify it "
                        "with: the new store would not be a translation of this one; fit with `pairs_from_documents` "
                        "(if the store keeps documents), `source_encoder` (if the old model still runs) or "
                        "`reference_texts` of the store's own domain, or pass `force` to write it anyway (its "
                        "provenance then says so)")
    return {"migration": {"forced": True, "verified": False, "warning": f"written with `force`: the translator "
                          f"rates itself low ({said}) and nothing verified it",
                          "confidence": {k: confidence.get(k) for k in ("score", "verdict", "verdict_from",
                                                                        "start_passed")}}}


def _check_args(in_spec, out_spec, translator, source_encoder, pairs_from_documents, method,
                verify_documents: int, target_encoder: str) -> None:
    if same_store(in_spec, out_spec):
        raise UserError(f"`destination` {out_spec} is the same store as `source`; write to another path or collection")
    if translator is not None and (source_encoder or pairs_from_documents or method):
        raise UserError("`translator` reuses a trained translator; drop `source_encoder`, `pairs_from_documents` "
                        "and `method`, which say how to train one")
    if verify_documents < 0:
        raise UserError(f"`verify_documents` must be 0 or more, got {verify_documents}")
    check_encoder(target_encoder, "`target_encoder`", builtin=True)


def _check_source(reader: stores.StoreReader, out_spec, loaded: Translator | None, dim_out: int, overwrite: bool,
                  resume: bool, documents, pairs_from_documents, progressive: Progressive | None, engine: str,
                  address: str | None) -> None:
    """Checks against the open source: the translator's space, the destination, the documents, the progressive
    options."""
    info = reader.info
    if loaded is not None:
        check_space(loaded, f"`input` {info.spec}", info.dim, info.encoder)
    # the destination is checked before any work (a writer's constructor only checks)
    stores.open_writer(out_spec, "`destination`", dim=int(dim_out), count=info.count, metric=info.metric,
                       provenance={}, overwrite=overwrite, source=info, resume=resume).close()
    if documents is not None:
        progressive_jobs.check_documents_file(documents, info.count)
        if pairs_from_documents and not info.documents:
            raise UserError(f"`pairs_from_documents` re-embeds the store's own documents and {info.spec} keeps "
                            "none (`documents` serves the verification and `progressive`); give `source_encoder` "
                            "instead")
    if progressive:
        progressive_jobs.check_args(info, documents, progressive.order, progressive.queries,
                                    progressive.checkpoint_rows, engine, address)


@user_errors
def migrate(source, destination, target_encoder: str, *, translator: str | os.PathLike | None = None,
            source_encoder: str | None = None, pairs_from_documents: int | None = None, method: str | None = None,
            params: dict | None = None, reference_texts: str = REFERENCE_TEXTS,
            reference_limit: int = REFERENCE_LIMIT, save_translator_to: str | os.PathLike | None = None,
            verify_documents: int = VERIFY_DOCUMENTS, dry_run: bool = False, overwrite: bool = False,
            resume: bool = False, force: bool = False, seed: int = 0, progress: bool | None = None,
            log: Callable[[str], None] | None = None, on_plan: Callable[[dict], None] | None = None,
            documents: str | os.PathLike | None = None, progressive: Progressive | bool | None = None,
            engine: str = "local", address: str | None = None) -> dict:
    """Migrate the store `source` to `target_encoder`'s space as the new store `destination`, in one job.

    Plan (rows, dims, how the translator is obtained, estimated seconds, and what re-embedding every document
    would cost at the new encoder's measured speed) -> `dry_run` stops here -> train a translator (unsupervised
    against reference texts in the new model; public pairs with `source_encoder`; K re-embedded documents with
    `pairs_from_documents`) or load `translator` -> verify on `verify_documents` held-out documents re-embedded by
    the new model (never used to train) -> translate the store (the source is only read; the destination is
    swapped in when complete). `seed` draws the held-out and the known-pair documents and seeds the method.
    A translator that rates itself `low` with no held-out documents to verify it is refused unless `force` (then
    the new store's provenance records `migration.forced`); every input is checked before the first expensive step.
    `on_plan(plan)` is called before any work. `engine` / `address`: where the batches are translated and
    re-embedded (see `translate`).

    `documents`: the store's documents from a JSONL file of one line per row (where the store keeps none).
    `progressive` (a `Progressive`, or True for its defaults): then re-embed the documents by the new model
    checkpoint by checkpoint, replacing their rows in the new store (`vecbridge.jobs.progressive`); with
    `resume`, an unfinished progressive migration into `destination` continues where it stopped. Returns plan,
    training result, verification, recommendation, translation and the progressive state.
    """
    log = log or (lambda msg: None)
    progressive = Progressive() if progressive is True else progressive or None
    if progressive and resume and (state := progressive_jobs.read_state(destination)) is not None:
        log(f"resuming the progressive migration into {destination}: {state['done']:,} of {state['documents']:,} "
            "documents re-embedded")
        return {"progressive": progressive_jobs.run(destination, engine=engine, address=address, progress=progress,
                                                    log=log, on_checkpoint=progressive.on_checkpoint)}
    in_spec, out_spec = stores.parse_spec(source, "`source`"), stores.parse_spec(destination, "`destination`")
    _check_args(in_spec, out_spec, translator, source_encoder, pairs_from_documents, method, verify_documents,
                target_encoder)
    loaded = Translator.load(translator) if translator is not None else None
    _check_outputs(loaded, target_encoder, save_translator_to, in_spec)
    dim_out = loaded.dim_target_ if loaded is not None else get_encoder(target_encoder).dim
    with stores.open_reader(in_spec, "`source`") as reader:
        info = reader.info
        _check_source(reader, out_spec, loaded, dim_out, overwrite, resume, documents, pairs_from_documents,
                      progressive, engine, address)
        with_doc, held, held_rows = _scan_source(reader, verify_documents, seed, documents)
    _check_sources(pairs_from_documents, in_spec, with_doc, held, loaded, force)
    old_encoder = source_encoder or (info.encoder if installed_encoders().get(info.encoder) else None)
    sample = [held_rows[r][1] for r in held[:SPEED_SAMPLE]]
    speed = _encoder_speed(target_encoder, sample) if sample else None
    plan = _plan(in_spec, out_spec, info, dim_out, target_encoder, with_doc, held, speed, old_encoder, loaded,
                 translator, source_encoder, pairs_from_documents, method, reference_limit)
    if on_plan is not None:
        on_plan(plan)
    if dry_run:
        return {"plan": plan, "dry_run": True}
    trained = None
    with tempfile.TemporaryDirectory(prefix=".vecbridge-migrate-") as tmp, files.staged() as keep:
        if loaded is None:
            out_dir = keep.file(save_translator_to) if save_translator_to else Path(tmp) / "translator"
            trained = train_translator(
                in_spec.text, None, out_dir, method=method, params=params, seed=seed, target_encoder=target_encoder,
                source_encoder=source_encoder, reference_texts=reference_texts, reference_limit=reference_limit,
                pairs_from_documents=pairs_from_documents, exclude_document_rows=held, log=log)
            trained["output"], loaded = str(save_translator_to or out_dir), Translator.load(out_dir)
        confidence = getattr(loaded, "confidence_", None)  # a fresh translator's too: it was just loaded
        check, evidence = (_verify(loaded, held, held_rows, target_encoder, old_encoder, seed, log) if len(held)
                           else (None, None))
        rec = recommendation(check, (confidence or {}).get("verdict")) if check is not None else None
        mark = _unverified_low(confidence, check, force)
        summary = translate(loaded, in_spec.text, out_spec.text, overwrite=overwrite, resume=resume, provenance=mark,
                            progress=progress, engine=engine, address=address)
    state = progressive_jobs.follow(in_spec.text, out_spec.text, target_encoder, progressive, evidence, check,
                                    documents=documents, old_encoder=old_encoder, seed=seed, engine=engine,
                                    address=address, progress=progress, log=log) if progressive else None
    return {"plan": plan, "train": trained, "verify": check, "recommendation": rec, "translate": summary,
            "progressive": state,
            "translator_saved": None if save_translator_to is None and translator is None else
            str(save_translator_to or translator)}
