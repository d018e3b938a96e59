"""The store interface: a spec (what the user wrote, parsed once), what a store holds (`StoreInfo`), batches of
rows (`Batch`), and the reader / writer every backend implements.

Readers open a store read-only and stream batches; writers build the destination under a temporary name and
swap it in only on `commit` (a rename, an alias or a collection rename, whatever the backend offers).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vecbridge import files
from vecbridge.errors import UserError
from vecbridge.files import RowFile, claim, is_stale_tmp

STORE_FORMAT = "vecbridge-store"
# The key under which provenance is kept in a backend's collection-level metadata (or a sidecar's top level).
PROVENANCE_KEY = "vecbridge"
METRICS = ("cosine", "l2", "ip")
# Field names read as the rows' documents, in order of preference; writers write the first.
DOCUMENT_FIELDS = ("document", "text")
RESUME_FORMAT = "vecbridge-resume"
RESUME_SUFFIX = ".resume.json"
# Least seconds between two resume records: each costs an fsync, and a batch takes milliseconds.
CHECKPOINT_SECONDS = 1.0


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


class StoreReader:
    """Read-only access to one store; `batches` streams its rows in a stable order."""

    info: StoreInfo

    def batches(self, size: int) -> Iterator[Batch]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StoreWriter:
    """A destination store built under a temporary name. The constructor only checks (an existing destination
    is refused without `overwrite`, and replaced only if vecbridge wrote it); `write` adds batches to the
    temporary store; `commit` swaps it in; leaving the `with` block without a commit removes it.

    Resuming: after each write the job calls `checkpoint`, which records (at most once a second) how many rows
    the temporary store durably holds, beside it, with the run's `fingerprint` (translator, input, options).
    The record carries the temporary name's process id, so the sweeps of later runs remove it with the store
    once that process is dead. With `resume`, `begin` takes over the temporary store of a dead run whose record
    has the same fingerprint (`take_over`, then the backend's own adoption) and sets `resumed_rows`.
    """

    def __init__(self, spec: StoreSpec, *, dim: int, count: int, metric: str | None, provenance: dict,
                 overwrite: bool = False, source: StoreInfo | None = None, what: str = "--output",
                 fingerprint: str | None = None, resume: bool = False) -> None:
        self.spec, self.dim, self.count, self.overwrite, self.what = spec, dim, count, overwrite, what
        self.metric = metric if metric in METRICS else "cosine"
        self.provenance, self.source = provenance, source
        self.fingerprint, self.resume = fingerprint, resume
        if spec.url is not None:  # a server: no local place for resume records
            if resume:
                raise UserError(f"{what} {spec}: --resume needs a local store; a server's unfinished collection is "
                                "removed when its run fails: run again without --resume")
            self.fingerprint = None
        self.committed = False
        self.dropped: list[str] = []  # fields of the source this backend cannot hold
        self.resumed_rows = 0
        self._record: Path | None = None  # this run's resume record
        self._taken_record: Path | None = None  # the dead run's record this run took over
        self._last_record = 0.0

    def __enter__(self):
        self.begin()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self.committed:
                self.abort()
            self.close()
        finally:
            for record in (self._record, self._taken_record if self.committed else None):
                if record is not None:
                    record.unlink(missing_ok=True)

    def begin(self) -> None:
        state = self.take_over()
        self.open_tmp(state)
        if self.spec.path is not None:
            files.sweep_stale(self._record_dest())  # records (and, for files, temporary stores) of dead runs
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

    # -- resuming ------------------------------------------------------------------------------------------
    def _record_dest(self) -> Path:
        """The name resume records are tagged after: the store's path, plus `#NAME` for a collection or table."""
        return self.spec.path.parent / (self.spec.path.name + (f"#{self.spec.name}" if self.spec.name else ""))

    def take_over(self) -> dict | None:
        """With `resume`: the state recorded by a dead run with this run's fingerprint (the one furthest on),
        after which `resumed_rows` holds its row count; None when there is none. A dead run's record with
        another fingerprint (another translator, input or options) and none with this one is refused."""
        if not self.resume or self.spec.path is None:
            return None
        dest = self._record_dest()
        mine, others = [], 0
        for entry in dest.parent.iterdir() if dest.parent.is_dir() else ():
            if not entry.name.endswith(RESUME_SUFFIX) or not is_stale_tmp(entry.name, f".{dest.name}"):
                continue
            try:
                record = json.loads(entry.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict) or record.get("format") != RESUME_FORMAT:
                continue
            if record.get("fingerprint") == self.fingerprint and isinstance(record.get("rows"), int):
                mine.append((record["rows"], entry, record))
            else:
                others += 1
        if not mine:
            if others:
                raise UserError(f"{self.what} {self.spec}: the unfinished translation there was made with another "
                                "translator, input or options; resuming it would mix two translations: run "
                                "without --resume to discard it and start over")
            return None
        rows, self._taken_record, record = max(mine, key=lambda m: m[0])
        self.resumed_rows = rows
        return record.get("state") or {}

    def durable_state(self) -> dict | None:
        """What locates the temporary store and how many rows (`rows`) it durably holds now (syncing what needs
        it), or None when a resume could not continue this backend's store."""
        return None

    def checkpoint(self, force: bool = False) -> None:
        """Record the rows the temporary store durably holds (at most once a second unless `force`)."""
        if self.fingerprint is None or (not force and time.monotonic() - self._last_record < CHECKPOINT_SECONDS):
            return
        state = self.durable_state()
        if state is None:
            return
        if self._record is None:
            dest = self._record_dest()
            self._record = files.tmp_path(dest, RESUME_SUFFIX)
        rows = state.pop("rows")
        part = self._record.with_name(self._record.name + ".part")
        files.write_json_file(part, {"format": RESUME_FORMAT, "fingerprint": self.fingerprint, "spec": str(self.spec),
                               "rows": int(rows), "state": state})
        os.replace(part, self._record)
        self._last_record = time.monotonic()
        if self._taken_record is not None:  # this run's record now says where its store is
            self._taken_record.unlink(missing_ok=True)
            self._taken_record = None

    def write(self, batch: Batch) -> None:
        raise NotImplementedError

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


class Spill:
    """The rows of an index-file store (faiss, hnswlib), kept in staged .npy files beside the destination (float32
    vectors, and int64 labels where ids are kept) until `commit` builds the index from them; never published.
    `state` (from `take_over`) adopts the files of a dead run, cut back to `rows`."""

    def __init__(self, dest: Path, count: int, dim: int, labels: bool, state: dict | None = None,
                 rows: int = 0) -> None:
        held = {k: claim(Path(state[k])) for k in ("vectors", "labels") if state and state.get(k)}
        self.staging = files.Staging()
        self.files: dict[str, RowFile] = {}
        for key, shape, dtype in (("vectors", (count, dim), "<f4"), ("labels", (count,), "<i8")):
            if key == "labels" and not labels:
                continue
            path = self.staging.file(dest)
            if key in held:
                os.rename(held[key], path)
            elif state:
                raise UserError(f"the unfinished {key} of {dest} are missing; run without --resume to start over")
            self.files[key] = RowFile(path, shape, dtype, rows if state else None)

    @property
    def rows(self) -> int:
        return self.files["vectors"].rows

    def write(self, vectors, labels=None) -> None:
        self.files["vectors"].write(vectors)
        if "labels" in self.files:
            self.files["labels"].write(labels)

    def state(self) -> dict:
        for f in self.files.values():
            f.sync()
        return {"rows": self.rows, **{k: str(f.path) for k, f in self.files.items()}}

    def arrays(self):
        """(vectors, labels or None), memory-mapped from the closed files."""
        import numpy as np

        for f in self.files.values():
            f.close()
        return tuple(np.load(self.files[k].path, mmap_mode="r") if k in self.files else None
                     for k in ("vectors", "labels"))

    def discard(self) -> None:
        for f in self.files.values():
            f.file.close()
        self.staging.discard()


class SpilledIndexWriter(StoreWriter):
    """A writer for index-file stores (faiss, hnswlib): rows are spilled to staged files as they come (what a
    resume continues from) and the subclass builds the index from them in `commit`."""

    backend = ""

    def __init__(self, spec, marker, **kwargs):
        super().__init__(spec, **kwargs)
        same = self.source and self.source.backend == self.backend
        inputs = [self.source.spec.split(":", 1)[1].split("?")[0]] if same else []
        files.check_file_output(spec.path, self.overwrite, inputs=inputs, what=self.what, marker=marker)
        self.layout = self.source.layout if self.source else {}
        self.dropped = [f for f, has in (("documents", self.source and self.source.documents),
                                         ("metadata", self.source and self.source.metadata)) if has]
        self.keep_ids = bool(self.source) and self.source.id_type != "row"
        files.check_free_space(spec.path, 2 * self.count * (self.dim * 4 + 8) + 2**16)
        self.spill = None

    def open_tmp(self, state):
        self.spill = Spill(self.spec.path, self.count, self.dim, self.keep_ids, state, self.resumed_rows)

    def write(self, batch: Batch) -> None:
        labels = int_ids(batch, self.spec, self.what, self.backend) if self.keep_ids else None
        with files.disk_errors(self.spec.path):
            self.spill.write(batch.vectors, labels)

    def durable_state(self) -> dict:
        with files.disk_errors(self.spec.path):
            return self.spill.state()
