"""`vecbridge train` and `eval` on stores through the real CLI: stores read directly (their recorded encoder kept),
the target side embedded on the fly (`--target-encoder`), public pairs (`--source-encoder`) and pairs from the
store's own documents (`--pairs-from-documents`), with minilm-l6 on small text files; bad input in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import (
    assert_clean_failure,
    cli,
    fast_params_flags,
    random_isometry,
    random_unit_rows,
    snapshot,
    write_store,
)


@pytest.fixture
def paired(tmp_path):
    rng = np.random.default_rng(0)
    x = random_unit_rows(rng, 400, 16)
    return tmp_path, x, x @ random_isometry(rng, 24, 16, np.float32).T


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


def test_target_encoder_and_public_pairs(minilm_store, tmp_path, monkeypatch):
    d, src = minilm_store
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    ref = ["--target-encoder", "minilm-l6", "--target-texts", d / "ref.txt", "--target-limit", 200]
    rc, out, err = cli("train", "--source", src, *ref, "--output", tmp_path / "unsup", "--json", *fast_params_flags())
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


def test_pairs_from_documents(minilm_store, tmp_path, monkeypatch):
    d, src = minilm_store
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    ref = ["--target-encoder", "minilm-l6", "--target-texts", d / "ref.txt", "--target-limit", 200]
    rc, out, err = cli("train", "--source", src, *ref, "--pairs-from-documents", 40, "--output", tmp_path / "tr",
                       "--json", *fast_params_flags(pair_completions=1))
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
