"""`vecbridge train` and `eval` on stores through the real CLI: stores read directly (their recorded encoder kept),
the target side embedded on the fly (`--target-encoder`), public pairs (`--source-encoder`) and pairs from the
store's own documents (`--pairs-from-documents`), with minilm-l6 on small text files; bad input in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_hostile import FAST, assert_clean_failure, cli, snapshot
from vecbridge import stores
from vecbridge.stores.base import STORE_FORMAT, Batch

TOPICS = ["weather", "market", "garden", "music", "football", "cooking", "travel", "physics"]


def write_store(spec, vectors, ids=None, documents=None, encoder="enc-a"):
    """A store written by vecbridge's own writer (with the real library), recording `encoder`."""
    ids = list(range(len(vectors))) if ids is None else ids
    info = stores.StoreInfo(spec, "test", len(vectors), vectors.shape[1], "cosine", id_type="int",
                            documents=documents is not None)
    with stores.open_writer(spec, dim=vectors.shape[1], count=len(vectors), metric="cosine", source=info,
                            provenance={"format": STORE_FORMAT, "encoder": encoder}) as writer:
        writer.write(Batch(ids, vectors.astype(np.float32), documents))
        writer.commit()
    return spec


@pytest.fixture
def paired(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = np.linalg.qr(rng.standard_normal((24, 16)))[0].astype(np.float32)
    return tmp_path, x, x @ q.T


def test_train_and_eval_read_stores(paired):
    d, x, y = paired
    src = write_store(f"lancedb:{d}/ld#a", x[:300], encoder="enc-a")
    tgt = write_store(f"{d}/b.parquet", y[:300], encoder="enc-b")
    rc, _, err = cli("train", "--method", "procrustes", "--source", src, "--target", tgt, "--output", d / "tr")
    assert rc == 0, err
    config = json.loads((d / "tr" / "config.json").read_text())
    assert (config["source_encoder"], config["target_encoder"]) == ("enc-a", "enc-b")
    # eval pairs stores with ids by id: the target written in another order
    order = np.random.default_rng(1).permutation(100)
    ev_src = write_store(f"chroma:{d}/ch#evs", x[300:], ids=[f"t{i}" for i in range(100)])
    ev_tgt = write_store(f"lancedb:{d}/ld#evs", y[300:][order], ids=[f"t{i}" for i in order], encoder="enc-b")
    rc, out, err = cli("eval", "--translator", d / "tr", "--source", ev_src, "--target", ev_tgt, "--json")
    assert rc == 0, err
    assert json.loads(out)["top1"] > 0.99
    before = snapshot(d)
    for argv, expected in (
            (["eval", "--translator", d / "tr", "--source", ev_src, "--target", tgt], "100 rows and --target 300"),
            (["eval", "--translator", d / "tr", "--source", f"chroma:{d}/ch#nope", "--target", ev_tgt],
             "collection 'nope' does not exist"),
            (["train", "--source", src, "--target", f"qdrant:{d}/qd#x", "--output", d / "t2"], "does not exist"),
            (["train", "--source", src, "--output", d / "t2"], "--target-encoder"),
            (["train", "--source", src, "--target", src, "--output", d / "t2", "--source-encoder", "minilm-l6",
              "--target-encoder", "minilm-l6"], "drop one")):
        assert_clean_failure(*cli(*argv)[::2], expected)
    assert snapshot(d) == before


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """Two disjoint small text files, a source store of the first embedded by minilm-l6 (with documents) and
    a reference file of the second, and a private VECBRIDGE_HOME."""
    from encoders.registry import get_encoder

    d = tmp_path_factory.mktemp("texts")
    lines = [f"note {i}: a short {TOPICS[i % 8]} report about item {i * 7 % 23} and {TOPICS[i * 3 % 8]}"
             for i in range(400)]
    (d / "ref.txt").write_text("".join(line + "\n" for line in lines[200:]))
    docs = lines[:200]
    src = write_store(f"lancedb:{d}/ld#docs", get_encoder("minilm-l6").encode(docs), documents=docs,
                      encoder="minilm-l6")
    return d, src


def test_target_encoder_and_public_pairs(texts, tmp_path, monkeypatch):
    d, src = texts
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    ref = ["--target-encoder", "minilm-l6", "--target-texts", d / "ref.txt", "--target-limit", 200]
    rc, out, err = cli("train", "--source", src, *ref, "--output", tmp_path / "unsup", "--json", *FAST)
    assert rc == 0, err
    config = json.loads((tmp_path / "unsup" / "config.json").read_text())
    assert config["method"] == "geometric" and config["target_encoder"] == "minilm-l6"
    assert config["trained_on"]["reference"] == {"texts": str(d / "ref.txt"), "rows": 200,
                                                 "target_encoder": "minilm-l6"}
    cached = list((tmp_path / "home" / "references" / "minilm-l6").glob("*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (200, 384)
    # public pairs: the same reference texts through both models (both minilm-l6 here), procrustes by default
    rc, out, err = cli("train", "--source", src, *ref, "--source-encoder", "minilm-l6", "--output",
                       tmp_path / "public", "--json")
    assert rc == 0, err
    config = json.loads((tmp_path / "public" / "config.json").read_text())
    assert config["method"] == "procrustes" and config["trained_on"]["reference"]["public_pairs"] == 200
    assert config["trained_on"]["pairs"] == 200 and len(cached) == 1  # the reference vectors came from the cache
    rc, out, err = cli("eval", "--translator", tmp_path / "public", "--source", src, "--target", src, "--json")
    assert rc == 0 and json.loads(out)["top1"] > 0.99, err
    for extra, expected in ((["--source-encoder", "nope"], "unknown encoder 'nope' for --source-encoder"),
                            (["--target-limit", "0"], "positive integer")):
        assert_clean_failure(*cli("train", "--source", src, *ref, "--output", tmp_path / "x", *extra)[::2], expected)
    assert not (tmp_path / "x").exists()


def test_pairs_from_documents(texts, tmp_path, monkeypatch):
    d, src = texts
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    ref = ["--target-encoder", "minilm-l6", "--target-texts", d / "ref.txt", "--target-limit", 200]
    rc, out, err = cli("train", "--source", src, *ref, "--pairs-from-documents", 40, "--output", tmp_path / "tr",
                       "--json", *FAST, "--param", "pair_completions=1")
    assert rc == 0, err
    result = json.loads(out)
    assert result["confidence"]["validation"]["pairs"] == 10  # a quarter of the 40 held out
    config = json.loads((tmp_path / "tr" / "config.json").read_text())
    assert config["trained_on"]["pairs"] == 40 and config["trained_on"]["pairs_from_documents"] == 40
    plain = write_store(f"{tmp_path}/plain.parquet", np.load(next((tmp_path / "home" / "references" / "minilm-l6")
                                                                   .glob("*.npy"))), encoder="minilm-l6")
    for source, k, expected in ((plain, 40, "holds none"), (src, 500, "only 200 rows with a document")):
        rc, _, err = cli("train", "--source", source, *ref, "--pairs-from-documents", k, "--output", tmp_path / "x")
        assert_clean_failure(rc, err, expected)
