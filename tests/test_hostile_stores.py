"""Stores under hostile input through the real CLI (issue 35): no row lost in silence, no wrong output in silence,
`--overwrite` and resume records that touch nothing but vecbridge's own files, nothing left behind by a failed
write, and a Chroma source whose data stays as it was. Each failure is one line, a non-zero exit, and the tree
as it was."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import (
    D_IN,
    N,
    assert_clean_failure,
    cli,
    make_chroma,
    read_chroma,
    snapshot,
    vecbridge_process,
)
from vecbridge import stores


def parquet_source(path, vectors, ids):
    """A Parquet file a user made (no vecbridge provenance): `ids` and `vectors`."""
    pq.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(
        pa.array(np.asarray(vectors, np.float32).reshape(-1)), vectors.shape[1])}), path)
    return str(path)


def hnswlib_file(path, vectors, space="l2"):
    import hnswlib

    index = hnswlib.Index(space=space, dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=8, random_seed=0)
    index.add_items(vectors, np.arange(len(vectors)))
    index.save_index(str(path))
    return path


# -- rows lost in silence: one id twice, in different batches ---------------------------------------------------
@pytest.mark.parametrize("ids", ["int", "str"])
@pytest.mark.parametrize("dest", ["chroma:{d}/out#dst", "qdrant:{d}/out#dst", "hnswlib:{d}/out.bin"])
def test_an_id_repeated_in_another_batch_is_refused(stores_world, tmp_path, dest, ids):
    translator, _, vectors = stores_world
    if ids == "str" and not dest.startswith("chroma"):
        pytest.skip("qdrant and hnswlib refuse string ids anyway")
    keys = list(range(N)) if ids == "int" else [f"doc-{i}" for i in range(N)]
    keys[250] = keys[10]  # batches of 64 rows: the repeat is four batches after the first
    src = parquet_source(tmp_path / "src.parquet", vectors, keys)
    before = snapshot(tmp_path)
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output", dest.format(d=tmp_path),
                     "--chunk", 64)
    assert_clean_failure(rc, err, f"the source has the id {keys[10]!r} more than once (again at row 250)")
    assert snapshot(tmp_path) == before


def test_unique_ids_are_checked_in_one_pass_over_many_batches():
    from vecbridge.stores.base import UniqueIds

    rng = np.random.default_rng(0)
    keys = rng.permutation(200_000).tolist()
    seen = UniqueIds()
    for i in range(0, len(keys), 1000):
        assert seen.add(keys[i:i + 1000]) is None
    assert len(seen.runs) <= 8 and sum(map(len, seen.runs)) == len(keys)
    assert seen.add([200_001, keys[123_456], 200_002]) == 1
    assert seen.add(["a", "b", "a"]) == 2


# -- wrong output in silence: an hnswlib file read with another dim ------------------------------------------------
@pytest.mark.parametrize("given", [8, 12, 32])
def test_hnswlib_read_with_a_dim_not_the_files_is_refused(stores_world, tmp_path, given):
    translator, _, vectors = stores_world
    hnswlib_file(tmp_path / "h.bin", vectors * 3.0)  # an l2 index of vectors that are not unit length
    spec = f"hnswlib:{tmp_path}/h.bin?dim={given}&space=l2"
    before = snapshot(tmp_path)
    for argv in (["stores", "inspect", spec], ["translate", "--translator", translator, "--input", spec, "--output",
                                               tmp_path / "out.npy"]):
        rc, out, err = cli(*argv)
        assert_clean_failure(rc, err, f"the index holds {D_IN}-dim vectors but dim {given} was given")
        assert snapshot(tmp_path) == before
    rc, out, err = cli("stores", "inspect", f"hnswlib:{tmp_path}/h.bin?dim={D_IN}&space=l2", "--json")
    assert rc == 0 and f'"dim": {D_IN}' in out, err


# -- a resume record names only vecbridge's own temporary files ----------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _plant_record(translator, src, out, batch, state):
    """A record of a dead run of this very translation (its fingerprint), whose state is `state`."""
    from align import Translator
    from vecbridge import stores
    from vecbridge.jobs.translate import run_fingerprint

    in_spec, out_spec = stores.parse_spec(src), stores.parse_spec(out)
    with stores.open_reader(in_spec) as reader:
        fingerprint = run_fingerprint(Translator.load(translator), str(translator), in_spec, reader.info, out_spec,
                                      {"reverse": False, "search": False, "batch": batch})
    dest = out_spec.path.name + (f"#{out_spec.name}" if out_spec.name else "")
    record = out_spec.path.parent / f".{dest}.vecbridge-tmp-{_dead_pid()}-0123abcd.resume.json"
    record.write_text(json.dumps({"format": "vecbridge-resume", "fingerprint": fingerprint, "spec": out,
                                  "rows": 64, "state": state}))
    return record


@pytest.mark.parametrize("out, key", [("{d}/out.npy", "file"), ("parquet:{d}/shards", "parts"),
                                      ("hnswlib:{d}/out.bin", "vectors")])
@pytest.mark.parametrize("target", ["mine/precious.npy", "precious.npy", "{d}/.out.npy.vecbridge-tmp-1-0123abcd/../x"])
def test_a_resume_record_naming_a_file_not_vecbridges_is_refused(stores_world, tmp_path, out, key, target):
    translator, _, vectors = stores_world
    src = parquet_source(tmp_path / "src.parquet", vectors, list(range(N)))
    (tmp_path / "mine").mkdir()
    np.save(tmp_path / "mine" / "precious.npy", vectors)
    np.save(tmp_path / "precious.npy", vectors)
    out = out.format(d=tmp_path)
    record = _plant_record(translator, src, out, 64, {key: str(tmp_path / target.format(d=tmp_path)), "part": 1})
    before = snapshot(tmp_path)
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output", out, "--chunk", 64,
                     "--resume")
    assert_clean_failure(rc, err, "not one of vecbridge's temporary files beside the destination")
    assert snapshot(tmp_path) == before
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output", out, "--chunk", 64)
    assert rc == 0, err
    assert not record.exists()
    assert {k: v for k, v in snapshot(tmp_path).items() if "precious" in k} == \
        {k: v for k, v in before.items() if "precious" in k}


def test_a_resume_record_naming_a_collection_not_vecbridges_is_refused(stores_world, tmp_path):
    translator, _, vectors = stores_world
    src = parquet_source(tmp_path / "src.parquet", vectors, [f"doc-{i}" for i in range(N)])
    theirs = make_chroma(tmp_path / "db", vectors, name="theirs")
    before = read_chroma(theirs)
    out = f"chroma:{tmp_path}/db#dst"
    _plant_record(translator, src, out, 64, {"root": None, "collection": "theirs"})
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output", out, "--chunk", 64,
                     "--resume")
    assert_clean_failure(rc, err, "names 'theirs', which is not one of vecbridge's temporary files")
    after = read_chroma(theirs)
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


# -- `--overwrite` replaces vecbridge's own store, with nothing foreign inside ---------------------------------------
def _artifact_folder(kind, d):
    """The folder that replacing the store `kind` at `d` deletes."""
    if kind == "parquet":
        return d / "shards"
    if kind == "lancedb":
        return d / "ld" / "dst.lance"
    if kind == "qdrant":
        return next((d / "qd" / "collection").iterdir())
    from vecbridge import stores
    from vecbridge.stores.chroma import segment_dirs

    reader = stores.open_reader(f"chroma:{d}/ch#dst")
    try:
        return segment_dirs(d / "ch", reader.collection.id)[0]
    finally:
        reader.close()


@pytest.mark.parametrize("inside", [".notes", "_notes.txt", "sub/notes.txt"])
@pytest.mark.parametrize("kind, out", [("parquet", "parquet:{d}/shards"), ("lancedb", "lancedb:{d}/ld#dst"),
                                       ("chroma", "chroma:{d}/ch#dst"), ("qdrant", "qdrant:{d}/qd#dst")])
def test_overwrite_keeps_a_store_holding_a_users_file(stores_world, tmp_path, kind, out, inside):
    translator, _, vectors = stores_world
    src = parquet_source(tmp_path / "src.parquet", vectors, list(range(N)))
    out = out.format(d=tmp_path)
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output", out)
    assert rc == 0, err
    mine = _artifact_folder(kind, tmp_path) / inside
    mine.parent.mkdir(exist_ok=True)
    mine.write_text("my notes\n")
    before = snapshot(tmp_path)
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output", out, "--overwrite")
    first = _artifact_folder(kind, tmp_path) / inside.split("/")[0]
    assert_clean_failure(rc, err, f"holds {first}, which vecbridge did not write")
    assert snapshot(tmp_path) == before
    mine.unlink()
    if first != mine:
        first.rmdir()
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output", out, "--overwrite")
    assert rc == 0, err


@pytest.mark.parametrize("setup", ["notes", "folder", "foreign_manifest"])
def test_embed_keeps_a_work_directory_holding_a_users_file(tmp_path, setup):
    (tmp_path / "a.txt").write_text("".join(f"line {i} about rivers\n" for i in range(12)))
    wd = tmp_path / ".out.npy.partial"
    wd.mkdir()
    (wd / "manifest.json").write_text(json.dumps({"encoder": "x", "chunk_size": 4, "count": 12,
                                                  "input_sha256": "0" * 64}))
    if setup == "notes":
        (wd / "notes.txt").write_text("mine\n")
    elif setup == "folder":
        (wd / "drafts").mkdir()
    else:
        (wd / "manifest.json").write_text('{"my": "settings"}')
    before = snapshot(tmp_path)
    rc, _, err = cli("embed", "--encoder", "minilm-l6", "--input", tmp_path / "a.txt", "--output",
                     tmp_path / "out.npy", "--chunk-size", 4)
    assert_clean_failure(rc, err, "which vecbridge did not write")
    assert snapshot(tmp_path) == before


def test_embed_discards_its_own_stale_work(tmp_path):
    (tmp_path / "a.txt").write_text("".join(f"line {i} about rivers\n" for i in range(12)))
    wd = tmp_path / ".out.npy.partial"
    wd.mkdir()
    (wd / "manifest.json").write_text(json.dumps({"encoder": "x", "chunk_size": 4, "count": 12,
                                                  "input_sha256": "0" * 64}))
    np.save(wd / "chunk-000000.npy", np.zeros((4, 384), np.float32))
    rc, _, err = cli("embed", "--encoder", "minilm-l6", "--input", tmp_path / "a.txt", "--output",
                     tmp_path / "out.npy", "--chunk-size", 4)
    assert rc == 0, err
    assert not wd.exists() and np.load(tmp_path / "out.npy").shape == (12, 384)


# -- nothing left behind by a refused write ---------------------------------------------------------------------
def test_a_refused_write_into_an_existing_chroma_database_leaves_no_segment_folder(stores_world, tmp_path):
    import chromadb
    from chromadb.config import Settings

    translator, _, vectors = stores_world
    theirs = make_chroma(tmp_path / "db", vectors, name="theirs")
    data = read_chroma(theirs)
    keys = [f"doc-{i}" for i in range(N)]
    keys[250] = keys[10]
    src = parquet_source(tmp_path / "src.parquet", vectors, keys)
    entries = sorted(p.name for p in (tmp_path / "db").iterdir())
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output",
                     f"chroma:{tmp_path}/db#dst", "--chunk", 64)
    assert_clean_failure(rc, err, "more than once")
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == entries
    client = chromadb.PersistentClient(path=str(tmp_path / "db"), settings=Settings(anonymized_telemetry=False))
    assert [c.name for c in client.list_collections()] == ["theirs"]
    after = read_chroma(theirs)
    assert data[0] == after[0] and np.array_equal(data[1], after[1]) and data[2:] == after[2:]


# -- a Chroma source: chromadb writes when it opens a database, the data never changes ------------------------------
DUMP = """
import json, sys
import chromadb
from chromadb.config import Settings
c = chromadb.PersistentClient(path=sys.argv[1], settings=Settings(anonymized_telemetry=False))
out = {}
for col in sorted(c.list_collections(), key=lambda x: x.name):
    got = col.get(include=["embeddings", "documents", "metadatas"])
    rows = sorted(zip(got["ids"], [list(map(float, e)) for e in got["embeddings"]], got["documents"],
                      got["metadatas"]))
    out[col.name] = {"metadata": col.metadata, "rows": rows}
print(json.dumps(out, sort_keys=True))
"""


def _chroma_data(path) -> str:
    """Every collection of the database at `path` with its metadata and rows, read by chromadb in a process of its
    own (a fresh client, as a user's next program opens it)."""
    return subprocess.run([sys.executable, "-c", DUMP, str(path)], check=True, capture_output=True,
                          text=True).stdout


def test_reading_a_chroma_source_changes_none_of_its_data(stores_world, tmp_path):
    translator, _, vectors = stores_world
    src = make_chroma(tmp_path / "db", vectors)
    make_chroma(tmp_path / "db", vectors[::-1].copy(), name="other")
    data, entries = _chroma_data(tmp_path / "db"), sorted(p.name for p in (tmp_path / "db").rglob("*"))
    for argv in (["stores", "inspect", src], ["translate", "--translator", translator, "--input", src, "--output",
                                               tmp_path / "out.parquet"]):
        proc = vecbridge_process(*argv)
        assert proc.wait(120) == 0
        assert _chroma_data(tmp_path / "db") == data
        assert sorted(p.name for p in (tmp_path / "db").rglob("*")) == entries
    assert pq.read_table(tmp_path / "out.parquet").num_rows == N


def _chroma_with_metadata(path, vectors, metadatas):
    import chromadb
    from chromadb.config import Settings

    c = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
    col = c.create_collection("src", embedding_function=None)
    col.add(ids=[f"r{i}" for i in range(len(vectors))], embeddings=vectors, metadatas=metadatas)
    return f"chroma:{path}#src"


@pytest.mark.parametrize("out", ["{d}/out.parquet", "lancedb:{d}/ld#out"])
def test_sparse_chroma_metadata_keeps_every_key_or_is_refused(stores_world, tmp_path, out):
    """Chroma rows need not share keys: every key the first batch holds becomes a column (null where a row lacks
    it), whatever order the database returns a row's keys in; a key first seen in a later batch is refused in one
    line, never dropped."""
    tr, _, v = stores_world
    meta = [{"a": i} if i % 3 == 0 else {"b": f"x{i}"} if i % 3 == 1 else {"b": f"y{i}", "a": i} for i in range(8)]
    src = _chroma_with_metadata(tmp_path / "db", v[:8], meta)
    dest = out.format(d=tmp_path)
    rc, _, err = cli("translate", "--translator", tr, "--input", src, "--output", dest, "--chunk", 4)
    assert rc == 0, err
    with stores.open_reader(dest) as reader:
        got = {i: m for b in reader.batches(100) for i, m in zip(b.ids, b.metadata, strict=True)}
    assert got == {f"r{i}": {"a": m.get("a"), "b": m.get("b")} for i, m in enumerate(meta)}
    late = meta[:4] + [{"a": 4, "c": True}] + meta[5:]
    src = _chroma_with_metadata(tmp_path / "db2", v[:8], late)
    rc, _, err = cli("translate", "--translator", tr, "--input", src, "--output", tmp_path / "late.parquet",
                     "--chunk", 4)
    assert_clean_failure(rc, err, "metadata key 'c' is not among the keys of the first batch (a, b)")
    assert not (tmp_path / "late.parquet").exists()
