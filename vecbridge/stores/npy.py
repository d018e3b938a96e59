"""`.npy` vector files, the one place that reads and writes them: float32 rows (row i = item i) with a JSON
sidecar, and the store over them (ids are row numbers, no documents).

Readers check the file before anything is loaded (a regular file, a float 2-D .npy whose header matches its
size) and memory-map it; rows are validated by align's one vector validator where they enter a job.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from align.vectors import check_vectors
from vecbridge import files
from vecbridge.errors import UserError
from vecbridge.files import VECTORS_FORMAT, RowFile, claim, sidecar_path
from vecbridge.stores.base import (
    PROVENANCE_KEY,
    Batch,
    StoreInfo,
    StoreReader,
    StoreWriter,
    parse_provenance,
)

__all__ = ["Reader", "Writer", "open_vectors", "read_sidecar", "read_vectors", "sidecar_path", "vectors_meta",
           "write_vectors"]


def read_sidecar(path: str | os.PathLike) -> dict:
    """The sidecar of vector file `path` ({} when there is none)."""
    side = sidecar_path(path)
    if not side.exists() and not side.is_symlink():
        return {}
    return files.read_json(side, "sidecar")


def open_vectors(path: str | os.PathLike, name: str = "input") -> np.ndarray:
    """Memory-map a 2-D float .npy file without reading it; checks the file, rank, dtype and emptiness."""
    path = files.check_regular_file(path, name)
    if path.suffix != ".npy":
        raise UserError(f"{name} {path} is not a .npy file; vecbridge reads vectors from .npy files "
                        "(numpy.save of a float32 array, one row per item)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{name} {path} is not a readable .npy array ({reason}); it may be truncated") from None
    if not isinstance(arr, np.ndarray):
        raise UserError(f"{name} {path} is not a single .npy array")
    if arr.ndim != 2:
        raise UserError(f"{name} {path} has shape {arr.shape}; expected a 2-D array (items x dims)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise UserError(f"{name} {path} has dtype {arr.dtype}; expected float vectors (float32)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UserError(f"{name} {path} is empty (shape {arr.shape})")
    return arr


def read_vectors(path: str | os.PathLike, name: str = "input", min_rows: int = 1) -> np.ndarray:
    """A whole vector file in memory as float32, every row validated."""
    arr = np.array(open_vectors(path, name), dtype=np.float32)  # in memory and writable, not the mapped file
    return check_vectors(arr, f"{name} {path}", min_rows=min_rows)


def vectors_meta(meta: dict | None, vectors_shape: tuple[int, int]) -> dict:
    """A sidecar: the caller's metadata plus the format marker, dim and count (what marks vecbridge's files)."""
    return {**(meta or {}), "format": VECTORS_FORMAT, "dim": int(vectors_shape[1]), "count": int(vectors_shape[0])}


def write_vectors(path: str | os.PathLike, vectors: np.ndarray, meta: dict | None = None,
                  overwrite: bool = False) -> Path:
    """Write float32 rows to `path` (.npy) and their sidecar `path.json`, published together."""
    path = Path(path)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise UserError(f"cannot write {path}: vectors must be 2-D, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise UserError(f"refusing to write {path}: the vectors contain NaN or inf")
    files.check_file_output(path, overwrite)
    with files.disk_errors(path), files.staged() as stage:
        out = RowFile(stage.file(path), vectors.shape)
        try:
            out.write(vectors)
        except BaseException:
            out.file.close()  # the staged file goes with the stage; nothing to sync
            raise
        out.close()
        files.write_json_file(stage.file(sidecar_path(path)), vectors_meta(meta, vectors.shape))
    return path


class Reader(StoreReader):
    def __init__(self, spec, what):
        self.spec, self.what = spec, what
        self.array = open_vectors(spec.path, what)
        meta = read_sidecar(spec.path)
        self.info = StoreInfo(str(spec), "npy", int(self.array.shape[0]), int(self.array.shape[1]), "cosine",
                              id_type="row", encoder=meta.get("encoder"),
                              provenance=parse_provenance(meta.get(PROVENANCE_KEY)))

    def batches(self, size: int) -> Iterator[Batch]:
        for i in range(0, len(self.array), size):
            yield self.read_range(i, i + size)

    def read_range(self, start: int, stop: int) -> Batch:
        start, stop = min(start, len(self.array)), min(stop, len(self.array))
        if self.array.dtype == np.float32 and self.array.flags.c_contiguous:
            block = self._pread(start, stop)
        else:
            block = np.array(self.array[start:stop], dtype=np.float32)  # a slice of the memory-mapped file
        return Batch(list(range(start, stop)), block)

    def _pread(self, start: int, stop: int) -> np.ndarray:
        """Rows `start` to `stop` read from the file into a new array: faster than faulting the mapped pages in
        one by one, and they do not stay in this process's memory once used."""
        block = np.empty((stop - start, self.array.shape[1]), dtype=np.float32)
        view, offset = memoryview(block).cast("B"), self.array.offset + start * block.itemsize * block.shape[1]
        with open(self.spec.path, "rb", buffering=0) as f:
            done = 0
            while done < len(view):
                n = os.preadv(f.fileno(), [view[done:]], offset + done)
                if n == 0:
                    raise UserError(f"{self.what} {self.spec} ended before row {stop}; it may be truncated or changing")
                done += n
        return block


class Writer(StoreWriter):
    """Rows in order into a staged `.npy` + sidecar; ids, documents and metadata have nowhere to go."""

    def __init__(self, spec, **kwargs):
        super().__init__(spec, **kwargs)
        if spec.path.suffix != ".npy":
            raise UserError(f"{self.what} {spec} must end in .npy")
        inputs = [self.source.spec] if self.source and self.source.backend == "npy" else []
        files.check_file_output(spec.path, self.overwrite, inputs=inputs, what=self.what)
        files.check_free_space(spec.path, self.count * self.dim * 4 + 2**16)
        if self.source is not None:
            self.dropped = [f for f, has in (("ids", self.source.id_type != "row"),
                                             ("documents", self.source.documents),
                                             ("metadata", self.source.metadata)) if has]

    def open_tmp(self, state):
        held = claim(Path(state["file"])) if state else None
        self._staging = files.Staging()
        tmp = self._staging.file(self.spec.path)
        if held is not None:
            os.rename(held, tmp)
        self._file = RowFile(tmp, (self.count, self.dim), "<f4", self.resumed_rows if held else None)

    def write(self, batch: Batch) -> None:
        with files.disk_errors(self.spec.path):
            self._file.write(batch.vectors)

    def durable_state(self) -> dict:
        with files.disk_errors(self.spec.path):
            self._file.sync()
        return {"rows": self._file.rows, "file": str(self._file.path)}

    def commit(self) -> None:
        if self._file.rows != self.count:
            raise UserError(f"{self.what} {self.spec}: the source gave {self._file.rows} rows but announced "
                            f"{self.count}; it changed while being read: run again")
        with files.disk_errors(self.spec.path):
            self._file.close()
            # the sidecar states the provenance at its top level too, where readers of plain vector files look
            meta = {**self.provenance, "normalised": True, PROVENANCE_KEY: self.provenance}
            files.write_json_file(self._staging.file(sidecar_path(self.spec.path)),
                                       vectors_meta(meta, (self.count, self.dim)))
            self._staging.publish()
        self.committed = True

    def abort(self) -> None:
        if hasattr(self, "_file"):
            self._file.file.close()
        if hasattr(self, "_staging"):
            self._staging.discard()
