import json
import os

import numpy as np
import pytest

from align import AlignError, Translator
from align.metrics import evaluate
from align.paired import MLPTranslator, ProcrustesTranslator, RidgeTranslator
from tests.helpers import random_isometry, random_unit_rows


def paired_data(n=1500, d_src=24, d_tgt=40, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    x = random_unit_rows(rng, n, d_src)
    q = random_isometry(rng, d_tgt, d_src, np.float32)
    y = x @ q.T + 0.3 + noise * rng.standard_normal((n, d_tgt)).astype(np.float32)
    return x, y / np.linalg.norm(y, axis=1, keepdims=True)


@pytest.mark.parametrize("cls", [ProcrustesTranslator, RidgeTranslator])
def test_linear_maps_recover_a_rotation_between_different_dims(cls, tmp_path):
    x, y = paired_data()
    t = cls().fit(x[:1000], y[:1000])
    fwd = evaluate(t.transform(x[1000:]), y[1000:], pool=500)
    back = evaluate(t.inverse_transform(y[1000:]), x[1000:], pool=500)
    assert fwd["top1"] == 1.0 and back["top1"] == 1.0 and fwd["mean_cosine"] > 0.9
    out = np.linalg.norm(t.transform(x[:5]), axis=1)
    assert np.allclose(out, 1, atol=1e-5)
    t.save(tmp_path / "tr")
    loaded = Translator.load(tmp_path / "tr")
    assert type(loaded) is cls
    assert np.array_equal(loaded.transform(x[1000:]), t.transform(x[1000:]))
    config = json.loads((tmp_path / "tr" / "config.json").read_text())
    assert config["method"] == cls.method and config["dim_source"] == 24 and config["dim_target"] == 40


def test_mlp_learns_a_nonlinear_map_better_than_ridge(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    y = np.concatenate([np.tanh(2 * x), x ** 2 - 1], axis=1)
    ridge = RidgeTranslator().fit(x[:2500], y[:2500])
    mlp = MLPTranslator(width=64, max_epochs=10, lr=5e-3, seed=0).fit(x[:2500], y[:2500])
    cos_ridge = evaluate(ridge.transform(x[2500:]), y[2500:])["mean_cosine"]
    cos_mlp = evaluate(mlp.transform(x[2500:]), y[2500:])["mean_cosine"]
    assert cos_mlp > cos_ridge + 0.05
    mlp.save(tmp_path / "mlp")
    assert np.allclose(Translator.load(tmp_path / "mlp").transform(x[:50]), mlp.transform(x[:50]), atol=1e-6)


def test_pairs_select_rows_and_are_validated():
    x, y = paired_data(n=400)
    shuffled = np.random.default_rng(0).permutation(400)
    pairs = np.stack([np.arange(400), np.argsort(shuffled)], axis=1)
    t = ProcrustesTranslator().fit(x, y[shuffled], pairs=pairs)
    assert evaluate(t.transform(x), y, pool=400)["top1"] == 1.0
    with pytest.raises(AlignError, match="row-aligned"):
        ProcrustesTranslator().fit(x, y[:300])
    with pytest.raises(AlignError, match=r"\(k, 2\)"):
        ProcrustesTranslator().fit(x, y, pairs=np.zeros((5, 3), dtype=int))
    with pytest.raises(AlignError, match="outside"):
        ProcrustesTranslator().fit(x, y, pairs=np.array([[0, 0], [1, 999]]))


def test_bad_vectors_are_rejected():
    x, y = paired_data(n=100)
    bad = x.copy()
    bad[7] = np.nan
    with pytest.raises(AlignError, match="row 7"):
        RidgeTranslator().fit(bad, y)
    t = ProcrustesTranslator().fit(x, y)
    with pytest.raises(AlignError, match="expects 24"):
        t.transform(y)
    with pytest.raises(AlignError, match="all zeros"):
        t.transform(np.zeros((2, 24), dtype=np.float32))
    with pytest.raises(AlignError, match="2-D"):
        t.transform(x[0])


def test_corrupt_or_foreign_artifacts_are_rejected(tmp_path):
    x, y = paired_data(n=100)
    ProcrustesTranslator().fit(x, y).save(tmp_path / "p")
    with pytest.raises(AlignError, match="not 'ridge'"):
        Translator.load(tmp_path / "p", method="ridge")
    (tmp_path / "p" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(AlignError, match="model.safetensors is damaged"):
        Translator.load(tmp_path / "p")
    with pytest.raises(AlignError, match="does not exist"):
        Translator.load(tmp_path / "nothing")
    with pytest.raises(AlignError, match="already exists"):
        ProcrustesTranslator().fit(x, y).save(tmp_path / "p")


@pytest.fixture
def saved(tmp_path):
    x, y = paired_data(n=100)
    return ProcrustesTranslator().fit(x, y).save(tmp_path / "p"), x


def _edit_config(path, change):
    config = json.loads((path / "config.json").read_text())
    change(config)
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("change, match", [
    (lambda c: c.pop("dim_source"), "dim_source is None, not a positive integer"),
    (lambda c: c.update(dim_target=0), "dim_target is 0"),
    (lambda c: c.update(dim_target=True), "dim_target is True"),
    (lambda c: c.update(method="nope"), "unknown method 'nope'"),
    (lambda c: c["params"].update(bogus=1), "parameter 'bogus' is not a procrustes parameter"),
    (lambda c: c["params"].update(seed="zero"), "parameter seed is 'zero'"),
    (lambda c: c.update(state=None), "state is missing"),
    (lambda c: c.update(confidence=[1]), "confidence is not an object"),
])
def test_a_damaged_config_is_rejected_in_one_line(saved, change, match):
    path, _ = saved
    _edit_config(path, change)
    with pytest.raises(AlignError, match=match) as e:
        Translator.load(path)
    assert "\n" not in str(e.value) and "config.json" in str(e.value)
    with pytest.raises(AlignError, match=match):
        Translator.read_config(path)


def test_a_config_from_another_format_version_is_refused(saved):
    path, _ = saved
    _edit_config(path, lambda c: c.update(format_version=2))
    with pytest.raises(AlignError, match="format version 2"):
        Translator.load(path)


@pytest.mark.parametrize("change, match", [
    (lambda t: t.update(forward_weight=np.full_like(t["forward_weight"], np.nan)), "'forward_weight' contains NaN"),
    (lambda t: t.update(forward_bias=t["forward_bias"][:-1]), r"'forward_bias' has shape \(39,\), expected \(40,\)"),
    (lambda t: t.pop("backward_bias"), "'backward_bias' is missing"),
    (lambda t: t.update(extra=np.zeros(3, np.float32)), "'extra' is not a procrustes tensor"),
    (lambda t: t.update(forward_bias=t["forward_bias"].astype(np.float64)), "'forward_bias' has dtype float64"),
])
def test_damaged_weights_are_rejected_in_one_line(saved, change, match):
    from safetensors.numpy import load_file, save_file

    path, _ = saved
    tensors = load_file(str(path / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(AlignError, match=f"model.safetensors is damaged: tensor {match}") as e:
        Translator.load(path)
    assert "\n" not in str(e.value)
    Translator.read_config(path)  # the config alone is fine


def test_unreadable_configs_are_rejected_without_hanging(saved):
    path, _ = saved
    cfg = path / "config.json"
    cfg.write_bytes(b'{"format": "vecbridge-translator", "method": "\xff\xfe"}')
    with pytest.raises(AlignError, match="not UTF-8"):
        Translator.load(path)
    cfg.unlink()
    os.mkfifo(cfg)  # opening a FIFO for reading would block until a writer comes
    with pytest.raises(AlignError, match="config.json is not a regular file"):
        Translator.load(path)
    cfg.unlink()
    cfg.mkdir()
    with pytest.raises(AlignError, match="config.json is not a regular file"):
        Translator.read_config(path)
    cfg.rmdir()
    with pytest.raises(AlignError, match="config.json is missing"):
        Translator.load(path)


def test_output_is_never_non_finite(saved):
    from safetensors.numpy import load_file, save_file

    path, x = saved
    tensors = load_file(str(path / "model.safetensors"))
    tensors["forward_weight"] = np.full_like(tensors["forward_weight"], 3e38)  # finite, but overflows when applied
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(AlignError, match="NaN or inf"):
        Translator.load(path).transform(x)


def test_save_writes_a_new_directory_and_never_replaces_one(saved, tmp_path):
    path, x = saved
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    other = ProcrustesTranslator().fit(x, x)
    with pytest.raises(AlignError, match="already exists"):
        other.save(path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    with pytest.raises(AlignError, match="format"):
        other.save(tmp_path / "q", meta={"format": "mine"})
    other.save(tmp_path / "q", meta={"encoders": ["a", "b"]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "q"]  # no temporary directory left behind
    assert Translator.read_config(tmp_path / "q")["encoders"] == ["a", "b"]
