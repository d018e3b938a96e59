"""Replace some rows' vectors of an existing store in place (a progressive migration's re-embedded rows), and its
provenance with them. Readers of the store see either the old rows or the new ones, never half a write: Chroma
updates the rows through its client (each call atomic); a `.npy` file is written row by row where it lies (each
row a whole write; a run killed midway leaves rows of either version, which the next run writes again); every other
backend is rewritten through its own writer into a temporary store swapped in on commit.

Rows are named by their position in the store's order (`rows`), which a translated store shares with its source,
and by their ids (`ids`) where the backend updates by id.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vecbridge import stores
from vecbridge.errors import UserError
from vecbridge.stores.base import PROVENANCE_KEY, Batch, first_line, provenance_json

BLOCK = 65536  # rows of `vectors` held in memory at a time


def replace_rows(spec, rows: np.ndarray, ids: list, vectors: np.ndarray, provenance: dict,
                 what: str = "`destination`") -> None:
    """Give the store `spec` the `vectors` at positions `rows` (ids `ids`) and the provenance `provenance`."""
    spec = stores.parse_spec(spec, what)
    rows = np.asarray(rows, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float32)
    if spec.scheme == "chroma":
        _chroma(spec, ids, vectors, provenance, what)
    elif spec.scheme == "npy":
        _npy(spec, rows, vectors, provenance)
    else:
        _rewrite(spec, rows, vectors, provenance, what)


def _chroma(spec, ids: list, vectors: np.ndarray, provenance: dict, what: str) -> None:
    from vecbridge.stores import chroma

    client = chroma.connect(spec, what)
    try:
        collection = client.get_collection(spec.name, embedding_function=None)
        size = client.get_max_batch_size()
        for start in range(0, len(ids), size):
            collection.update(ids=[str(i) for i in ids[start:start + size]],
                              embeddings=vectors[start:start + size])
        meta = dict(collection.metadata or {})
        meta.pop("hnsw:space", None)  # fixed at creation: chromadb refuses to modify it
        collection.modify(metadata={**meta, PROVENANCE_KEY: provenance_json(provenance)})
    except Exception as e:
        raise UserError(f"{what} {spec}: chromadb could not update its rows ({first_line(e)})") from None


def _npy(spec, rows: np.ndarray, vectors: np.ndarray, provenance: dict) -> None:
    from vecbridge import files

    with files.disk_errors(spec.path):
        array = np.load(spec.path, mmap_mode="r+")
        for start in range(0, len(rows), BLOCK):  # `vectors` may be a mapped file: a block in memory at a time
            array[rows[start:start + BLOCK]] = vectors[start:start + BLOCK]
        array.flush()
        del array
        sidecar = files.sidecar_path(spec.path)
        meta = files.read_json(sidecar, "the vectors' sidecar")
        meta.update({k: v for k, v in provenance.items() if k != "format"})
        meta[PROVENANCE_KEY] = provenance
        with files.staged() as stage:
            files.write_json_file(stage.file(sidecar), meta)


def _rewrite(spec, rows: np.ndarray, vectors: np.ndarray, provenance: dict, what: str) -> None:
    """Copy the store through its own writer with the new rows in place, swapped in on commit."""
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    with stores.open_reader(spec, what) as reader:
        info = reader.info
        # the store is its own source here: named apart so the writer's "never over an input" check lets it be
        source = dataclasses.replace(info, spec=f"{info.spec} (being rewritten)")
        with stores.open_writer(spec, what, dim=info.dim, count=info.count, metric=info.metric,
                                provenance=provenance, overwrite=True, source=source) as writer:
            at = 0
            for block in reader.batches(stores.batch_rows(spec)):
                lo, hi = np.searchsorted(sorted_rows, [at, at + len(block)])
                if hi > lo:  # this block's rows among those replaced (`vectors` read only for them)
                    block = Batch(block.ids, block.vectors.copy(), block.documents, block.metadata)
                    block.vectors[sorted_rows[lo:hi] - at] = vectors[order[lo:hi]]
                writer.write(block)
                at += len(block)
            if at != info.count:
                raise UserError(f"{what} {spec} changed while being rewritten; stop the writers and run again")
            writer.commit()
