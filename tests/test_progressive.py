"""`vecbridge migrate --progressive` through the real CLI: a translated store whose documents are re-embedded by the
new model (minilm-l6) checkpoint by checkpoint, rows replaced in place in a real Chroma database and a `.npy` file,
`migrate status`, a run stopped mid-way and resumed, the query-first order, and bad input refused before work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from align.vectors import unit_rows_np
from tests.helpers import assert_clean_failure, cli, procrustes_translator, random_isometry, snapshot, write_store
from vecbridge import jobs, stores
from vecbridge.jobs import progressive


@pytest.fixture(scope="module")
def world(tmp_path_factory, minilm):
    """200 documents, their minilm-l6 vectors, a source store of another space (the vectors rotated, with noise,
    encoder `enc-old`, documents kept) and a procrustes translator from it to minilm-l6 (fitted on other rows)."""
    root = tmp_path_factory.mktemp("progressive")
    topics = ["weather", "market", "garden", "music", "football", "cooking", "travel", "physics"]
    docs = [f"note {i}: a short {topics[i % 8]} report about item {i * 7 % 23} and {topics[i * 3 % 8]}"
            for i in range(200)]
    new = minilm.encode(docs)
    rng = np.random.default_rng(0)
    q = random_isometry(rng, 384, 384, np.float32)
    old = unit_rows_np(new @ q.T + 0.06 * rng.standard_normal(new.shape).astype(np.float32)).astype(np.float32)
    src = write_store(f"lancedb:{root}/old#docs", old, documents=docs, encoder="enc-old")
    train = unit_rows_np(rng.standard_normal((2000, 384))).astype(np.float32)
    tr = procrustes_translator(root, train @ q.T, train, encoders=("enc-old", "minilm-l6"))
    (root / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return root, src, tr, docs, new, old


def _vectors(spec):
    with stores.open_reader(spec) as reader:
        return stores.read_all(reader, "store")


def test_progressive_chroma_end_to_end(world, tmp_path, monkeypatch):
    root, src, tr, docs, new, old = world
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    before = snapshot(root / "old")
    dest = f"chroma:{tmp_path}/db#new"
    rc, out, err = cli("migrate", "--from", src, "--to", dest, "--target-encoder", "minilm-l6", "--translator", tr,
                       "--verify-documents", 40, "--progressive", "--checkpoint-rows", 50, "--json")
    assert rc == 0, err
    state = json.loads(out)["progressive"]
    assert state["complete"] and state["done"] == state["documents"] == 200
    checkpoints = state["checkpoints"]
    assert [c["done"] for c in checkpoints] == [0, 50, 100, 150, 200]
    assert checkpoints[0]["retention"] < 1.0 and checkpoints[-1]["retention"] == 1.0  # the bridge, then all true
    vectors, ids, documents = _vectors(dest)
    assert documents == docs and ids == list(map(str, range(200)))
    assert np.abs(vectors - new).max() < 1e-5  # every row is what minilm-l6 gives its document
    with stores.open_reader(dest) as reader:
        reembedded = reader.info.provenance["reembedded"]
    assert reembedded == {"encoder": "minilm-l6", "rows": 200, "documents": 200, "store_rows": 200, "complete": True}
    assert snapshot(root / "old") == before  # the source was only read

    rc, out, err = cli("migrate", "status", dest, "--json")
    assert rc == 0, err
    st = json.loads(out)
    assert st["complete"] and st["fraction"] == 1.0 and st["retention"] == 1.0 and st["eta_seconds"] == 0
    rc, out, err = cli("migrate", "status", dest)
    assert rc == 0 and "200 of 200 documents re-embedded by minilm-l6" in out and "fully re-embedded" in out, out


def test_progressive_npy_stopped_and_resumed(world, tmp_path, monkeypatch):
    root, src, tr, docs, new, old = world
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    # a .npy store keeps no documents: they come from a file, one line per row
    plain = tmp_path / "old.npy"
    stores.npy.write_vectors(plain, old, meta={"encoder": "enc-old"})
    base = dict(translator=str(tr), verify_documents=40, documents=str(root / "docs.jsonl"), progress=False)
    dest = tmp_path / "new.npy"
    seen = []

    def stop_after_two(state):
        seen.append(state["done"])
        if state["done"] == 128:
            raise KeyboardInterrupt  # as a killed run: the state is saved, the rest not done

    with pytest.raises(KeyboardInterrupt):
        jobs.migrate(str(plain), str(dest), "minilm-l6", **base,
                     progressive=progressive.Progressive(checkpoint_rows=64, on_checkpoint=stop_after_two))
    assert seen == [0, 64, 128]
    # mid-way, the re-embedded rows are held calibrated (their scores on the translated rows' scale)
    wd = progressive.work_dir(str(dest))
    state = progressive.read_state(str(dest))
    shrink = state["calibration"]["shrink"]
    assert 0.5 <= shrink < 1.0
    expect = progressive.calibrated(new, shrink, np.load(wd / "calibration_direction.npy"))
    held_now = stores.npy.read_vectors(dest)
    assert int((np.abs(held_now - expect).max(axis=1) < 1e-5).sum()) == 128
    st = progressive.status(str(dest))
    assert (st["done"], st["complete"], st["fraction"]) == (128, False, 0.64)
    rc, out, err = cli("migrate", "status", dest)
    assert rc == 0 and "128 of 200" in out and "--resume" in out, out

    rc, out, err = cli("migrate", "--from", plain, "--to", dest, "--target-encoder", "minilm-l6", "--translator", tr,
                       "--progressive", "--documents", root / "docs.jsonl", "--resume")
    assert rc == 0, err
    assert "resuming the progressive migration" in err and "re-embedded 200 of 200 documents" in out, (out, err)
    # 128 rows were replaced before the stop, the rest after the resume: every row re-embedded, in its place
    assert np.abs(stores.npy.read_vectors(dest) - new).max() < 1e-5
    assert progressive.status(str(dest))["complete"]


def test_calibration_keeps_each_querys_order_among_reembedded_rows():
    """Calibrated rows score lower by a shrink and a per-query constant: a query ranks them as it ranks the true
    rows (what they gain or lose is against the translated rows only)."""
    rng = np.random.default_rng(1)
    spread = np.r_[np.ones(31), 0.01]  # embeddings have directions of little variance, which queries barely reach
    new = unit_rows_np(rng.standard_normal((300, 32)) * spread).astype(np.float32)
    translated = unit_rows_np(new + 0.6 * rng.standard_normal(new.shape)).astype(np.float32)
    shrink, direction = progressive.calibration(new, translated)
    assert 0.5 <= shrink < 0.95 and abs(np.linalg.norm(direction) - 1) < 1e-5 and abs(direction[-1]) > 0.99
    cal = progressive.calibrated(new, shrink, direction)
    assert np.allclose(np.linalg.norm(cal, axis=1), 1, atol=1e-5)
    queries = unit_rows_np(new[:50] + 0.3 * rng.standard_normal((50, 32)) * spread).astype(np.float32)
    assert (np.argsort(-(queries @ cal.T), axis=1)[:, :20] == np.argsort(-(queries @ new.T), axis=1)[:, :20]).mean() \
        > 0.98
    # every similarity scaled by the shrink, plus a small per-query constant
    gap = queries @ cal.T - shrink * (queries @ new.T)
    assert np.abs(gap - gap.mean(axis=1, keepdims=True)).max() < 0.02
    assert progressive.calibrated(new, 1.0, direction) is new


def test_query_first_order_reembeds_what_queries_reach(world, tmp_path, monkeypatch):
    root, src, tr, docs, new, old = world
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    log = tmp_path / "queries.txt"
    wanted = [7, 42, 99, 150]
    log.write_text("".join(docs[i] + "\n" for i in wanted))  # queries that are those documents' own words
    dest = f"{tmp_path}/new.parquet"
    firsts = []

    def first_rows(state):
        if state["done"] == 0:
            return
        vectors, _, _ = _vectors(dest)
        firsts.append(set(np.flatnonzero(np.abs(vectors - new).max(axis=1) < 1e-5)))

    jobs.migrate(src, dest, "minilm-l6", translator=str(tr), verify_documents=0, progress=False,
                 progressive=progressive.Progressive("queries", str(log), 40, first_rows))
    assert set(wanted) <= firsts[0]  # each query's nearest row comes in the first checkpoint of 40
    assert len(firsts) == 5 and firsts[-1] == set(range(200))


def test_progressive_bad_input_refused_before_work(world, tmp_path, monkeypatch):
    root, src, tr, docs, new, old = world
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    plain = tmp_path / "plain.npy"
    stores.npy.write_vectors(plain, old, meta={"encoder": "enc-old"})
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({"text": "one"}) + "\n")
    snap = snapshot(tmp_path)
    base = ["migrate", "--to", f"{tmp_path}/out.parquet", "--target-encoder", "minilm-l6", "--translator", tr,
            "--progressive"]
    for extra, expected in (
            (["--from", plain], "keeps none; give --documents"),
            (["--from", plain, "--documents", short], "has 1 lines but the store has 200 rows"),
            (["--from", src, "--order", "queries"], "give both it and --queries"),
            (["--from", src, "--queries", short], "give both"),
            (["--from", src, "--engine", "local", "--address", "127.0.0.1:1"], "needs --engine ray"),
    ):
        assert_clean_failure(*cli(*base, *extra)[::2], expected)
    assert_clean_failure(*cli("migrate", "status", f"{tmp_path}/none.parquet")[::2], "no progressive migration")
    assert_clean_failure(*cli("migrate", "stats", "x")[::2], "vecbridge migrate status STORE")
    assert_clean_failure(*cli("migrate", "--to", f"{tmp_path}/out.parquet")[::2], "migrate needs --from")
    assert snapshot(tmp_path) == snap
