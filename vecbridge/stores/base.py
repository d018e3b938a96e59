"""The store interface: a spec (what the user wrote, parsed once), what a store holds (`StoreInfo`), batches of
rows (`Batch`), and the reader / writer every backend implements.

Readers open a store read-only and stream batches; writers build the destination under a temporary name and
swap it in only on `commit` (a rename, an alias or a collection rename, whatever the backend offers).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vecbridge import files
from vecbridge.errors import UserError
from vecbridge.files import claim
from vecbridge.stores.resume import ResumeRecords

STORE_FORMAT = "vecbridge-store"
# The key under which provenance is kept in a backend's collection-level metadata (or a sidecar's top level).
PROVENANCE_KEY = "vecbridge"
METRICS = ("cosine", "l2", "ip")
# Field names read as the rows' documents, in order of preference; writers write the first.
DOCUMENT_FIELDS = ("document", "text")


@dataclasses.dataclass(frozen=True)
class StoreSpec:
    """A parsed store spec. `text` is what the user wrote (used in every message)."""

    text: str
    scheme: str
    path: Path | None = None
    name: str | None = None
    vector_name: str | None = None
    url: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def option(self, key: str) -> str | None:
        return dict(self.options).get(key)

    def __str__(self) -> str:
        return self.text


@dataclasses.dataclass
class StoreInfo:
    """What a reader knows before streaming: shape, metric, whether its vectors are exact, what rides along."""

    spec: str
    backend: str
    count: int
    dim: int
    metric: str | None
    exact: bool = True
    id_type: str = "int"  # "int", "str" or "row" (row numbers: the store has no ids of its own)
    documents: bool = False
    metadata: bool = False
    encoder: str | None = None
    provenance: dict | None = None
    layout: dict = dataclasses.field(default_factory=dict)  # backend details a writer of the same family reuses
    metadata_schema: object = None  # a pyarrow schema of the metadata columns, where the source is columnar

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("metadata_schema")
        return out


@dataclasses.dataclass
class Batch:
    """Rows of a store: ids, float32 vectors (rows = items), documents and per-row metadata dicts (or None)."""

    ids: list
    vectors: np.ndarray
    documents: list | None = None
    metadata: list | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def tail(self, start: int) -> Batch:
        """The rows from `start` on."""
        return Batch(self.ids[start:], self.vectors[start:],
                     None if self.documents is None else self.documents[start:],
                     None if self.metadata is None else self.metadata[start:])

    def head(self, stop: int) -> Batch:
        """The rows before `stop` (the batch itself when that is all of it)."""
        if stop >= len(self):
            return self
        return Batch(self.ids[:stop], self.vectors[:stop], None if self.documents is None else self.documents[:stop],
                     None if self.metadata is None else self.metadata[:stop])

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        """One batch of the rows of `batches`, in order (the batch itself when there is one)."""
        if len(batches) == 1:
            return batches[0]
        return Batch([i for b in batches for i in b.ids], np.concatenate([b.vectors for b in batches]),
                     None if batches[0].documents is None else [d for b in batches for d in b.documents],
                     None if batches[0].metadata is None else [m for b in batches for m in b.metadata])


class StoreReader:
    """Read-only access to one store; `batches` streams its rows in a stable order."""

    info: StoreInfo

    def batches(self, size: int) -> Iterator[Batch]:
        raise NotImplementedError

    def read_range(self, start: int, stop: int) -> Batch:
        """Rows `start` to `stop` (excluded) in the order of `batches`, without reading the rows before them: what
        lets the workers of an engine read one store in parallel. Backends that cannot do it cheaply leave it
        unimplemented."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class UniqueIds:
    """The ids written so far, as sorted runs of their 64-bit hashes (8 bytes a row; a run is merged into the one
    before it once it is as long, so each hash is merged O(log n) times): `add` finds, in one pass over a batch,
    an id written before or repeated within the batch. Ints are their own hash; two different string ids share
    a hash with odds of about n² / 2^65 (1e-8 for a million rows)."""

    MASK = 2**64 - 1

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def add(self, keys) -> int | None:
        """Add a batch's ids (as the backend keys its rows); the index of the first that repeats an id (and then
        none is added), or None."""
        if all(type(k) is str for k in keys):
            h = np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys)).view(np.uint64)
        else:
            h = np.fromiter(((k if isinstance(k, int) else hash(k)) & self.MASK for k in keys), dtype=np.uint64,
                            count=len(keys))
        order = np.argsort(h, kind="stable")
        run = h[order]
        repeats = [order[1:][run[1:] == run[:-1]]]  # the later of two equal ids: stable order keeps them in turn
        for old in self.runs:  # sorted needles: each search starts where the last one ended
            at = np.minimum(np.searchsorted(old, run), len(old) - 1)
            repeats.append(order[old[at] == run])
        first = min((int(r.min()) for r in repeats if len(r)), default=None)
        if first is not None:
            return first
        self.runs.append(run)
        while len(self.runs) > 1 and len(self.runs[-1]) >= len(self.runs[-2]):
            newer, older = self.runs.pop(), self.runs.pop()
            self.runs.append(np.sort(np.concatenate([older, newer]), kind="stable"))  # two sorted runs: a merge
        return None


class StoreWriter:
    """A destination store built under a temporary name. The constructor only checks (an existing destination
    is refused without `overwrite`, and replaced only if vecbridge wrote it); `write` adds batches to the
    temporary store; `commit` swaps it in; leaving the `with` block without a commit removes it.

    Resuming: after each write the job calls `checkpoint`, which records how many rows the temporary store
    durably holds (`vecbridge.stores.resume`). With `resume`, `begin` takes over the temporary store of a dead
    run of the same `fingerprint` (the backend's `open_tmp` adopts it) and sets `resumed_rows`.
    """

    def __init__(self, spec: StoreSpec, *, dim: int, count: int, metric: str | None, provenance: dict,
                 overwrite: bool = False, source: StoreInfo | None = None, what: str = "`output`",
                 fingerprint: str | None = None, resume: bool = False) -> None:
        self.spec, self.dim, self.count, self.overwrite, self.what = spec, dim, count, overwrite, what
        self.metric = metric if metric in METRICS else "cosine"
        self.provenance, self.source = provenance, source
        self.fingerprint, self.resume = fingerprint, resume
        if spec.url is not None:  # a server: no local place for resume records
            if resume:
                raise UserError(f"{what} {spec}: `resume` needs a local store; a server's unfinished collection is "
                                "removed when its run fails: run again without `resume`")
            self.fingerprint = None
        self.committed = False
        self.dropped: list[str] = []  # fields of the source this backend cannot hold
        self.resumed_rows = 0
        self.records = None if spec.path is None else ResumeRecords(spec, self.fingerprint, what)

    def __enter__(self):
        self.begin()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self.committed:
                self.abort()
            self.close()
        finally:
            if self.records is not None:
                self.records.finish(self.committed)

    def begin(self) -> None:
        taken = self.records.take_over() if self.records is not None and self.resume else None
        state = None
        if taken is not None:
            self.resumed_rows, state = taken
        self.open_tmp(state)
        if self.records is not None:
            self.records.sweep()  # records (and, for files, temporary stores) of dead runs
        if state is not None:
            self.checkpoint(force=True)

    def open_tmp(self, state: dict | None) -> None:
        """Create the temporary store, or with `state` (from `take_over`) adopt the dead run's and cut it back to
        its first `resumed_rows` rows."""

    def root(self, resumed: str | None = None) -> Path:
        """Where a directory store is built: the destination if it exists (a new collection goes into it), else
        a staged temporary directory renamed into place by `publish_root` (nothing is left if the run fails).
        `resumed`: the staged directory of the dead run being resumed, taken over instead of a new one."""
        if self.spec.path.exists():
            return self.spec.path
        held = claim(Path(resumed)) if resumed and Path(resumed).is_dir() else None
        self._root_staging = files.Staging()
        tmp = self._root_staging.directory(self.spec.path)
        if held is not None:
            tmp.rmdir()
            os.rename(held, tmp)
        self._root_tmp = tmp
        return tmp

    def publish_root(self) -> None:
        if getattr(self, "_root_staging", None) is not None:
            self._root_staging.publish()

    def discard_root(self) -> None:
        if getattr(self, "_root_staging", None) is not None:
            self._root_staging.discard()

    def staged_root(self) -> str | None:
        """The staged directory this store is built in (None when it goes into an existing directory)."""
        tmp = getattr(self, "_root_tmp", None)
        return None if tmp is None else str(tmp)

    # -- resuming: see `vecbridge.stores.resume` -------------------------------------------------------
    def durable_state(self) -> dict | None:
        """What locates the temporary store and how many rows (`rows`) it durably holds now (syncing what needs
        it), or None when a resume could not continue this backend's store."""
        return None

    def checkpoint(self, force: bool = False) -> None:
        """Record the rows the temporary store durably holds (at most every `resume.CHECKPOINT_SECONDS`, unless
        `force`)."""
        if self.records is not None:
            self.records.checkpoint(self.durable_state, force)

    def write(self, batch: Batch) -> None:
        raise NotImplementedError

    # a store of files that an engine's workers can write themselves, part by part (Parquet): see
    # `parquet.Writer.worker_parts` and `adopt_part`; elsewhere this process writes every batch
    workers_write = False

    def worker_parts(self, batch: int, first: Batch):
        raise NotImplementedError

    def adopt_part(self, k: int, rows: int) -> None:
        raise NotImplementedError

    def check_unique(self, keys, batch: Batch, backend: str, written: int) -> None:
        """Refuse a batch that repeats an id (`keys`: its ids as the backend keys rows, which keeps one row per
        id; `written`: the rows before it): written, the rows would be lost in silence."""
        if not hasattr(self, "_unique"):
            self._unique = UniqueIds()
        k = self._unique.add(keys)
        if k is not None:
            raise UserError(f"{self.what} {self.spec}: the source has the id {batch.ids[k]!r} more than once (again "
                            f"at row {written + k}); {backend} keeps one row per id, so rows would be lost: give "
                            "every row its own id, or write to a store that keeps every row (lancedb:, Parquet, "
                            ".npy)")

    def check_count(self, held: int, written: int, backend: str) -> None:
        """Refuse to commit a store that holds another number of rows than were written (ids repeated across a
        resumed run's two parts, which `check_unique` does not see)."""
        if held != written:
            raise UserError(f"{self.what} {self.spec}: {written} rows were written but the {backend} store holds "
                            f"{held}; the source repeats ids ({backend} keeps one row per id): give every row its "
                            "own id; nothing was published")

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


# -- helpers shared by the backends ----------------------------------------------------------------------
def provenance_json(provenance: dict) -> str:
    return json.dumps(provenance, sort_keys=True, ensure_ascii=False, allow_nan=False)


def parse_provenance(raw) -> dict | None:
    """Provenance recorded by a writer (a dict or its JSON text), or None when it is not vecbridge's."""
    if isinstance(raw, (bytes, str)):
        try:
            raw = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
    return raw if isinstance(raw, dict) and raw.get("format") == STORE_FORMAT else None


def document_field(names) -> str | None:
    return next((f for f in DOCUMENT_FIELDS if f in names), None)


def existing_dir(spec: StoreSpec, what: str) -> Path:
    """The store's directory, which must exist before a client opens it (clients create missing ones)."""
    if not spec.path.exists():
        raise UserError(f"{what} {spec}: {spec.path} does not exist; give the directory of an existing {spec.scheme} "
                        "store")
    if not spec.path.is_dir():
        raise UserError(f"{what} {spec}: {spec.path} is not a directory; {spec.scheme} stores are directories")
    return spec.path


def check_parent_dir(spec: StoreSpec) -> None:
    files.check_parent(spec.path / "x" if spec.path.is_dir() else spec.path)


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def int_ids(batch: Batch, spec: StoreSpec, what: str, backend: str) -> np.ndarray:
    """The batch's ids as non-negative int64 labels, or a one-line error naming the first id that is not one."""
    out = np.empty(len(batch.ids), dtype=np.int64)
    for i, v in enumerate(batch.ids):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or int(v) < 0:
            raise UserError(f"{what} {spec}: {backend} ids are non-negative integers but the source has id {v!r}; "
                            "write to a store that keeps string ids (chroma:, lancedb:, Parquet)")
        out[i] = int(v)
    return out
