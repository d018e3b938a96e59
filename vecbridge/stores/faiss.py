"""faiss index files (`faiss:PATH`): vectors reconstructed from the index (exactly for Flat, IVF-Flat and
HNSW-Flat; approximately for PQ / IVF-PQ / SQ, reported as `exact: False`); `IndexIDMap` / `IDMap2` ids kept.

Written back as the same index family (IVF and PQ re-trained on the new vectors), with a sidecar `PATH.json`
holding the provenance. faiss holds no documents or metadata. A Flat index (with or without an IDMap2) is
streamed from the spilled rows into faiss's own file layout, never held in memory; Flat files are read through a
memory map.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vecbridge import files
from vecbridge.errors import UserError
from vecbridge.stores import npy
from vecbridge.stores.base import (
    PROVENANCE_KEY,
    Batch,
    StoreInfo,
    StoreReader,
    first_line,
    parse_provenance,
)
from vecbridge.stores.spill import SpilledIndexWriter

FLAT = ("IndexFlat", "IndexFlatIP", "IndexFlatL2")
EXACT = (*FLAT, "IndexIVFFlat", "IndexHNSWFlat")
APPROXIMATE = ("IndexPQ", "IndexIVFPQ", "IndexScalarQuantizer", "IndexIVFScalarQuantizer", "IndexHNSWPQ",
               "IndexHNSWSQ")


def _faiss():
    import faiss

    return faiss


def _metric(index) -> str:
    f = _faiss()
    return {f.METRIC_INNER_PRODUCT: "ip", f.METRIC_L2: "l2"}.get(index.metric_type, "l2")


def _factory(inner) -> str:
    """The index-factory string of the family of `inner` (for writing the same family back)."""
    f, kind = _faiss(), type(inner).__name__
    if kind.startswith("IndexFlat"):
        return "Flat"
    if kind == "IndexIVFFlat":
        return f"IVF{inner.nlist},Flat"
    if kind == "IndexHNSWFlat":
        return f"HNSW{inner.hnsw.nb_neighbors(1) or 32}"
    if kind == "IndexPQ":
        return f"PQ{inner.pq.M}x{inner.pq.nbits}"
    if kind == "IndexIVFPQ":
        return f"IVF{inner.nlist},PQ{inner.pq.M}x{inner.pq.nbits}"
    if kind in ("IndexScalarQuantizer", "IndexIVFScalarQuantizer"):
        names = {f.ScalarQuantizer.QT_8bit: "SQ8", f.ScalarQuantizer.QT_4bit: "SQ4", f.ScalarQuantizer.QT_fp16:
                 "SQfp16", f.ScalarQuantizer.QT_6bit: "SQ6", f.ScalarQuantizer.QT_8bit_uniform: "SQ8"}
        sq = names.get(inner.sq.qtype, "SQ8")
        return f"IVF{inner.nlist},{sq}" if kind == "IndexIVFScalarQuantizer" else sq
    return "Flat"


class Reader(StoreReader):
    def __init__(self, spec, what):
        self.spec, self.what = spec, what
        path = files.check_regular_file(spec.path, f"{what} {spec}:")
        f = _faiss()
        try:
            # kept: the downcast proxies below do not own the index; a Flat index's rows stay in the file, mapped
            self._raw = f.read_index(str(path), f.IO_FLAG_MMAP_IFC)
        except RuntimeError as e:
            raise UserError(f"{what} {spec} is not a readable faiss index ({first_line(e).split(': ')[-1]}); it may "
                            "be truncated or corrupt") from None
        index = f.downcast_index(self._raw)
        self.ids = None
        if type(index).__name__ in ("IndexIDMap", "IndexIDMap2"):
            self.ids = f.vector_to_array(index.id_map).astype(np.int64)
            index = f.downcast_index(index.index)
        kind = type(index).__name__
        if kind not in EXACT + APPROXIMATE:
            raise UserError(f"{what} {spec}: faiss index type {kind} is not supported; vecbridge reads Flat, "
                            "IVF-Flat, HNSW-Flat, PQ, IVF-PQ and SQ indexes (optionally in an IndexIDMap)")
        if index.ntotal == 0:
            raise UserError(f"{what} {spec}: the faiss index is empty")
        if "IVF" in kind:
            index.make_direct_map()  # in memory only: the file is never written
        self.index = index
        prov = parse_provenance(npy.read_sidecar(path).get(PROVENANCE_KEY))
        self.info = StoreInfo(str(spec), "faiss", int(index.ntotal), int(index.d),
                              (prov or {}).get("metric") or _metric(index),
                              exact=kind in EXACT, id_type="int" if self.ids is not None else "row",
                              encoder=(prov or {}).get("encoder"), provenance=prov,
                              layout={"faiss_factory": _factory(index), "idmap": self.ids is not None})

    def batches(self, size: int) -> Iterator[Batch]:
        for i in range(0, self.index.ntotal, size):
            yield self._reconstruct(i, i + size)

    def read_range(self, start: int, stop: int) -> Batch:
        if type(self.index).__name__ not in FLAT:  # every worker would load and index a whole approximate index
            raise NotImplementedError
        return self._reconstruct(start, stop)

    def _reconstruct(self, start: int, stop: int) -> Batch:
        start, stop = min(start, self.index.ntotal), min(stop, self.index.ntotal)
        try:
            vectors = np.ascontiguousarray(self.index.reconstruct_n(start, stop - start), dtype=np.float32)
        except RuntimeError as e:
            raise UserError(f"{self.what} {self.spec}: cannot reconstruct rows {start}-{stop} "
                            f"({first_line(e).split(': ')[-1]})") from None
        ids = self.ids[start:stop].tolist() if self.ids is not None else list(range(start, stop))
        return Batch(ids, vectors)


def _fit_factory(factory: str, dim: int) -> str:
    """`factory` with its PQ sub-quantizer count adjusted to divide `dim` (PQ needs dim % M == 0)."""
    head, sep, tail = factory.rpartition("PQ")
    if not sep:
        return factory
    m_text, _, nbits = tail.partition("x")
    m = int(m_text)
    while dim % m:
        m -= 1
    return f"{head}PQ{m}" + (f"x{nbits}" if nbits else "")


class Writer(SpilledIndexWriter):
    """Rows are spilled to staged files as they come (what a resume continues from); the index is built from
    them at commit (IVF / PQ need all vectors to train), written to a staged file and published with its
    sidecar."""

    backend = "faiss"

    def __init__(self, spec, **kwargs):
        super().__init__(spec, **kwargs)
        self.factory = _fit_factory(self.layout.get("faiss_factory", "Flat"), self.dim)

    def build_index(self, x, labels):
        f = _faiss()
        metric = f.METRIC_INNER_PRODUCT if self.metric in ("ip", "cosine") else f.METRIC_L2
        factory = f"IDMap2,{self.factory}" if self.keep_ids else self.factory
        fields = {"factory": factory, "metric": self.metric}
        if self.factory == "Flat" and flat_layout_holds(self.dim, metric, self.keep_ids):
            return (lambda path: write_flat(path, self.spill, self.dim, metric, self.keep_ids)), fields
        try:
            index = f.index_factory(self.dim, factory, metric)
            if not index.is_trained:
                index.train(x)
            if self.keep_ids:
                index.add_with_ids(x, labels)
            else:
                index.add(x)
        except RuntimeError as e:
            raise UserError(f"{self.what} {self.spec}: faiss could not build {factory} on {len(x)} vectors "
                            f"({first_line(e).split(': ')[-1]})") from None
        return (lambda path: f.write_index(index, str(path))), fields


# -- Flat indexes streamed to disk -----------------------------------------------------------------------
# faiss's layout of an IndexFlat file (write_index): a fourcc, the index header (d, ntotal, two unused fields,
# is_trained, metric_type), then the codes as a vector (its length in floats, then the rows); an IndexIDMap2
# file is its own fourcc and header, the Flat index, then the ids as a vector (length, then int64s).
# `flat_layout_holds` checks it against the installed faiss before it is used.
COPY_BYTES = 1 << 26


def _index_header(fourcc: bytes, dim: int, ntotal: int, metric: int) -> bytes:
    return fourcc + struct.pack("<iqqqBi", dim, ntotal, 1 << 20, 1 << 20, 1, metric)


def flat_prefix(dim: int, ntotal: int, metric: int, idmap: bool) -> bytes:
    """The bytes of a Flat (or IDMap2,Flat) index file of `ntotal` rows before its first row."""
    flat = _index_header(b"IxFI" if metric == _faiss().METRIC_INNER_PRODUCT else b"IxF2", dim, ntotal, metric)
    return (_index_header(b"IxM2", dim, ntotal, metric) if idmap else b"") + flat + struct.pack("<Q", ntotal * dim)


def flat_layout_holds(dim: int, metric: int, idmap: bool) -> bool:
    """Whether the installed faiss writes an empty index of this kind exactly as `flat_prefix` says (else the
    index is built in memory by faiss itself)."""
    f = _faiss()
    index = f.index_factory(dim, "IDMap2,Flat" if idmap else "Flat", metric)
    return f.serialize_index(index).tobytes() == flat_prefix(dim, 0, metric, idmap) + (b"\0" * 8 if idmap else b"")


def write_flat(path: Path, spill, dim: int, metric: int, idmap: bool) -> None:
    """The Flat index file of the spilled rows, copied from the spill files a block at a time."""
    rows = spill.rows
    with open(path, "wb") as out:
        out.write(flat_prefix(dim, rows, metric, idmap))
        _copy_rows(spill.files["vectors"], out, rows * dim * 4)
        if idmap:
            out.write(struct.pack("<Q", rows))
            _copy_rows(spill.files["labels"], out, rows * 8)
        out.flush()
        os.fsync(out.fileno())


def _copy_rows(row_file, out, nbytes: int) -> None:
    """`nbytes` after the .npy header of the closed spill file `row_file` onto the end of `out`: in the kernel
    (copy_file_range) where the file system can, else in blocks through this process."""
    out.flush()
    src = os.open(row_file.path, os.O_RDONLY)
    try:
        os.lseek(src, len(row_file.header), os.SEEK_SET)
        try:
            while nbytes > 0:
                done = os.copy_file_range(src, out.fileno(), min(nbytes, COPY_BYTES))
                if done == 0:
                    raise OSError(errno.EIO, f"{row_file.path} ended early")
                nbytes -= done
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        out.seek(0, os.SEEK_END)
        while nbytes > 0:
            block = os.read(src, min(nbytes, COPY_BYTES))
            if not block:
                raise OSError(errno.EIO, f"{row_file.path} ended early")
            out.write(block)
            nbytes -= len(block)
    finally:
        os.close(src)
