"""`.npy` vector files as a store: float32 rows with a JSON sidecar; ids are row numbers, no documents."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vecbridge import safe_write, storage
from vecbridge.stores.base import PROVENANCE_KEY, Batch, StoreInfo, StoreReader, StoreWriter, parse_provenance


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
            from vecbridge.errors import UserError

            raise UserError(f"{self.what} {spec} must end in .npy")
        inputs = [self.source.spec] if self.source and self.source.backend == "npy" else []
        safe_write.check_file_output(spec.path, self.overwrite, inputs=inputs, what=self.what)
        safe_write.check_free_space(spec.path, self.count * self.dim * 4 + 2**16)
        if self.source is not None:
            self.dropped = [f for f, has in (("ids", self.source.id_type != "row"),
                                             ("documents", self.source.documents),
                                             ("metadata", self.source.metadata)) if has]
        self.rows = 0

    def begin(self):
        self._stage = safe_write.staged()
        self._staging = self._stage.__enter__()
        self._file_cm = safe_write.npy_file(self._staging.file(self.spec.path), self.count, self.dim)
        self._file = self._file_cm.__enter__()

    def write(self, batch: Batch) -> None:
        with safe_write.disk_errors(self.spec.path):
            self._file.write(np.asarray(batch.vectors, dtype="<f4").tobytes())
        self.rows += len(batch)

    def commit(self) -> None:
        if self.rows != self.count:
            from vecbridge.errors import UserError

            raise UserError(f"{self.what} {self.spec}: the source gave {self.rows} rows but announced {self.count}; "
                            "it changed while being read: run again")
        with safe_write.disk_errors(self.spec.path):
            self._file_cm.__exit__(None, None, None)
            meta = {"encoder": self.provenance.get("encoder"), "normalised": True,
                    PROVENANCE_KEY: self.provenance}
            safe_write.write_json_file(self._staging.file(storage.sidecar_path(self.spec.path)),
                                       storage.vectors_meta(meta, (self.count, self.dim)))
            self._stage.__exit__(None, None, None)
        self.committed = True

    def abort(self) -> None:
        if hasattr(self, "_file"):
            self._file.close()
            self._staging.discard()
