"""hnswlib index files (`hnswlib:PATH`): labels and vectors via `get_ids_list` / `get_items`. The file does not
say its dim or space, so they come from the sidecar `PATH.json` (what vecbridge writes) or the spec's options
`hnswlib:PATH?dim=384&space=cosine`. hnswlib holds no documents or metadata.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

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

SPACES = {"cosine": "cosine", "ip": "ip", "l2": "l2"}


def _settings(spec, what, meta: dict) -> tuple[int, str]:
    dim, space = spec.option("dim") or meta.get("dim"), spec.option("space") or meta.get("space") or "cosine"
    if dim is None:
        raise UserError(f"{what} {spec}: an hnswlib file does not record its dim; give it in the spec "
                        f"(hnswlib:{spec.path}?dim=N&space=cosine) or a sidecar {npy.sidecar_path(spec.path)} "
                        'with {"dim": N, "space": "cosine"}')
    try:
        dim = int(dim)
    except (TypeError, ValueError):
        dim = 0
    if dim < 1:
        raise UserError(f"{what} {spec}: dim must be a positive integer, got {spec.option('dim') or meta.get('dim')!r}")
    if space not in SPACES:
        raise UserError(f"{what} {spec}: space must be one of {', '.join(SPACES)}, got {space!r}")
    return dim, space


def file_dim(path) -> int | None:
    """The dim of the float vectors an hnswlib index file holds, from its header (the bytes of a row's vector are
    the gap between two offsets it records), or None when the header is not an index's."""
    with open(path, "rb") as f:
        header = f.read(48)
    if len(header) < 48:
        return None
    offset_data, label_offset = struct.unpack("<6Q", header)[5], struct.unpack("<6Q", header)[4]
    size = label_offset - offset_data
    return size // 4 if 0 < size and size % 4 == 0 else None


class Reader(StoreReader):
    def __init__(self, spec, what):
        import hnswlib

        self.spec, self.what = spec, what
        path = files.check_regular_file(spec.path, f"{what} {spec}:")
        meta = npy.read_sidecar(path)
        dim, space = _settings(spec, what, meta)
        # hnswlib loads a file with any dim it is told and reads misaligned rows: the header says the real one
        held = file_dim(path)
        if held is not None and held != dim:
            raise UserError(f"{what} {spec}: the index holds {held}-dim vectors but dim {dim} was given (in the spec "
                            f"or its sidecar); give dim={held}")
        self.index = hnswlib.Index(space=space, dim=dim)
        try:
            self.index.load_index(str(path))
        except (RuntimeError, ValueError) as e:
            raise UserError(f"{what} {spec} is not a readable hnswlib index ({first_line(e)}); it may be truncated "
                            "or corrupt") from None
        self.labels = np.sort(np.asarray(self.index.get_ids_list(), dtype=np.int64))
        if len(self.labels) == 0:
            raise UserError(f"{what} {spec}: the hnswlib index is empty")
        if space == "cosine":
            # the file does not know its dim: a wrong one reads misaligned rows, which are not unit vectors
            norms = np.linalg.norm(self.index.get_items(self.labels[:64], return_type="numpy"), axis=1)
            if not np.all(np.abs(norms - 1) < 1e-3):
                raise UserError(f"{what} {spec}: its rows are not unit vectors when read with dim {dim}; the dim "
                                "(or space) given for this cosine index is probably wrong")
        prov = parse_provenance(meta.get(PROVENANCE_KEY))
        self.info = StoreInfo(str(spec), "hnswlib", len(self.labels), dim, space, id_type="int",
                              encoder=(prov or meta).get("encoder"), provenance=prov,
                              layout={"hnswlib_M": int(self.index.M), "hnswlib_ef_construction":
                                      int(self.index.ef_construction)})

    def batches(self, size: int) -> Iterator[Batch]:
        for i in range(0, len(self.labels), size):
            labels = self.labels[i:i + size]
            vectors = np.ascontiguousarray(self.index.get_items(labels, return_type="numpy"), dtype=np.float32)
            yield Batch(labels.tolist(), vectors)


class Writer(SpilledIndexWriter):
    """Rows spilled to staged files as they come (what a resume continues from); the index is built from them
    at commit and saved to a staged file with its sidecar."""

    backend = "hnswlib"
    unique_ids = True

    def build_index(self, vectors, labels):
        import hnswlib

        rows = len(vectors)
        index = hnswlib.Index(space=self.metric, dim=self.dim)
        index.init_index(max_elements=max(rows, 1), M=self.layout.get("hnswlib_M", 16),
                         ef_construction=self.layout.get("hnswlib_ef_construction", 200), random_seed=0)
        index.add_items(np.asarray(vectors), labels if labels is not None else np.arange(rows), num_threads=1)
        self.check_count(index.get_current_count(), rows, "hnswlib")
        return (lambda path: index.save_index(str(path))), {"space": self.metric}
