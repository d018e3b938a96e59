"""Progressive migration: a migrated store that starts as the translated bridge and becomes the re-embedded store.

After `migrate` has written the translated store, its documents are re-embedded by the new model in resumable
batches and their rows replaced in place (`vecbridge.stores.replace`); the store serves throughout. While it mixes
re-embedded and translated rows, the re-embedded ones are written calibrated (`calibration`: their similarities
shrunk to the translated rows' scale, else their sharper scores crowd every top-k and the store serves worse than
the bridge); the last checkpoint writes every re-embedded row exactly as re-embedding gives it (kept meanwhile in
the work directory's `true.npy`, read back one block at a time). At each checkpoint the retention is
measured on `migrate`'s held-out documents as the store holds them then (re-embedded or translated), by the same
pseudo-query check as the verdict. The work's state lives in a directory of vecbridge's cache keyed by the
destination (`work_dir`): the order of the documents (a Parquet file of row, id, document), the held-out evidence
and `state.json`, which `status` reads.

Orders: `random` (seeded), or `queries`: the documents that a query log reaches first, from the candidates of each
logged query (its nearest rows in the old store by the old model where it still runs, and in the translated store by
the new model), rank by rank, then the rest at random.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from align.vectors import unit_rows_np
from vecbridge import engine as engines
from vecbridge import files, paths, stores
from vecbridge.errors import UserError
from vecbridge.jobs.verify import pseudo_query_check
from vecbridge.stores.replace import replace_rows
from vecbridge.texts import jsonl_rows, read_texts

FORMAT = "vecbridge-progressive"
ORDERS = ("random", "queries")
CHECKPOINT_FRACTION = 0.05  # a checkpoint every 5% of the documents by default ...
MIN_CHECKPOINT_ROWS = 256  # ... of at least this many rows
CANDIDATES = 10  # nearest rows per logged query that `queries` order re-embeds first
ENCODE_CHUNK = 256  # documents per encoder call (the same on every engine: identical vectors)


@dataclasses.dataclass
class Progressive:
    """How `migrate` re-embeds after translating: `checkpoint_rows` documents between checkpoints (default 5% of
    them), in `order` (`random`, or `queries`: those the query log `queries` reaches first); `on_checkpoint(state)`
    is called at each checkpoint, the first before any row is replaced."""

    order: str = "random"
    queries: str | None = None
    checkpoint_rows: int | None = None
    on_checkpoint: Callable[[dict], None] | None = None


def work_dir(destination) -> Path:
    """Where the progressive state of the store `destination` lives (vecbridge's cache, keyed by the store)."""
    spec = stores.parse_spec(destination, "`destination`")
    key = str(spec.path.resolve()) + "#" + (spec.name or "") if spec.path is not None else spec.text
    return paths.home() / "progressive" / hashlib.sha256(key.encode()).hexdigest()[:16]


def read_state(destination) -> dict | None:
    path = work_dir(destination) / "state.json"
    return files.read_json(path, "progressive state") if path.exists() else None


def _state(destination) -> dict:
    """The state of the progressive migration into `destination`, or a one-line error when there is none."""
    state = read_state(destination)
    if state is None or state.get("format") != FORMAT:
        raise UserError(f"`destination` {destination} has no progressive migration (none was started with "
                        "`progressive`, or its state was removed)")
    return state


def _save_state(wd: Path, state: dict) -> None:
    with files.staged() as stage:
        files.write_json_file(stage.file(wd / "state.json"), state)


def _save_array(wd: Path, name: str, array: np.ndarray) -> None:
    with files.staged() as stage:
        tmp = stage.file(wd / name)
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def _load_array(wd: Path, name: str) -> np.ndarray:
    return np.load(wd / name, allow_pickle=False)


def check_documents_file(documents, rows: int) -> Path:
    """`documents`: a JSONL file of one object per row of the store, in its order (`text`: the row's document)."""
    path = files.check_regular_file(documents, "`documents`")
    if path.suffix != ".jsonl":
        raise UserError(f"`documents` {path} must be a .jsonl file with one {{\"text\": ...}} line per row of the "
                        "store, in its order")
    lines = sum(1 for _ in jsonl_rows(path, "`documents`", '{"text": "..."} or {"text": null}'))
    if lines != rows:
        raise UserError(f"`documents` {path} has {lines} lines but the store has {rows} rows; give one line per "
                        "row, in the store's order")
    return path


def check_args(info: stores.StoreInfo, documents, order: str, queries: str | None, checkpoint_rows: int | None,
               engine: str, address: str | None) -> None:
    """Refuse, before any work, a progressive migration that could not run to its end (`documents`: checked by
    `check_documents_file`)."""
    if order not in ORDERS:
        raise UserError(f"`order` {order!r} is not an order; use one of: {', '.join(ORDERS)}")
    if (order == "queries") != (queries is not None):
        raise UserError("`order` queries re-embeds first what a query log reaches: give both it and `queries`"
                        if order == "queries" else "`queries` is a query log for `order` queries; give both")
    if queries is not None:
        read_texts(queries, limit=1)
    if checkpoint_rows is not None and checkpoint_rows < 1:
        raise UserError(f"`checkpoint_rows` must be a positive number of rows, got {checkpoint_rows}")
    if documents is None and not info.documents:
        raise UserError(f"`progressive` re-embeds the store's documents, and {info.spec} keeps none; give "
                        "`documents`, a JSONL file with one {\"text\": ...} line per row")
    engines.check(engine, address)


def documented_rows(reader: stores.StoreReader, documents=None) -> Iterator[tuple[int, object, np.ndarray, str]]:
    """(row, id, vector, document) of every row with a non-empty document, the documents from the store itself or
    from `documents`, a JSONL file of one line per row (checked by `check_documents_file`)."""
    texts = iter(jsonl_rows(Path(documents), "`documents`", '{"text": "..."}')) if documents is not None else None
    at = 0
    for block in reader.batches(stores.batch_rows(reader.info.spec)):
        docs = ([(next(texts)[1] or {}).get("text") for _ in range(len(block))] if texts is not None
                else block.documents or [None] * len(block))
        for i, doc in enumerate(docs):
            if isinstance(doc, str) and doc.strip():
                yield at + i, block.ids[i], block.vectors[i], doc
        at += len(block)


def _best_ranks(queries: np.ndarray, spec, what: str, k: int, best: np.ndarray) -> None:
    """Lower `best[row]` to the rank (0 = nearest) at which any query of `queries` finds `row` among its `k`
    nearest rows of the store `spec` (cosine), streaming the store."""
    q = unit_rows_np(queries)
    top_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    top_i = np.zeros((len(q), k), dtype=np.int64)
    with stores.open_reader(spec, what) as reader:
        at = 0
        for block in reader.batches(stores.FILE_BATCH_ROWS):
            sims = q @ unit_rows_np(block.vectors).T
            both_s = np.concatenate([top_s, sims], axis=1)
            both_i = np.concatenate([top_i, np.broadcast_to(np.arange(at, at + len(block)), sims.shape)], axis=1)
            keep = np.argpartition(-both_s, min(k, both_s.shape[1] - 1), axis=1)[:, :k]
            top_s, top_i = np.take_along_axis(both_s, keep, 1), np.take_along_axis(both_i, keep, 1)
            at += len(block)
    order = np.argsort(-top_s, axis=1, kind="stable")
    top_i, top_s = np.take_along_axis(top_i, order, 1), np.take_along_axis(top_s, order, 1)
    for rank in range(k):
        hit = top_i[np.isfinite(top_s[:, rank]), rank]
        best[hit] = np.minimum(best[hit], rank)


def _order(kind: str, rows: np.ndarray, store_rows: int, seed: int, queries: str | None, source, destination,
           target_encoder: str, old_encoder: str | None, log: Callable[[str], None]) -> np.ndarray:
    """The positions into `rows` in the order they are re-embedded."""
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(len(rows))
    if kind == "random":
        return np.argsort(tiebreak, kind="stable")
    texts = read_texts(queries)
    log(f"ordering by {len(texts)} logged queries: their {CANDIDATES} nearest rows in the translated store"
        + (f" and, by {old_encoder}, in the old store" if old_encoder else "") + " first")
    best = np.full(store_rows, np.iinfo(np.int64).max, dtype=np.int64)
    _best_ranks(engines.encode_texts(texts, target_encoder), destination, "`destination`", CANDIDATES, best)
    if old_encoder:
        _best_ranks(engines.encode_texts(texts, old_encoder), source, "`source`", CANDIDATES, best)
    return np.lexsort((tiebreak, best[rows]))


def start(source, destination, target_encoder: str, evidence: dict | None, verify: dict | None, *,
          documents=None, order: str = "random", queries: str | None = None, old_encoder: str | None = None,
          checkpoint_rows: int | None = None, seed: int = 0, log: Callable[[str], None] = lambda m: None) -> dict:
    """Begin re-embedding the translated store `destination` (just written from `source`): record the order of
    its documents, the held-out `evidence` (rows, their re-embedded and translated vectors, pseudo-queries) and
    the verdict's numbers `verify` in a fresh work directory; return the state."""
    wd = work_dir(destination)
    if wd.exists():
        for stale in wd.iterdir():
            files.remove(stale)
    wd.mkdir(parents=True, exist_ok=True)
    with stores.open_reader(source, "`source`") as reader:
        store_rows = reader.info.count
        found = [(row, str(i), doc) for row, i, _, doc in documented_rows(reader, documents)]
    rows = np.array([f[0] for f in found], dtype=np.int64)
    ids, docs = [f[1] for f in found], [f[2] for f in found]
    if not len(rows):
        raise UserError("`progressive` re-embeds the store's documents, and it has none; give `documents`")
    perm = _order(order, rows, store_rows, seed, queries, source, destination, target_encoder, old_encoder, log)
    pq.write_table(pa.table({"row": rows[perm], "id": pa.array([ids[i] for i in perm], pa.string()),
                             "document": pa.array([docs[i] for i in perm], pa.large_string())}),
                   wd / "todo.parquet")
    shrink = 1.0
    if evidence is not None:
        for name, array in evidence.items():
            _save_array(wd, f"held_{name}.npy", array)
        shrink, direction = calibration(evidence["new"], evidence["migrated"])
        _save_array(wd, "calibration_direction.npy", direction)
    with stores.open_reader(destination, "`destination`") as reader:
        provenance = reader.info.provenance or {}
    every = checkpoint_rows or max(MIN_CHECKPOINT_ROWS, int(np.ceil(len(rows) * CHECKPOINT_FRACTION)))
    state = {"format": FORMAT, "source": str(source), "destination": str(destination),
             "target_encoder": target_encoder, "order": order, "queries": queries, "documents": len(rows),
             "store_rows": int(store_rows), "done": 0, "checkpoint_rows": int(every), "seconds": 0.0,
             "complete": False, "provenance": provenance, "evidence": evidence is not None,
             "calibration": {"shrink": shrink, "direction": "least-variance of the re-embedded held-out rows"},
             "verify": {k: (verify or {}).get(k) for k in ("migrate", "query_side", "stay")},
             "checkpoints": [{"done": 0, "fraction": 0.0, "retention": (verify or {}).get("migrate"),
                              "at": time.time()}]}
    _save_state(wd, state)
    return state


def calibration(new: np.ndarray, migrated: np.ndarray) -> tuple[float, np.ndarray]:
    """(shrink, direction) that put a re-embedded row's scores on the translated rows' scale while both share the
    store: a translated row is a blurred copy of the true one, so its similarities run flatter, and true rows,
    sharper, take more than their share of every top-k. `shrink` is the slope of the translated similarities on
    the true ones among the held-out documents (`new`, `migrated`: their re-embedded and translated rows);
    `direction` is the true rows' least-variance direction, along which queries barely reach."""
    sims_true, sims_tr = new @ new.T, new @ migrated.T
    off = ~np.eye(len(new), dtype=bool)
    shrink = float(np.clip(np.polyfit(sims_true[off], sims_tr[off], 1)[0], 0.5, 1.0))
    _, vectors = np.linalg.eigh(np.cov(new.T.astype(np.float64)))
    direction = vectors[:, 0]
    direction *= np.sign(direction[np.argmax(np.abs(direction))])  # a fixed sign: the same on every run
    return shrink, direction.astype(np.float32)


def calibrated(vectors: np.ndarray, shrink: float, direction: np.ndarray | None) -> np.ndarray:
    """Re-embedded rows as a store mixed with translated rows holds them (`calibration`); exact with no direction."""
    if direction is None or shrink >= 1.0:
        return vectors
    v = vectors.astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    along = v @ direction
    # shrink * v + c * direction, c >= 0 per row such that the row stays unit length: every similarity scaled by
    # `shrink`, plus c times the query's (small) reach along `direction`
    c = -shrink * along + np.sqrt((shrink * along) ** 2 + 1.0 - shrink * shrink)
    return (shrink * v + c[:, None] * direction).astype(np.float32)


def _calibration(wd: Path, state: dict) -> tuple[float, np.ndarray | None]:
    path = wd / "calibration_direction.npy"
    return (state["calibration"]["shrink"], _load_array(wd, path.name)) if path.exists() else (1.0, None)


def retention(wd: Path, done_rows: np.ndarray, state: dict) -> float | None:
    """nDCG@10 of the held-out pseudo-queries as a fraction of re-embedding's, with the held-out documents as the
    store holds them once `done_rows` are re-embedded (None without held-out evidence)."""
    if not (wd / "held_rows.npy").exists():
        return None
    held, new, migrated = (_load_array(wd, f"held_{n}.npy") for n in ("rows", "new", "migrated"))
    as_stored = new if state["complete"] else calibrated(new, *_calibration(wd, state))
    mixed = np.where(np.isin(held, done_rows)[:, None], as_stored, migrated)
    return pseudo_query_check(new, _load_array(wd, "held_queries.npy"), migrated=mixed)["migrate"]


def _provenance(state: dict, done: int) -> dict:
    out = dict(state["provenance"])
    out["reembedded"] = {"encoder": state["target_encoder"], "rows": int(done), "documents": state["documents"],
                         "store_rows": state["store_rows"], "complete": done == state["documents"]}
    return out


def _keep_true_rows(wd: Path, state: dict, start: int, vectors: np.ndarray) -> None:
    """Append a checkpoint's re-embedded rows (from document `start` on) to the work directory's `true.npy`, which
    the last checkpoint writes into the store; a killed run's rows past `start` are cut off first."""
    out = files.RowFile(wd / "true.npy", (state["documents"], vectors.shape[1]), rows=start or None)
    try:
        out.write(vectors)
    finally:
        out.close()


def run(destination, *, engine: str = "local", address: str | None = None, progress: bool | None = None,
        log: Callable[[str], None] = lambda m: None, on_checkpoint: Callable[[dict], None] | None = None) -> dict:
    """Re-embed the rest of the documents of a progressive migration into `destination`, checkpoint by checkpoint
    (each replaces its rows in the store and records the retention; `on_checkpoint(state)` after each, and before the
    first when none is done yet); return the final state."""
    wd, state = work_dir(destination), _state(destination)
    todo = pq.read_table(wd / "todo.parquet")
    rows, ids = todo.column("row").to_numpy(), todo.column("id").to_pylist()
    documents = todo.column("document")
    if on_checkpoint is not None and state["done"] == 0:
        on_checkpoint(state)  # checkpoint 0: the translated store, before any row is replaced
    while state["done"] < state["documents"]:
        start, stop = state["done"], min(state["done"] + state["checkpoint_rows"], state["documents"])
        began = time.perf_counter()
        vectors = engines.encode_texts(documents[start:stop].to_pylist(), state["target_encoder"], engine=engine,
                                       address=address, chunk=ENCODE_CHUNK, progress=progress,
                                       desc=f"re-embed {start:,}-{stop:,} of {state['documents']:,}")
        _keep_true_rows(wd, state, start, vectors)
        if stop < state["documents"]:  # mixed with translated rows: calibrated
            replace_rows(destination, rows[start:stop], ids[start:stop], calibrated(vectors, *_calibration(wd, state)),
                         _provenance(state, stop))
        else:  # the last checkpoint: every re-embedded row exactly as re-embedding gives it
            replace_rows(destination, rows[:stop], ids[:stop], np.load(wd / "true.npy", mmap_mode="r"),
                         _provenance(state, stop))
        state["done"], state["seconds"] = stop, state["seconds"] + time.perf_counter() - began
        state["complete"] = stop == state["documents"]
        state["checkpoints"].append({"done": stop, "fraction": stop / state["documents"],
                                     "retention": retention(wd, rows[:stop], state), "at": time.time()})
        _save_state(wd, state)
        log(f"re-embedded {stop:,} of {state['documents']:,} documents"
            + (f"; retention {state['checkpoints'][-1]['retention']:.3f} of re-embedding"
               if state["checkpoints"][-1]["retention"] is not None else ""))
        if on_checkpoint is not None:
            on_checkpoint(state)
    return state


def follow(source, destination, target_encoder: str, options: Progressive, evidence: dict | None,
           verify: dict | None, *, documents=None, old_encoder: str | None = None, seed: int = 0,
           engine: str = "local", address: str | None = None, progress: bool | None = None,
           log: Callable[[str], None] = lambda m: None) -> dict:
    """`start` then `run`: the whole progressive re-embedding after `migrate` wrote the translated store."""
    start(source, destination, target_encoder, evidence, verify, documents=documents, order=options.order,
          queries=options.queries, old_encoder=old_encoder, checkpoint_rows=options.checkpoint_rows, seed=seed,
          log=log)
    return run(destination, engine=engine, address=address, progress=progress, log=log,
               on_checkpoint=options.on_checkpoint)


def status(destination) -> dict:
    """Where the progressive migration into `destination` stands: fraction done, ETA at the rate so far, the
    retention at the last checkpoint beside the bridge and staying, and whether it is complete."""
    state = _state(destination)
    done, total = state["done"], state["documents"]
    rate = done / state["seconds"] if state["seconds"] > 0 else None
    last = state["checkpoints"][-1]
    return {"destination": state["destination"], "source": state["source"], "encoder": state["target_encoder"],
            "order": state["order"], "done": done, "documents": total, "fraction": round(done / total, 4),
            "complete": state["complete"], "documents_per_second": None if rate is None else round(rate, 2),
            "eta_seconds": 0 if state["complete"] else None if not rate else round((total - done) / rate),
            "retention": last["retention"], "bridge": state["verify"].get("migrate"),
            "stay": state["verify"].get("stay"), "query_side": state["verify"].get("query_side"),
            "checkpoints": [{k: c[k] for k in ("done", "fraction", "retention")} for c in state["checkpoints"]],
            "translated_rows_left": state["store_rows"] - done}
