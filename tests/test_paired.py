import json

import numpy as np
import pytest

from align import AlignError, Translator
from align.metrics import evaluate
from align.paired import MLPTranslator, ProcrustesTranslator, RidgeTranslator


def paired_data(n=1500, d_src=24, d_tgt=40, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_src)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = np.linalg.qr(rng.standard_normal((d_tgt, d_src)))[0].astype(np.float32)  # d_tgt x d_src, orthonormal cols
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
    with pytest.raises(AlignError, match="corrupt"):
        Translator.load(tmp_path / "p")
    with pytest.raises(AlignError, match="does not exist"):
        Translator.load(tmp_path / "nothing")
    with pytest.raises(AlignError, match="already exists"):
        ProcrustesTranslator().fit(x, y).save(tmp_path / "p")
