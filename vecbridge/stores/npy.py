"""`.npy` vector files as a store: float32 rows with a JSON sidecar; ids are row numbers, no documents."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vecbridge import safe_write, storage
from vecbridge.errors import UserError
from vecbridge.stores.base import (
    PROVENANCE_KEY,
    Batch,
    RowFile,
    StoreInfo,
    StoreReader,
    StoreWriter,
    claim,
    parse_provenance,
)


class Reader(StoreReader):
    def __init__(self, spec, what):
        self.spec = spec
        self.array = storage.open_vectors(spec.path, what)
        meta = storage.read_sidecar(spec.path)
        self.info = StoreInfo(str(spec), "npy", int(self.array.shape[0]), int(self.array.shape[1]), "cosine",
                              id_type="row", encoder=meta.get("encoder"),
                              provenance=parse_provenance(meta.get(PROVENANCE_KEY)))

    def batches(self, size: int) -> Iterator[Batch]:
        for i in range(0, len(self.array), size):
            block = np.array(self.array[i:i + size], dtype=np.float32)
            yield Batch(list(range(i, i + len(block))), block)


class Writer(StoreWriter):
    """Rows in order into a staged `.npy` + sidecar; ids, documents and metadata have nowhere to go."""

    def __init__(self, spec, **kwargs):
        super().__init__(spec, **kwargs)
        if spec.path.suffix != ".npy":
            raise UserError(f"{self.what} {spec} must end in .npy")
        inputs = [self.source.spec] if self.source and self.source.backend == "npy" else []
        safe_write.check_file_output(spec.path, self.overwrite, inputs=inputs, what=self.what)
        safe_write.check_free_space(spec.path, self.count * self.dim * 4 + 2**16)
        if self.source is not None:
            self.dropped = [f for f, has in (("ids", self.source.id_type != "row"),
                                             ("documents", self.source.documents),
                                             ("metadata", self.source.metadata)) if has]

    def open_tmp(self, state):
        held = claim(Path(state["file"])) if state else None
        self._staging = safe_write.Staging()
        tmp = self._staging.file(self.spec.path)
        if held is not None:
            os.rename(held, tmp)
        self._file = RowFile(tmp, (self.count, self.dim), "<f4", self.resumed_rows if held else None)

    def write(self, batch: Batch) -> None:
        with safe_write.disk_errors(self.spec.path):
            self._file.write(batch.vectors)

    def durable_state(self) -> dict:
        with safe_write.disk_errors(self.spec.path):
            self._file.sync()
        return {"rows": self._file.rows, "file": str(self._file.path)}

    def commit(self) -> None:
        if self._file.rows != self.count:
            raise UserError(f"{self.what} {self.spec}: the source gave {self._file.rows} rows but announced "
                            f"{self.count}; it changed while being read: run again")
        with safe_write.disk_errors(self.spec.path):
            self._file.close()
            meta = {"encoder": self.provenance.get("encoder"), "normalised": True,
                    PROVENANCE_KEY: self.provenance}
            safe_write.write_json_file(self._staging.file(storage.sidecar_path(self.spec.path)),
                                       storage.vectors_meta(meta, (self.count, self.dim)))
            self._staging.publish()
        self.committed = True

    def abort(self) -> None:
        if hasattr(self, "_file"):
            self._file.file.close()
        if hasattr(self, "_staging"):
            self._staging.discard()
