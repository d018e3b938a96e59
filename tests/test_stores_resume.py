"""`vecbridge translate --resume` on real stores: a run killed with SIGKILL half-way is continued from its last
recorded batch and ends with the store one run writes; another translation's leftover is refused; without
--resume a dead run's leftover is removed."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import (
    assert_clean_failure,
    big_file_and_translator,
    cli,
    procrustes_translator,
    random_isometry,
    random_unit_rows,
    snapshot,
    vecbridge_process,
    wait_for,
)
from vecbridge import stores
from vecbridge.jobs.translate import translate

N, D_IN, D_OUT, CHUNK = 300, 16, 24, 64
OUT = {"npy": "{d}/out.npy", "parquet": "{d}/out.parquet", "parquet_dir": "parquet:{d}/outdir",
       "chroma": "chroma:{d}/ch#dst", "qdrant": "qdrant:{d}/qd#dst", "lancedb": "lancedb:{d}/ld#dst",
       "faiss": "faiss:{d}/out.faiss", "hnswlib": "hnswlib:{d}/out.bin"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A procrustes translator 16 -> 24 and a Parquet source with int ids, documents and metadata."""
    root = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, D_IN)).astype(np.float32)
    translator = procrustes_translator(root, x, x @ random_isometry(rng, D_OUT, D_IN, np.float32).T)
    v = random_unit_rows(rng, N, D_IN)
    pq.write_table(pa.table({"id": pa.array(np.arange(N) * 3, pa.int64()),
                             "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), D_IN),
                             "document": [f"text {i}" for i in range(N)], "n": list(range(N))}),
                   root / "src.parquet")
    return translator, str(root / "src.parquet")


def content(spec):
    """Every row of a store as read back: sorted ids, their vectors, documents and metadata."""
    with stores.open_reader(spec) as reader:
        rows = [(i, v.tobytes(), (b.documents or [None] * len(b))[k], json.dumps((b.metadata or [None] * len(b))[k]))
                for b in reader.batches(1000) for k, (i, v) in enumerate(zip(b.ids, b.vectors, strict=True))]
    return sorted(rows, key=lambda r: str(r[0]))


def _killed_run(translator, src, out, kill_at):
    """In a child process: translate with a record after every batch and SIGKILL on the `kill_at`-th record,
    after that batch was written and before it was recorded."""
    from vecbridge.stores import base, parquet, resume

    resume.CHECKPOINT_SECONDS = 0.0
    parquet.PART_ROWS = CHUNK
    real = base.StoreWriter.checkpoint
    calls = []

    def checkpoint(self, force=False):
        calls.append(1)
        if len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        real(self, force)

    base.StoreWriter.checkpoint = checkpoint
    translate(translator, src, out, batch=CHUNK, progress=False)
    os._exit(0)


def kill_half_way(translator, src, out, kill_at=3):
    # spawned, not forked: a fork copies the threads and locks of the store clients this process has opened
    child = multiprocessing.get_context("spawn").Process(target=_killed_run, args=(translator, src, out, kill_at))
    child.start()
    child.join(300)
    assert child.exitcode == -signal.SIGKILL


def leftovers(root):
    """Temporary files, folders, collections and tables under `root`; a Qdrant collection named like one is
    the published store (its name is an alias of it), so one under the store's directory is not counted."""
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*vecbridge-tmp*"))
    published = [f for f in found if f.startswith("qd/collection/")]
    return [f for f in found if f not in published[:1]]


@pytest.mark.parametrize("backend", list(OUT))
def test_resume_after_sigkill_gives_the_one_go_store(backend, world, tmp_path):
    translator, src = world
    out, one_go = OUT[backend].format(d=tmp_path / "a"), OUT[backend].format(d=tmp_path / "b")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    kill_half_way(translator, src, out)
    assert leftovers(tmp_path / "a"), "the killed run left no temporary store"
    rc, stdout, err = cli("translate", "--translator", translator, "--input", src, "--output", out,
                          "--chunk", CHUNK, "--resume", "--json")
    assert rc == 0, err
    assert json.loads(stdout)["resumed_rows"] == 2 * CHUNK  # the third batch was written but not recorded
    assert cli("translate", "--translator", translator, "--input", src, "--output", one_go, "--chunk", CHUNK)[0] == 0
    assert content(out) == content(one_go)
    assert leftovers(tmp_path / "a") == []


def test_another_translations_leftover_is_refused_and_removed_without_resume(world, tmp_path):
    translator, src = world
    out = f"lancedb:{tmp_path}/ld#dst"
    kill_half_way(translator, src, out)
    before = snapshot(tmp_path)
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output", out, "--chunk", 100,
                     "--resume")
    assert_clean_failure(rc, err, "made with another translator, input or options")
    assert snapshot(tmp_path) == before
    rc, stdout, err = cli("translate", "--translator", translator, "--input", src, "--output", out, "--json")
    assert rc == 0, err
    assert json.loads(stdout)["resumed_rows"] == 0 and leftovers(tmp_path) == []
    assert len(content(out)) == N


def test_resume_with_nothing_to_resume_starts_over(world, tmp_path):
    translator, src = world
    rc, stdout, err = cli("translate", "--translator", translator, "--input", src, "--output",
                          tmp_path / "out.parquet", "--resume", "--json")
    assert rc == 0, err
    assert json.loads(stdout)["resumed_rows"] == 0 and len(content(str(tmp_path / "out.parquet"))) == N


def _recorded_rows(record):
    try:
        return json.loads(record.read_text())["rows"]
    except (OSError, ValueError):  # replaced meanwhile
        return 0


def test_sigkill_of_the_cli_mid_run_then_resume(tmp_path):
    """A real `python -m vecbridge translate` process, killed once its first batches are recorded."""
    big, tr = big_file_and_translator(tmp_path, np.random.default_rng(1), 300_000)
    argv = ["translate", "--translator", str(tr), "--input", str(big), "--chunk", "2000"]
    out = f"parquet:{tmp_path}/out"
    proc = vecbridge_process(*argv, "--output", out)
    wait_for(lambda: any(_recorded_rows(p) for p in tmp_path.glob(".out.vecbridge-tmp-*.resume.json")), proc)
    proc.kill()
    proc.wait()
    if (tmp_path / "out").exists():
        pytest.skip("the run finished before it could be killed")
    rc, stdout, err = cli(*argv, "--output", out, "--resume", "--json")
    assert rc == 0, err
    assert json.loads(stdout)["resumed_rows"] > 0
    assert cli(*argv, "--output", f"parquet:{tmp_path}/one")[0] == 0
    resumed, one_go = pq.read_table(tmp_path / "out"), pq.read_table(tmp_path / "one")
    assert resumed.num_rows == 300_000 and resumed.equals(one_go)
    assert not [p for p in tmp_path.iterdir() if "vecbridge-tmp" in p.name]


def _sparse_chroma(path, vectors):
    """A Chroma collection (made with chromadb) whose rows have different metadata keys, in varying order: every
    row `n`; rows before 100 and from 256 `tag` (none in the batches a resume after two batches starts with); every
    third row `score`; every fifth a list `l`; none at all in rows 192 to 255 (a whole batch)."""
    import chromadb
    from chromadb.config import Settings

    meta = []
    for i in range(N):
        m = {"n": i} | ({"tag": f"t{i % 5}"} if i < 100 or i >= 256 else {}) | ({"score": i / 10} if i % 3 == 0
                                                                                  else {})
        m |= {"l": [i, i + 1]} if i % 5 == 0 else {}
        meta.append(None if 192 <= i < 256 else dict(reversed(m.items())) if i % 2 else m)
    client = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
    col = client.create_collection("src", embedding_function=None, metadata={"hnsw:space": "cosine"})
    col.add(ids=[f"doc-{i}" for i in range(N)], embeddings=vectors, documents=[f"text {i}" for i in range(N)],
            metadatas=meta)
    return f"chroma:{path}#src"


@pytest.mark.parametrize("out", ["{d}/out.parquet", "parquet:{d}/outdir", "lancedb:{d}/ld#dst"])
def test_a_resumed_store_from_sparse_chroma_metadata_is_the_one_go_store(world, tmp_path, monkeypatch, out):
    """Chroma has no metadata schema: the resumed run takes the columns of what was already written (a null
    where a row lacks a key, lists as first built), not the keys of its own first batch."""
    from vecbridge.stores import parquet

    translator, _ = world
    src = _sparse_chroma(tmp_path / "db", random_unit_rows(np.random.default_rng(3), N, D_IN))
    resumed, one_go = out.format(d=tmp_path / "a"), out.format(d=tmp_path / "b")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    kill_half_way(translator, src, resumed)
    monkeypatch.setattr(parquet, "PART_ROWS", CHUNK)  # the parts as the killed run cut them
    rc, stdout, err = cli("translate", "--translator", translator, "--input", src, "--output", resumed,
                          "--chunk", CHUNK, "--resume", "--json")
    assert rc == 0, err
    assert json.loads(stdout)["resumed_rows"] == 2 * CHUNK
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output", one_go, "--chunk", CHUNK)
    assert rc == 0, err
    if out.startswith("lancedb"):
        import lancedb

        table, other = (lancedb.connect(tmp_path / d / "ld").open_table("dst").to_arrow() for d in "ab")
        assert content(resumed) == content(one_go) and table.schema.equals(other.schema, check_metadata=True)
    else:
        assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")  # byte for byte
        table = pq.read_table(tmp_path / "a" / ("out.parquet" if out.endswith(".parquet") else "outdir"))
    assert table.column_names == ["id", "vector", "document", "l", "n", "score", "tag"]
    tags = table.column("tag").to_pylist()
    assert tags[150] is None and tags[99] == "t4" and tags[260] == "t0"
    assert table.column("l").to_pylist()[:6] == [[0, 1], None, None, None, None, [5, 6]]
    assert table.column("n").to_pylist()[190:194] + table.column("n").to_pylist()[255:257] == [190, 191, None, None,
                                                                                                 None, 256]
