"""train -> eval -> translate through the real CLI on small synthetic vector files, and each bad input."""

import json

import numpy as np
import pytest

from tests.helpers import cli, fast_params_flags, random_isometry, random_unit_rows
from vecbridge.stores import npy


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    x = random_unit_rows(rng, 1200, 16)
    y = x @ random_isometry(rng, 24, 16, np.float32).T + 0.01 * rng.standard_normal((1200, 24)).astype(np.float32)
    paths = {}
    for name, arr in {"src": x[:1000], "tgt": y[:1000], "src_eval": x[1000:], "tgt_eval": y[1000:]}.items():
        paths[name] = tmp_path / f"{name}.npy"
        npy.write_vectors(paths[name], arr, meta={"encoder": "fake-" + name[:3]})
    return tmp_path, paths


def test_train_eval_translate_round_trip(files):
    tmp, p = files
    assert cli("train", "--method", "procrustes", "--source", p["src"], "--target", p["tgt"],
               "--output", tmp / "tr")[0] == 0
    config = json.loads((tmp / "tr" / "config.json").read_text())
    assert config["source_encoder"] == "fake-src" and config["target_encoder"] == "fake-tgt"
    rc, out, _ = cli("eval", "--translator", tmp / "tr", "--source", p["src_eval"], "--target", p["tgt_eval"],
                     "--pool", 100, "--json")
    assert rc == 0
    metrics = json.loads(out)
    assert metrics["top1"] == 1.0 and metrics["pool"] == 100
    assert cli("translate", "--translator", tmp / "tr", "--input", p["src_eval"], "--output", tmp / "y.npy",
               "--chunk", 64)[0] == 0
    out = np.load(tmp / "y.npy")
    assert out.shape == (200, 24) and out.dtype == np.float32
    assert json.loads((tmp / "y.npy.json").read_text())["encoder"] == "fake-tgt"
    assert cli("translate", "--translator", tmp / "tr", "--input", tmp / "y.npy", "--output",
               tmp / "back.npy", "--reverse")[0] == 0
    back = np.load(tmp / "back.npy")
    assert (back * np.load(p["src_eval"])).sum(1).min() > 0.99


def test_bad_inputs_fail_cleanly(files):
    tmp, p = files
    assert cli("train", "--method", "procrustes", "--source", p["src"], "--target", p["tgt"],
               "--output", tmp / "tr")[0] == 0
    nan = tmp / "nan.npy"
    arr = np.load(p["src_eval"])
    arr[3] = np.nan
    np.save(nan, arr)
    ints = tmp / "ints.npy"
    np.save(ints, np.ones((4, 16), dtype=np.int64))
    flat = tmp / "flat.npy"
    np.save(flat, np.ones(16, dtype=np.float32))
    zeros = tmp / "zeros.npy"
    np.save(zeros, np.zeros((4, 16), dtype=np.float32))
    before = p["tgt"].read_bytes()
    (tmp / "broken").mkdir()
    (tmp / "broken" / "config.json").write_text("{not json")
    (tmp / "broken" / "model.safetensors").write_bytes(b"")
    cases = [
        (["translate", "--translator", tmp / "tr", "--input", p["tgt_eval"], "--output", tmp / "o1.npy"],
         "--reverse"),
        (["translate", "--translator", tmp / "tr", "--input", nan, "--output", tmp / "o2.npy"], "NaN"),
        (["translate", "--translator", tmp / "tr", "--input", ints, "--output", tmp / "o3.npy"], "dtype"),
        (["translate", "--translator", tmp / "tr", "--input", flat, "--output", tmp / "o4.npy"], "2-D"),
        (["translate", "--translator", tmp / "tr", "--input", zeros, "--output", tmp / "o5.npy"], "zeros"),
        (["translate", "--translator", tmp / "broken", "--input", p["src"], "--output", tmp / "o6.npy"],
         "damaged"),
        (["translate", "--translator", tmp / "none", "--input", p["src"], "--output", tmp / "o7.npy"],
         "does not exist"),
        (["translate", "--translator", tmp / "tr", "--input", tmp / "missing.npy", "--output", tmp / "o8.npy"],
         "does not exist"),
        (["translate", "--translator", tmp / "tr", "--input", p["src"], "--output", p["tgt"]], "--overwrite"),
        (["train", "--method", "procrustes", "--source", p["src"], "--target", p["tgt"], "--output", tmp / "tr"],
         "already exists"),
        (["train", "--method", "procrustes", "--source", p["src"], "--target", p["tgt_eval"],
          "--output", tmp / "t2"], "row-aligned"),
        (["train", "--method", "procrustes", "--devices", "2", "--source", p["src"], "--target", p["tgt"],
          "--output", tmp / "t3"], "does not apply"),
        (["train", "--method", "procrustes", "--whiten", "0.4", "--source", p["src"], "--target", p["tgt"],
          "--output", tmp / "t4"], "does not apply"),
        (["train", "--whiten", "-1", "--source", p["src"], "--target", p["tgt"], "--output", tmp / "t5"],
         "whiten must be >= 0"),
        (["train", "--affine", "-1", "--source", p["src"], "--target", p["tgt"], "--output", tmp / "t6"],
         "affine must be >= 0"),
        (["train", "--affine", "0.03", "--whiten", "0.4", "--source", p["src"], "--target", p["tgt"],
          "--output", tmp / "t7"], "set one of them"),
        (["train", "--method", "procrustes", "--affine", "0.03", "--source", p["src"], "--target", p["tgt"],
          "--output", tmp / "t8"], "does not apply"),
        (["eval", "--translator", tmp / "tr", "--source", p["src_eval"], "--target", p["tgt"]], "paired"),
        (["eval", "--translator", tmp / "tr", "--source", p["src_eval"], "--target", p["tgt_eval"], "--search"],
         "only available for geometric"),
        (["translate", "--translator", tmp / "tr", "--input", p["src"], "--output", tmp / "o9.npy", "--search"],
         "only available for geometric"),
    ]
    for argv, message in cases:
        rc, _, err = cli(*argv)
        assert rc == 2, argv
        assert message in err and "Traceback" not in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp / "o2.npy").exists() and not list(tmp.glob(".o2.npy*"))
    assert p["tgt"].read_bytes() == before  # the refused --output was left intact


def test_train_warns_when_confidence_is_low(tmp_path):
    # two unrelated clouds: whatever map is fitted, the label-free confidence must say it is not trustworthy
    rng = np.random.default_rng(1)
    for name, dim in (("a", 16), ("b", 24)):
        npy.write_vectors(tmp_path / f"{name}.npy", rng.standard_normal((600, dim)).astype(np.float32))
    rc, out, err = cli("train", "--method", "procrustes", "--source", tmp_path / "a.npy", "--target",
                       tmp_path / "b.npy", "--output", tmp_path / "tr", "--json")
    assert rc == 0, err
    assert json.loads(out)["confidence"]["verdict"] == "low"
    assert "confidence" in err and "is low" in err


def test_pivot_auto_is_the_default_and_tries_the_other_built_in_encoders(tmp_path, monkeypatch):
    # unrelated spaces: no direct start passes, so `--pivot auto` (the default) steps through every installed
    # built-in encoder but the sides' own (the target claims mpnet-base), each embedding the pivot texts for real
    # (none of them can bridge random vectors: every chain stops at its first leg, and the verdict stays low)
    from encoders.registry import list_encoders
    from vecbridge.jobs import pivots

    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pivots, "AUTO_MIN_ROWS", 500)  # the real bar is 2,000 rows: too slow for a unit test
    rng = np.random.default_rng(1)
    for name, dim, encoder in (("a", 16, "fake"), ("b", 24, "mpnet-base")):
        npy.write_vectors(tmp_path / f"{name}.npy", rng.standard_normal((600, dim)).astype(np.float32),
                              meta={"encoder": encoder})
    texts = tmp_path / "pivot.txt"
    texts.write_text("".join(f"note {i}: the {w} report on item {i * 7 % 13}\n"
                             for i, w in enumerate(["weather", "market", "garden", "music"] * 55)))
    # lighter than FAST: a leg for each installed encoder
    fast = fast_params_flags(refine_iters=4, centroid_rounds=2, n_centroids=64, anchor_starts=1)
    argv = ["train", "--source", tmp_path / "a.npy", "--target", tmp_path / "b.npy", "--pivot-texts", texts,
            "--pivot-rows", 210, "--json", *fast]
    rc, out, err = cli(*argv, "--output", tmp_path / "tr")
    assert rc == 0, err
    config = json.loads((tmp_path / "tr" / "config.json").read_text())
    record = config["trained_on"]["pivots"]
    installed = [e["name"] for e in list_encoders() if e.get("installed") and ":" not in e["name"]]
    assert record["mode"] == "auto" and "minilm-l6" in record["candidates"]  # the bundled model, always there
    assert record["candidates"] == [name for name in installed if name != "mpnet-base"]
    init = config["fit_report"]["stages"]["init"]
    assert set(init["pivots"]) == set(record["candidates"]) == set(json.loads(out)["pivots"])
    tried = [line.split(":")[0].removeprefix("pivot ") for line in err.splitlines() if "no direct start" in line]
    assert tried == record["candidates"]  # in the registry's order
    assert all(leg.get("skipped") or leg["source_to_pivot"]["passed"] is False for leg in init["pivots"].values())
    assert "pivot minilm-l6: no direct start has passed so far" in err
    assert json.loads(out)["confidence"]["verdict"] == "low"
    # --no-pivot forbids it; fewer rows than the bar skip it (recorded)
    assert cli(*argv, "--no-pivot", "--output", tmp_path / "t2")[0] == 0
    assert json.loads((tmp_path / "t2" / "config.json").read_text())["trained_on"]["pivots"] is None
    monkeypatch.setattr(pivots, "AUTO_MIN_ROWS", 2000)
    assert cli(*argv, "--output", tmp_path / "t3")[0] == 0
    assert "fewer than 2000 rows" in json.loads((tmp_path / "t3" / "config.json").read_text())["trained_on"][
        "pivots"]["skipped"]
    rc, _, err = cli(*argv, "--pivot", "auto", "--pivot", "minilm-l6", "--output", tmp_path / "t4")
    assert rc == 2 and "give it alone" in err


def test_train_through_a_pivot_encoder(files, tmp_path, monkeypatch):
    # --pivot embeds the pivot texts with the real built-in encoder once (cached under VECBRIDGE_HOME) and hands
    # them to geometric. These synthetic spaces share nothing with minilm-l6, so the chain stops at its first
    # leg and says so in the report (the align tests cover a chain that works).
    tmp, p = files
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    texts = tmp_path / "pivot.txt"
    texts.write_text("".join(f"note {i}: the {w} report on item {i * 7 % 13}\n"
                             for i, w in enumerate(["weather", "market", "garden", "music"] * 55)))
    fast = fast_params_flags(n_centroids=64)
    argv = ["train", "--source", p["src"], "--target", p["tgt"], "--pivot", "minilm-l6",
            "--pivot-texts", texts, "--pivot-rows", 210, "--json", *fast]
    rc, _, err = cli(*argv, "--output", tmp / "tr")
    assert rc == 0 and "pivot minilm-l6: source to pivot" in err
    config = json.loads((tmp / "tr" / "config.json").read_text())
    assert config["trained_on"]["pivots"] == {"encoders": ["minilm-l6"], "texts": str(texts), "rows": 210}
    init = config["fit_report"]["stages"]["init"]
    assert init["pivots"]["minilm-l6"]["source_to_pivot"]["passed"] is False
    assert init["chosen"] == "pooled_anchors"
    cached = list((tmp_path / "home" / "pivots" / "minilm-l6").glob("*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (210, 384)
    listing = cached[0].with_suffix(".jsonl").read_text().splitlines()
    assert [json.loads(line)["text"] for line in listing] == texts.read_text().splitlines()[-210:]  # the tail
    for extra, message in ((["--method", "procrustes"], "--pivot does not apply"),
                           (["--pivot", "nope"], "unknown encoder 'nope'"),
                           (["--pivot-rows", "0"], "--pivot-rows")):
        args = [a for a in argv if a not in fast] if "procrustes" in extra else argv
        rc, _, err = cli(*args, *extra, "--output", tmp / "t2")
        assert rc == 2
        assert message in err and "Traceback" not in err, err
    assert not (tmp / "t2").exists()
    # the geometric translator also writes search output (queries against native target vectors)
    assert cli("translate", "--translator", tmp / "tr", "--input", p["src_eval"], "--output", tmp / "q.npy",
               "--search")[0] == 0
    assert json.loads((tmp / "q.npy.json").read_text())["translated_by"]["output"] == "search"
    rc, out, _ = cli("eval", "--translator", tmp / "tr", "--source", p["src_eval"], "--target", p["tgt_eval"],
                     "--search", "--pool", 100, "--json")
    assert rc == 0 and json.loads(out)["output"] == "search"
