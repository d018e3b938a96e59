"""Index-file stores (faiss, hnswlib) are built at commit from rows spilled, as they come, into staged `.npy`
files beside the destination: what a resumed run continues from."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vecbridge import files
from vecbridge.errors import UserError
from vecbridge.files import RowFile, claim, sidecar_path
from vecbridge.stores.base import PROVENANCE_KEY, STORE_FORMAT, Batch, StoreWriter, int_ids, parse_provenance
from vecbridge.stores.npy import read_sidecar


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
                raise UserError(f"the unfinished {key} of {dest} are missing; run without `resume` to start over")
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
        for f in self.files.values():
            f.close()
        return tuple(np.load(self.files[k].path, mmap_mode="r") if k in self.files else None
                     for k in ("vectors", "labels"))

    def discard(self) -> None:
        for f in self.files.values():
            f.file.close()
        self.staging.discard()


def has_vecbridge_sidecar(path) -> bool:
    """Whether the index file `path` has a sidecar with vecbridge's provenance (vecbridge wrote it)."""
    try:
        return parse_provenance(read_sidecar(path).get(PROVENANCE_KEY)) is not None
    except UserError:
        return False


class SpilledIndexWriter(StoreWriter):
    """A writer for index-file stores (faiss, hnswlib): rows are spilled to staged files as they come (what a
    resume continues from); at commit the subclass's `build_index` makes the index from them, and it is
    published with its sidecar."""

    backend = ""
    unique_ids = False  # the index keeps one row per id: a repeated id is refused, not written over

    def __init__(self, spec, marker=has_vecbridge_sidecar, **kwargs):
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
        if self.unique_ids and labels is not None:
            self.check_unique(labels.tolist(), batch, self.backend, self.spill.rows)
        with files.disk_errors(self.spec.path):
            self.spill.write(batch.vectors, labels)

    def durable_state(self) -> dict:
        with files.disk_errors(self.spec.path):
            return self.spill.state()

    def build_index(self, vectors: np.ndarray, labels: np.ndarray | None) -> tuple[Callable[[Path], None], dict]:
        """(a function that saves the index built from the rows to a path, the sidecar's backend fields)."""
        raise NotImplementedError

    def commit(self) -> None:
        with files.disk_errors(self.spec.path):
            vectors, labels = self.spill.arrays()
        save, fields = self.build_index(vectors, labels)
        meta = {"format": STORE_FORMAT, "backend": self.backend, "dim": self.dim, "count": len(vectors), **fields,
                "encoder": self.provenance.get("encoder"), PROVENANCE_KEY: self.provenance}
        with files.disk_errors(self.spec.path), files.staged() as stage:
            save(stage.file(self.spec.path))
            files.write_json_file(stage.file(sidecar_path(self.spec.path)), meta)
        self.spill.discard()
        self.committed = True

    def abort(self) -> None:
        if self.spill is not None:
            self.spill.discard()
