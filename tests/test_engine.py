"""`vecbridge translate --engine ray` on a real local Ray cluster (started once for the test session, shut down
after): it writes the store the local engine writes, bit for bit (.npy, Parquet with ids, documents and
metadata, into LanceDB); a worker killed mid-job loses no row; a killed run resumes on it; the readers' row
ranges are their batches' rows; errors a user can act on come in one line."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from tests.helpers import assert_clean_failure, cli, procrustes_translator, random_isometry, random_unit_rows
from vecbridge import stores
from vecbridge.engine import Flow, run
from vecbridge.engine.local import cut
from vecbridge.engine.ray_data import check_reachable, pool_size
from vecbridge.jobs.translate import TranslateBatch
from vecbridge.stores import npy, parquet
from vecbridge.stores.base import Batch

N, D_IN, D_OUT, CHUNK = 600, 16, 24, 64
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")  # Ray Data's own, about its own options


@pytest.fixture(scope="session")
def cluster():
    """One local Ray cluster of 2 CPUs for the session: jobs in this process run on it instead of starting one."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A procrustes translator 16 -> 24, a .npy source and a Parquet source of two shards with row groups of 77
    rows (not a multiple of the batch) holding string ids, documents and metadata with gaps."""
    root = tmp_path_factory.mktemp("engine")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, D_IN)).astype(np.float32)
    translator = procrustes_translator(root, x, x @ random_isometry(rng, D_OUT, D_IN, np.float32).T)
    v = random_unit_rows(rng, N, D_IN)
    npy.write_vectors(root / "src.npy", v, meta={"encoder": "enc-a"})
    (root / "shards").mkdir()
    for k, (a, b) in enumerate([(0, 250), (250, N)]):
        pq.write_table(pa.table({"id": [f"doc-{i}" for i in range(a, b)],
                                 "vector": pa.FixedSizeListArray.from_arrays(pa.array(v[a:b].reshape(-1)), D_IN),
                                 "document": [f"text {i}" for i in range(a, b)],
                                 "n": [i if i % 7 else None for i in range(a, b)],
                                 "tag": [f"t{i % 3}" for i in range(a, b)]}),
                       root / "shards" / f"part-{k}.parquet", row_group_size=77)
    return translator, {"npy": str(root / "src.npy"), "parquet": str(root / "shards")}


def rows(spec) -> list[tuple]:
    """Every row of a store in its order: id, vector bytes, document, metadata."""
    with stores.open_reader(spec) as reader:
        return [(i, v.tobytes(), None if b.documents is None else b.documents[k],
                 json.dumps(None if b.metadata is None else b.metadata[k], sort_keys=True))
                for b in reader.batches(1000) for k, (i, v) in enumerate(zip(b.ids, b.vectors, strict=True))]


def translate_cli(translator, src, out, *flags):
    rc, _, err = cli("translate", "--translator", translator, "--input", src, "--output", out, "--chunk", CHUNK, *flags)
    assert rc == 0, err


@pytest.mark.parametrize("source,out", [("npy", "{d}/out.npy"), ("parquet", "{d}/out.parquet"),
                                        ("npy", "parquet:{d}/shards"), ("parquet", "lancedb:{d}/ld#out")])
def test_ray_writes_the_local_store_bit_for_bit(cluster, world, tmp_path, monkeypatch, source, out):
    """Parquet stores: the workers write the part files themselves (here 128 rows each, 5 parts), the same bytes
    as this process writes them on the local engine."""
    monkeypatch.setattr(parquet, "PART_ROWS", 2 * CHUNK)
    translator, src = world
    local, on_ray = out.format(d=tmp_path / "local"), out.format(d=tmp_path / "ray")
    for d in ("local", "ray"):
        (tmp_path / d).mkdir()
    translate_cli(translator, src[source], local)
    translate_cli(translator, src[source], on_ray, "--engine", "ray")
    expected = rows(local)
    assert len(expected) == N and rows(on_ray) == expected
    if out.endswith(".npy"):
        for name in ("out.npy", "out.npy.json"):
            assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    if out.endswith(".parquet"):
        assert pq.read_table(on_ray).equals(pq.read_table(local), check_metadata=True)
    if out.endswith("shards"):
        parts = sorted(p.name for p in (tmp_path / "local" / "shards").iterdir())
        assert parts == [f"part-{k:05d}.parquet" for k in range(5)]
        assert sorted(p.name for p in (tmp_path / "ray" / "shards").iterdir()) == parts
        for name in parts:
            assert (tmp_path / "ray" / "shards" / name).read_bytes() == \
                (tmp_path / "local" / "shards" / name).read_bytes()


class DiesOnce:
    """The translation step, except that a Ray worker running it kills its own process (SIGKILL) at the batch
    from row `at`, once: the marker file remembers it."""

    def __init__(self, step, at: int, marker: str, driver: int):
        self.step, self.at, self.marker, self.driver = step, at, marker, driver

    def __call__(self, vectors, first):
        if first == self.at and os.getpid() != self.driver and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.step(vectors, first)


class Collected:
    """A destination that keeps the batches written to it (what `run` writes, whatever the store)."""

    def __init__(self):
        self.batches, self.checkpoints = [], 0

    def write(self, batch):
        self.batches.append(batch)

    def checkpoint(self):
        self.checkpoints += 1

    workers_write = False  # this process writes every batch


def run_flow(translator, src, engine, step=None, skip=0) -> list[tuple]:
    writer = Collected()
    with stores.open_reader(src) as reader:
        step = step or TranslateBatch(None, str(translator), False, False, src)
        assert run(Flow(stores.parse_spec(src), "`input`", reader, writer, step, CHUNK, skip=skip), engine,
                   progress=False) == N
    return [(i, v.tobytes(), d, json.dumps(m, sort_keys=True)) for b in writer.batches
            for i, v, d, m in zip(b.ids, b.vectors, b.documents, b.metadata, strict=True)]


def test_a_worker_killed_mid_job_loses_no_row(cluster, world, tmp_path):
    """A worker dies at the batch from row 192 (Ray restarts it and retries the batch); the run starts at row
    100, inside a batch, as a resumed run does: every row from 100 on is written once, as the local engine maps
    it in one run from row 0."""
    translator, src = world
    marker = tmp_path / "killed"
    step = DiesOnce(TranslateBatch(None, str(translator), False, False, src["parquet"]), 3 * CHUNK, str(marker),
                    os.getpid())
    on_ray = run_flow(translator, src["parquet"], "ray", step, skip=100)
    assert marker.exists(), "no worker was killed"
    whole = run_flow(translator, src["parquet"], "local")
    assert [r[0] for r in whole] == [f"doc-{i}" for i in range(N)]
    assert on_ray == whole[100:]


class DiesAlways:
    """A step whose worker dies at the batch from row `at` every time it is tried (out of memory, say)."""

    def __init__(self, step, at, driver):
        self.step, self.at, self.driver = step, at, driver

    def __call__(self, vectors, first):
        if first == self.at and os.getpid() != self.driver:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.step(vectors, first)


def test_a_batch_that_always_kills_its_worker_stops_the_job_in_one_line(cluster, world):
    """Ray Data retries a batch forever by default; the engine gives up after RETRIES restarts, in one line."""
    from vecbridge.errors import UserError

    translator, src = world
    step = DiesAlways(TranslateBatch(None, str(translator), False, False, src["npy"]), 2 * CHUNK, os.getpid())
    with pytest.raises(UserError, match=r"a batch killed its Ray worker 4 times .* smaller batch$") as e:
        run_flow(translator, src["npy"], "ray", step)
    assert "\n" not in str(e.value)


def _killed_run(translator, src, out):
    """In a child process: translate locally, recording after every batch, and SIGKILL at the fourth record."""
    from vecbridge.jobs.translate import translate
    from vecbridge.stores import base, resume

    resume.CHECKPOINT_SECONDS = 0.0
    real, calls = base.StoreWriter.checkpoint, []

    def checkpoint(self, force=False):
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        real(self, force)

    base.StoreWriter.checkpoint = checkpoint
    translate(translator, src, out, batch=CHUNK, progress=False)
    os._exit(0)


def test_a_killed_local_run_resumes_on_ray(cluster, world, tmp_path):
    translator, src = world
    out = str(tmp_path / "out.npy")
    child = multiprocessing.get_context("spawn").Process(target=_killed_run, args=(translator, src["npy"], out))
    child.start()
    child.join(300)
    assert child.exitcode == -signal.SIGKILL
    rc, stdout, err = cli("translate", "--translator", translator, "--input", src["npy"], "--output", out,
                          "--chunk", CHUNK, "--resume", "--engine", "ray", "--json")
    assert rc == 0, err
    assert json.loads(stdout)["resumed_rows"] == 3 * CHUNK
    translate_cli(translator, src["npy"], tmp_path / "one-go.npy")
    assert (tmp_path / "out.npy").read_bytes() == (tmp_path / "one-go.npy").read_bytes()


def _killed_ray_run(translator, src, out, address):
    """In a child process joined to the tests' cluster: translate on Ray into a Parquet directory of 128-row parts
    written by the workers, recording after every part, and SIGKILL when the third part is adopted."""
    from vecbridge.jobs.translate import translate
    from vecbridge.stores import resume

    resume.CHECKPOINT_SECONDS, parquet.PART_ROWS = 0.0, 2 * CHUNK
    real = parquet.Writer.adopt_part

    def adopt_part(self, k, rows):
        if k == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        real(self, k, rows)

    parquet.Writer.adopt_part = adopt_part
    translate(translator, src, out, batch=CHUNK, engine="ray", address=address, progress=False)
    os._exit(0)


def test_a_killed_ray_run_resumes_from_its_committed_parts(cluster, world, tmp_path, monkeypatch):
    """The driver dies with two parts recorded (and maybe more written whole by the workers): the resumed run
    keeps every whole part, writes the others (the last one at least) with the columns read back from the first
    part, and the store is the one a single local run writes, byte for byte."""
    monkeypatch.setattr(parquet, "PART_ROWS", 2 * CHUNK)
    translator, src = world
    out = f"parquet:{tmp_path}/shards"
    address = ray.get_runtime_context().gcs_address
    child = multiprocessing.get_context("spawn").Process(target=_killed_ray_run,
                                                         args=(translator, src["npy"], out, address))
    child.start()
    child.join(300)
    assert child.exitcode == -signal.SIGKILL
    staged = [p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith(".shards")]
    assert len(staged) == 1 and not (tmp_path / "shards").exists()
    whole = sorted(p.name for p in staged[0].iterdir() if p.name.startswith("part-"))
    assert whole[:2] == ["part-00000.parquet", "part-00001.parquet"]
    (staged[0] / "part-00004.parquet").unlink(missing_ok=True)  # one part at least is the resumed run's own
    rc, stdout, err = cli("translate", "--translator", translator, "--input", src["npy"], "--output", out,
                          "--chunk", CHUNK, "--resume", "--engine", "ray", "--json")
    assert rc == 0, err
    assert json.loads(stdout)["resumed_rows"] == 4 * CHUNK
    translate_cli(translator, src["npy"], f"parquet:{tmp_path}/one-go")
    names = sorted(p.name for p in (tmp_path / "one-go").iterdir())
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == names and len(names) == 5
    for name in names:
        assert (tmp_path / "shards" / name).read_bytes() == (tmp_path / "one-go" / name).read_bytes()


def test_a_workers_error_is_one_line(cluster, world, tmp_path):
    translator, _ = world
    v = random_unit_rows(1, N, D_IN)
    v[400, 3] = np.nan
    np.save(tmp_path / "bad.npy", v)  # vecbridge's own writer refuses NaN: a foreign file
    rc, _, err = cli("translate", "--translator", translator, "--input", tmp_path / "bad.npy", "--output",
                     tmp_path / "out.npy", "--chunk", CHUNK, "--engine", "ray")
    assert_clean_failure(rc, err, "--input")
    assert "batch from row 384" in err and not (tmp_path / "out.npy").exists()


def test_ray_embeds_and_migrates_progressively_as_local_does(cluster, minilm_store, tmp_path, monkeypatch, minilm):
    """`embed --engine ray` and `migrate --progressive --engine ray`: texts embedded, a store translated and its
    documents re-embedded by minilm-l6 on Ray actors (each loads the model once) give the rows the local engine
    writes, byte for byte."""
    from vecbridge import jobs
    from vecbridge.jobs.progressive import Progressive

    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    d, src = minilm_store
    with stores.open_reader(src) as reader:
        vectors, _, docs = stores.read_all(reader, "src")
    (tmp_path / "docs.txt").write_text("".join(doc + "\n" for doc in docs))
    for engine in ("local", "ray"):  # `vecbridge embed`: chunks of 64 texts embedded here or on Ray actors
        rc, _, err = cli("embed", "--encoder", "minilm-l6", "--input", tmp_path / "docs.txt", "--output",
                         f"{tmp_path}/{engine}-embed.parquet", "--chunk-size", 64, "--engine", engine)
        assert rc == 0, err
    assert rows(f"{tmp_path}/ray-embed.parquet") == rows(f"{tmp_path}/local-embed.parquet")
    x = random_unit_rows(3, 500, 384)
    translator = procrustes_translator(tmp_path, x, x @ random_isometry(4, 384, 384, np.float32).T,
                                       encoders=("minilm-l6", "minilm-l6"))
    out = {}
    for engine in ("local", "ray"):
        dest = tmp_path / f"{engine}.npy"
        state = jobs.migrate(src, str(dest), "minilm-l6", translator=str(translator), verify_documents=0,
                             progressive=Progressive(checkpoint_rows=80), engine=engine,
                             progress=False)["progressive"]
        assert state["complete"] and [c["done"] for c in state["checkpoints"]] == [0, 80, 160, 200]
        out[engine] = dest.read_bytes()
    assert out["ray"] == out["local"]
    assert np.abs(npy.read_vectors(tmp_path / "ray.npy") - minilm.encode(docs)).max() < 1e-5


# -- without a cluster ---------------------------------------------------------------------------------------------

def test_engine_errors_are_one_line_and_leave_nothing(world, tmp_path, monkeypatch):
    translator, src = world
    base = ["translate", "--translator", translator, "--input", src["npy"], "--output", tmp_path / "o.npy"]
    rc, _, err = cli(*base, "--engine", "spark")
    assert_clean_failure(rc, err, "invalid choice: 'spark'")
    rc, _, err = cli(*base, "--address", "127.0.0.1:6379")
    assert_clean_failure(rc, err, "--address 127.0.0.1:6379 names a Ray cluster; it needs --engine ray")
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(D_IN), D_IN, 2)
    vectors = random_unit_rows(2, 100, D_IN)
    index.train(vectors)
    index.add(vectors)
    faiss.write_index(index, str(tmp_path / "ivf.faiss"))
    rc, _, err = cli(*base[:4], f"faiss:{tmp_path}/ivf.faiss", *base[5:], "--engine", "ray")
    assert_clean_failure(rc, err, "cannot be read in row ranges by the ray engine's workers")
    assert err.strip().endswith("use --engine local")
    with pytest.raises(ConnectionError, match="nothing answers at 127.0.0.1:1"):  # at once, not after minutes
        check_reachable("127.0.0.1:1")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    rc, _, err = cli(*base, "--engine", "ray")
    assert_clean_failure(rc, err, "pip install 'vecbridge[scale]'")
    assert not (tmp_path / "o.npy").exists()


def test_row_ranges_are_the_rows_of_the_batches(world, tmp_path):
    _, src = world
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(D_IN))
    index.add_with_ids(random_unit_rows(3, N, D_IN), np.arange(N, dtype=np.int64) * 5)
    faiss.write_index(index, str(tmp_path / "flat.faiss"))
    table = pa.Table.from_pylist([{"id": i, "vector": v.tolist()} for i, v in enumerate(random_unit_rows(4, N, D_IN))],
                                 schema=pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), D_IN))]))
    import lancedb

    db = lancedb.connect(tmp_path / "ld")
    db.create_table("t", table.slice(0, 200)).add(table.slice(200))  # two fragments
    for spec in (src["npy"], src["parquet"], f"faiss:{tmp_path}/flat.faiss", f"lancedb:{tmp_path}/ld#t"):
        with stores.open_reader(spec) as reader:
            whole = [(i, v.tobytes()) for b in reader.batches(100) for i, v in zip(b.ids, b.vectors, strict=True)]
            for start, stop in ((0, 64), (60, 300), (249, 251), (590, N + 10)):
                b = reader.read_range(start, stop)
                assert [(i, v.tobytes()) for i, v in zip(b.ids, b.vectors, strict=True)] == whole[start:stop], spec


def test_local_batches_are_cut_at_multiples_of_the_batch():
    blocks = [Batch(list(range(a, b)), np.arange(a, b, dtype=np.float32)[:, None]) for a, b in
              [(0, 77), (77, 154), (154, 160), (160, 300)]]
    got = [(first, b.ids[0], len(b)) for first, b in cut(blocks, 64, skip=128)]
    assert got == [(128, 128, 64), (192, 192, 64), (256, 256, 44)]
    assert [len(b) for _, b in cut(blocks, 100)] == [100, 100, 100]


def test_the_pool_has_one_actor_per_cpu_or_per_gpu_for_a_gpu_step():
    class Cluster:
        @staticmethod
        def cluster_resources():
            return {"CPU": 16.0, "GPU": 2.0}

    assert pool_size(Cluster, gpu=False) == (16, 0)
    assert pool_size(Cluster, gpu=True) == (2, 1)
