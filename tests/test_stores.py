"""Vector stores through the real CLI, on small stores built by the real libraries (Chroma, Qdrant local,
LanceDB, faiss, hnswlib, Parquet): round trips of ids, vectors, documents and metadata, mixed backends,
`stores inspect`, and each bad input failing in one line with every file left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import (
    D_IN,
    D_OUT,
    DOCS,
    IDS,
    META,
    N,
    assert_clean_failure,
    cli,
    close_to,
    make_chroma,
    read_chroma,
    snapshot,
)
from vecbridge.stores import npy


# -- stores built with each library (Chroma's in helpers, for the server's tests too) ----------------------------
def make_qdrant(path, vectors, name="src"):
    from qdrant_client import QdrantClient, models

    c = QdrantClient(path=str(path))
    c.create_collection(name, vectors_config={"dense": models.VectorParams(size=vectors.shape[1],
                                                                           distance=models.Distance.COSINE)})
    c.upsert(name, points=[models.PointStruct(id=i, vector={"dense": vectors[i].tolist()},
                                              payload={"document": DOCS[i], **META[i]}) for i in range(N)])
    c.close()
    return f"qdrant:{path}#{name}/dense"


def read_qdrant(spec):
    from qdrant_client import QdrantClient

    path, rest = spec[len("qdrant:"):].split("#")
    name, _, vname = rest.partition("/")
    c = QdrantClient(path=path)
    try:
        pts, _ = c.scroll(name, limit=10 * N, with_vectors=True, with_payload=True)
    finally:
        c.close()
    pts = sorted(pts, key=lambda p: p.id)
    vecs = np.asarray([p.vector[vname] if vname else p.vector for p in pts])
    docs = [(p.payload or {}).get("document") for p in pts]
    return ([p.id for p in pts], vecs, docs if any(docs) else None,
            [{k: v for k, v in (p.payload or {}).items() if k != "document"} for p in pts])


def _arrow(vectors):
    return pa.table({"id": IDS, "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)),
                                                                            vectors.shape[1]),
                     "document": DOCS, "lang": [m["lang"] for m in META], "n": [m["n"] for m in META]})


def _from_arrow(table):
    table = table.sort_by("n")
    return (table["id"].to_pylist(), np.asarray(table["vector"].to_pylist()), table["document"].to_pylist(),
            table.select(["lang", "n"]).to_pylist())


def make_lancedb(path, vectors, name="src"):
    import lancedb

    lancedb.connect(str(path)).create_table(name, _arrow(vectors))
    return f"lancedb:{path}#{name}"


def read_lancedb(spec):
    import lancedb

    path, name = spec[len("lancedb:"):].split("#")
    return _from_arrow(lancedb.connect(path).open_table(name).to_arrow())


def make_parquet(path, vectors, name=None):
    pq.write_table(_arrow(vectors), path.with_suffix(".parquet"))
    return str(path.with_suffix(".parquet"))


def read_parquet(spec):
    return _from_arrow(pq.read_table(spec.removeprefix("parquet:")))


def make_faiss(path, vectors, name=None):
    import faiss

    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, np.arange(N, dtype=np.int64) * 7 + 3)
    faiss.write_index(index, str(path))
    return f"faiss:{path}"


def read_faiss(spec):
    import faiss

    raw = faiss.read_index(spec[len("faiss:"):])
    index = faiss.downcast_index(raw)
    ids = faiss.vector_to_array(index.id_map)
    inner = faiss.downcast_index(index.index)
    return ids.tolist(), inner.reconstruct_n(0, inner.ntotal), None, None


def make_hnswlib(path, vectors, name=None):
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=N, M=8, random_seed=0)
    index.add_items(vectors, np.arange(N) * 5)
    index.save_index(str(path))
    return f"hnswlib:{path}?dim={vectors.shape[1]}&space=cosine"


def read_hnswlib(spec):
    import hnswlib

    path, _, options = spec[len("hnswlib:"):].partition("?")
    meta = dict(o.split("=") for o in options.split("&")) if options else json.loads(Path(path + ".json").read_text())
    index = hnswlib.Index(space=meta["space"], dim=int(meta["dim"]))
    index.load_index(path)
    labels = sorted(index.get_ids_list())
    return labels, index.get_items(labels, return_type="numpy"), None, None


BACKENDS = {"chroma": (make_chroma, read_chroma, True), "qdrant": (make_qdrant, read_qdrant, True),
            "lancedb": (make_lancedb, read_lancedb, True), "parquet": (make_parquet, read_parquet, True),
            "faiss": (make_faiss, read_faiss, False), "hnswlib": (make_hnswlib, read_hnswlib, False)}
OUT_SPEC = {"chroma": "chroma:{d}/out#dst", "qdrant": "qdrant:{d}/out#dst/dense", "lancedb": "lancedb:{d}/out#dst",
            "parquet": "{d}/out.parquet", "faiss": "faiss:{d}/out.faiss", "hnswlib": "hnswlib:{d}/out.bin"}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_round_trip_through_translate(backend, stores_world, tmp_path):
    translator, q, vectors = stores_world
    make, read, rich = BACKENDS[backend]
    src = make(tmp_path / "src", vectors)
    before = snapshot(tmp_path)
    ids, _, _, _ = read(src)
    out = OUT_SPEC[backend].format(d=tmp_path)
    rc, stdout, err = cli("translate", "--translator", translator, "--input", src, "--output", out, "--chunk", 64,
                          "--json")
    assert rc == 0, err
    summary = json.loads(stdout)
    assert summary["rows"] == N and summary["dim_out"] == D_OUT and summary["exact"]
    assert {k: v for k, v in snapshot(tmp_path).items() if k in before} == before  # the source byte-identical
    got_ids, got_vecs, got_docs, got_meta = read(out)
    assert got_ids == ids
    assert close_to(got_vecs, vectors, q)
    if rich:
        assert got_docs == DOCS and got_meta == META
    # the source is content-identical and the output records where it came from
    src_ids, src_vecs, src_docs, _ = read(src)
    assert src_ids == ids and np.allclose(src_vecs, vectors, atol=1e-6)
    rc, stdout, err = cli("stores", "inspect", out, "--json")
    assert rc == 0, err
    info = json.loads(stdout)
    assert info["count"] == N and info["dim"] == D_OUT and info["encoder"] == "enc-b"
    assert info["provenance"]["translated_by"]["source"] == src
    assert info["documents"] == rich and info["metadata"] == rich


@pytest.mark.parametrize("pair", [("npy", "parquet"), ("chroma", "npy"), ("parquet", "chroma"),
                                  ("hnswlib", "qdrant"), ("qdrant", "lancedb"), ("qdrant", "faiss")])
def test_mixed_backends(pair, stores_world, tmp_path):
    translator, q, vectors = stores_world
    a, b = pair
    if a == "npy":
        npy.write_vectors(tmp_path / "src.npy", vectors, meta={"encoder": "enc-a"})
        src = str(tmp_path / "src.npy")
    else:
        src = BACKENDS[a][0](tmp_path / "src", vectors)
    out = str(tmp_path / "out.npy") if b == "npy" else OUT_SPEC[b].format(d=tmp_path)
    rc, stdout, err = cli("translate", "--translator", translator, "--input", src, "--output", out, "--json")
    assert rc == 0, err
    if b == "npy":
        assert close_to(np.load(out), vectors, q) and "ids and documents and metadata" in err
        return
    if a == "npy":  # row numbers are no ids: the Parquet output has the vector column only, in row order
        table = pq.read_table(out)
        assert table.column_names == ["vector"] and close_to(np.asarray(table["vector"].to_pylist()), vectors, q)
        return
    got_ids, got_vecs, got_docs, got_meta = BACKENDS[b][1](out)
    assert close_to(got_vecs, vectors, q)
    if b == "faiss":
        assert got_ids == list(range(N)) and "documents and metadata" in err
        return
    if a == "hnswlib":
        assert got_ids == [i * 5 for i in range(N)] and got_docs is None
        return
    assert got_docs == DOCS and got_meta == META
    assert [str(i) for i in got_ids] == [str(i) for i in (IDS if a != "qdrant" else range(N))]


# -- bad input: one line, non-zero exit, every file as it was -------------------------------------------
def _nan_parquet(d, vectors, int_ids=False):
    bad = vectors.copy()
    bad[250, 3] = np.nan  # in the last batch: earlier batches were already written to the temporary store
    table = _arrow(bad)
    if int_ids:
        table = table.set_column(0, "id", pa.array(range(N)))
    pq.write_table(table, d / "src.parquet")
    return str(d / "src.parquet")


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _junk(path):
    path.write_bytes(b"not an index at all" * 20)


BAD = {
    "unknown_scheme": (lambda d, v: "pinecone:index#c", "chroma:{d}/out#dst", "unknown store scheme 'pinecone'"),
    "server": (lambda d, v: "qdrant+http://localhost:6333#c", "{d}/out.parquet", "not supported yet"),
    "no_collection_part": (lambda d, v: (make_chroma(d / "ch", v), f"chroma:{d}/ch")[1], "{d}/out.parquet",
                           "the collection is missing"),
    "chroma_missing_collection": (lambda d, v: (make_chroma(d / "ch", v), f"chroma:{d}/ch#nope")[1],
                                  "{d}/out.parquet", "collection 'nope' does not exist"),
    "qdrant_missing_collection": (lambda d, v: (make_qdrant(d / "qd", v), f"qdrant:{d}/qd#nope")[1],
                                  "{d}/out.parquet", "collection 'nope' does not exist"),
    "lancedb_missing_table": (lambda d, v: (make_lancedb(d / "ld", v), f"lancedb:{d}/ld#nope")[1],
                              "{d}/out.parquet", "table 'nope' does not exist"),
    "missing_store_dir": (lambda d, v: f"chroma:{d}/nowhere#c", "{d}/out.parquet", "does not exist"),
    "faiss_truncated": (lambda d, v: (make_faiss(d / "x.faiss", v), _truncate(d / "x.faiss"), f"faiss:{d}/x.faiss")[2],
                        "{d}/out.parquet", "not a readable faiss index"),
    "faiss_junk": (lambda d, v: (_junk(d / "x.faiss"), f"faiss:{d}/x.faiss")[1], "{d}/out.parquet",
                   "not a readable faiss index"),
    "hnswlib_truncated": (lambda d, v: (make_hnswlib(d / "h.bin", v), _truncate(d / "h.bin"),
                                        f"hnswlib:{d}/h.bin?dim=16")[2], "{d}/out.parquet",
                          "not a readable hnswlib index"),
    "hnswlib_no_dim": (lambda d, v: (make_hnswlib(d / "h.bin", v), f"hnswlib:{d}/h.bin")[1], "{d}/out.parquet",
                       "does not record its dim"),
    "hnswlib_wrong_dim": (lambda d, v: (make_hnswlib(d / "h.bin", v), f"hnswlib:{d}/h.bin?dim=12")[1],
                          "{d}/out.parquet", "holds 16-dim vectors but dim 12 was given"),
    "dim_mismatch": (lambda d, v: make_lancedb(d / "ld", np.hstack([v, v]) / np.sqrt(2)), "{d}/out.parquet",
                     "has 32 dims but the translator's source space has 16"),
    "nan_to_chroma": (_nan_parquet, "chroma:{d}/out#dst", "contains NaN"),
    "nan_to_new_qdrant": (lambda d, v: _nan_parquet(d, v, int_ids=True), "qdrant:{d}/out#dst", "contains NaN"),
    "nan_to_lancedb": (_nan_parquet, "lancedb:{d}/out#dst", "contains NaN"),
    "string_ids_to_qdrant": (lambda d, v: make_chroma(d / "ch", v), "qdrant:{d}/ch2#dst",
                             "qdrant ids are non-negative integers or UUIDs"),
    "same_store": (lambda d, v: make_chroma(d / "ch", v), "chroma:{d}/ch#src", "the same store"),
    "existing_collection": (lambda d, v: make_chroma(d / "ch", v), "chroma:{d}/ch#src2", "already exists"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_cleanly(case, stores_world, tmp_path):
    translator, _, vectors = stores_world
    make_input, output, expected = BAD[case]
    src = make_input(tmp_path, vectors)
    if case == "existing_collection":
        make_chroma(tmp_path / "ch", vectors, name="src2")
    before = snapshot(tmp_path)
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output",
                     output.format(d=tmp_path), "--chunk", 100)
    assert_clean_failure(rc, err, expected)
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_only_vecbridge_collections(stores_world, tmp_path):
    translator, q, vectors = stores_world
    src = make_chroma(tmp_path / "ch", vectors)
    make_chroma(tmp_path / "ch", vectors, name="theirs")
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output",
                     f"chroma:{tmp_path}/ch#theirs", "--overwrite")
    assert_clean_failure(rc, err, "was not written by vecbridge")
    for _ in range(2):  # the second run replaces the first's collection
        rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output",
                         f"chroma:{tmp_path}/ch#dst", "--overwrite")
        assert rc == 0, err
    ids, got, docs, _ = read_chroma(f"chroma:{tmp_path}/ch#dst")
    assert close_to(got, vectors, q) and docs == DOCS
    import chromadb
    from chromadb.config import Settings

    names = {c.name for c in chromadb.PersistentClient(path=str(tmp_path / "ch"), settings=Settings(
        anonymized_telemetry=False)).list_collections()}
    assert names == {"src", "theirs", "dst"}


def test_lossy_faiss_is_said(stores_world, tmp_path):
    import faiss

    translator, q, vectors = stores_world
    index = faiss.index_factory(D_IN, "PQ4x4", faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.add(vectors)
    faiss.write_index(index, str(tmp_path / "pq.faiss"))
    rc, stdout, err = cli("stores", "inspect", f"faiss:{tmp_path}/pq.faiss", "--json")
    assert rc == 0 and json.loads(stdout)["exact"] is False
    rc, stdout, err = cli("translate", "--translator", translator, "--input", f"faiss:{tmp_path}/pq.faiss",
                          "--output", f"faiss:{tmp_path}/out.faiss", "--json")
    assert rc == 0, err
    assert "approximate" in err and json.loads(stdout)["exact"] is False
    out = faiss.downcast_index(raw := faiss.read_index(str(tmp_path / "out.faiss")))
    assert raw is not None and type(out).__name__ == "IndexPQ" and out.d == D_OUT and out.ntotal == N


# -- writers at disk speed: faiss's own layout, memory bounded by the batch --------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("ids", [True, False])
def test_flat_faiss_is_streamed_as_faiss_writes_it(metric, ids, tmp_path):
    import faiss

    from vecbridge import stores
    from vecbridge.stores.base import STORE_FORMAT, Batch

    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((1000, 24)).astype(np.float32)
    labels = np.arange(1000, dtype=np.int64) * 7 + 3
    source = stores.StoreInfo("src", "parquet", 1000, 24, metric, id_type="int" if ids else "row")
    with stores.open_writer(f"faiss:{tmp_path}/out.faiss", dim=24, count=1000, metric=metric, source=source,
                            provenance={"format": STORE_FORMAT}) as writer:
        for start in range(0, 1000, 300):
            writer.write(Batch(labels[start:start + 300].tolist(), vectors[start:start + 300]))
        writer.commit()
    index = faiss.index_factory(24, "IDMap2,Flat" if ids else "Flat",
                                faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)
    index.add_with_ids(vectors, labels) if ids else index.add(vectors)
    assert (tmp_path / "out.faiss").read_bytes() == faiss.serialize_index(index).tobytes()
    assert json.loads((tmp_path / "out.faiss.json").read_text())["factory"] == ("IDMap2,Flat" if ids else "Flat")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _peak_growth(spec: str, rows: int, dim: int, batch: int, queue) -> None:
    """In a fresh process: how far the peak RSS rose above the resident size while `rows` rows were written to
    `spec` in batches of `batch` and committed (the batches made as they go, so only the writer can hold more).
    The peak is reset first (/proc/self/clear_refs), so that of the imports does not count."""
    import faiss  # noqa: F401  (imported before the baseline: the libraries' own size is not the writer's)

    from vecbridge import stores
    from vecbridge.stores.base import STORE_FORMAT, Batch

    rng = np.random.default_rng(0)
    source = stores.StoreInfo("src", "npy", rows, dim, "cosine", id_type="int")
    with stores.open_writer(spec, dim=dim, count=rows, metric="cosine", source=source,
                            provenance={"format": STORE_FORMAT}) as writer:
        writer.write(Batch(list(range(batch)), rng.standard_normal((batch, dim), dtype=np.float32)))
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_kib("VmRSS")
        for start in range(batch, rows, batch):
            writer.write(Batch(list(range(start, start + batch)), rng.standard_normal((batch, dim), dtype=np.float32)))
        writer.commit()
    queue.put((_status_kib("VmHWM") - base) * 1024)


@pytest.mark.parametrize("out", ["{d}/out.parquet", "faiss:{d}/out.faiss"])
def test_file_store_writers_hold_no_more_than_a_few_batches(out, tmp_path):
    """240 MiB of rows written in 4 MiB batches raise the writer's peak memory by less than half of that: none
    of these writers gathers the store in memory (faiss Flat is streamed from its spill into faiss's layout, a
    single Parquet file copied from its parts a row group at a time; an index built in memory takes twice the
    rows)."""
    import multiprocessing

    rows, dim, batch = 122880, 512, 2048
    queue = multiprocessing.get_context("spawn").Queue()
    child = multiprocessing.get_context("spawn").Process(target=_peak_growth, args=(
        out.format(d=tmp_path), rows, dim, batch, queue))
    child.start()
    growth = queue.get(timeout=300)
    child.join(60)
    assert child.exitcode == 0
    assert growth < rows * dim * 4 / 2, f"peak memory rose {growth / 2**20:.0f} MiB writing 240 MiB of rows"
