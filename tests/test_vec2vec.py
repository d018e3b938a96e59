"""vec2vec translator: contract, artifact round trip, determinism, checkpoints, DDP, time budget, bad input.

Tiny widths and a few steps: these check the machinery, not translation quality.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from align.base import Translator
from align.errors import AlignError
from align.vec2vec import Vec2VecTranslator

TINY = dict(width=32, adapter_depth=2, backbone_depth=2, disc_width=32, disc_depth=3, batch_size=32,
            warmup_steps=2, select_every=3, confidence_samples=256, accelerator="cpu", devices=1)


def _data(seed=0, n=200):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 16)).astype(np.float32), rng.normal(size=(n, 12)).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    src, tgt = _data()
    return Vec2VecTranslator(max_steps=6, seed=0, **TINY).fit(src, tgt), src, tgt


def test_fit_transform_shapes_and_unit_norm(fitted):
    model, src, tgt = fitted
    out, back = model.transform(src[:7]), model.inverse_transform(tgt[:5])
    assert out.shape == (7, 12) and back.shape == (5, 16)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-5)
    assert model.n_steps_ == 6
    # the kept weights are the best-scored ones: their confidence is the best of the history
    assert model.confidence_["score"] == pytest.approx(max(score for _, score in model.confidence_history_))
    # selection ran on the schedule and at the end, and picked one of the evaluated steps
    assert [s for s, _ in model.confidence_history_] == [3, 6]
    assert model.selected_step_ in (3, 6)


def test_save_load_round_trip(fitted, tmp_path):
    model, src, tgt = fitted
    path = model.save(tmp_path / "v2v")
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors"]  # no pickle
    config = json.loads((path / "config.json").read_text())
    assert config["method"] == "vec2vec" and config["params"]["width"] == 32
    loaded = Translator.load(path)
    assert isinstance(loaded, Vec2VecTranslator)
    np.testing.assert_array_equal(loaded.transform(src), model.transform(src))
    np.testing.assert_array_equal(loaded.inverse_transform(tgt), model.inverse_transform(tgt))
    assert loaded.confidence_ == pytest.approx(model.confidence_)


def test_deterministic_for_a_seed(fitted):
    model, src, tgt = fitted
    again = Vec2VecTranslator(max_steps=6, seed=0, **TINY).fit(src, tgt)
    np.testing.assert_array_equal(again.transform(src), model.transform(src))
    other = Vec2VecTranslator(max_steps=6, seed=1, **TINY).fit(src, tgt)
    assert not np.allclose(other.transform(src), model.transform(src))


def test_checkpoint_and_resume(tmp_path):
    src, tgt = _data(1)
    params = dict(TINY, checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every=2)
    first = Vec2VecTranslator(max_steps=4, **params).fit(src, tgt)
    assert first.n_steps_ == 4 and (tmp_path / "ckpt" / "last.ckpt").exists()
    resumed = Vec2VecTranslator(max_steps=7, resume=True, **params).fit(src, tgt)
    assert resumed.n_steps_ == 7
    # the selection history carried over from the first run proves it continued rather than restarted
    assert [s for s, _ in resumed.confidence_history_] == [3, 4, 6, 7]
    with pytest.raises(AlignError, match="checkpoint_dir"):
        Vec2VecTranslator(resume=True, **TINY).fit(src, tgt)


def test_time_budget_stops_training():
    src, tgt = _data(2)
    start = time.monotonic()
    model = Vec2VecTranslator(max_steps=10**6, time_budget_s=2.0, **TINY).fit(src, tgt)
    assert 0 < model.n_steps_ < 10**6
    assert time.monotonic() - start < 120  # budget + setup + final confidence on a busy machine


def test_bad_input(fitted):
    model, src, tgt = fitted
    with pytest.raises(AlignError, match="dims"):
        model.transform(tgt)
    with pytest.raises(AlignError, match="dims"):
        model.inverse_transform(src)
    bad = src.copy()
    bad[5, 3] = np.nan
    with pytest.raises(AlignError, match="NaN"):
        Vec2VecTranslator(**TINY).fit(bad, tgt)
    with pytest.raises(AlignError, match="NaN"):
        model.transform(bad)
    with pytest.raises(AlignError, match="at least"):
        Vec2VecTranslator(**TINY).fit(src[:10], tgt)
    with pytest.raises(AlignError, match="without paired"):
        Vec2VecTranslator(**TINY).fit(src, tgt, pairs=np.arange(10))
    with pytest.raises(AlignError, match="not fitted"):
        Vec2VecTranslator().transform(src)


DDP_SCRIPT = """
import sys
import numpy as np
from align.base import Translator
from align.vec2vec import Vec2VecTranslator

out = sys.argv[1]
rng = np.random.default_rng(0)
src, tgt = rng.normal(size=(200, 16)).astype(np.float32), rng.normal(size=(200, 12)).astype(np.float32)
model = Vec2VecTranslator(width=32, adapter_depth=2, backbone_depth=2, disc_width=32, disc_depth=3,
                          batch_size=16, warmup_steps=2, max_steps=4, select_every=None,
                          confidence_samples=128, strategy="ddp", devices=2, accelerator="cpu",
                          checkpoint_dir=out + "/ckpt").fit(src, tgt)
model.save(out + "/artifact")
print(f"rank {model.rank_} steps {model.n_steps_}", flush=True)
if model.rank_ == 0:
    loaded = Translator.load(out + "/artifact")
    assert np.array_equal(loaded.transform(src), model.transform(src))
    print("ROUND TRIP OK", flush=True)
"""


def test_ddp_two_cpu_processes(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), PL_DISABLE_FORK="1")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "rank 0 steps 4" in log and "rank 1 steps 4" in log and "ROUND TRIP OK" in log
    # one artifact, written once (no leftover temp dirs from a second writer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact", "ckpt", "ddp_fit.py"]
    assert (tmp_path / "ckpt" / "last.ckpt").exists()


def test_resume_from_an_incompatible_checkpoint(tmp_path):
    src, tgt = _data(3)
    params = dict(TINY, checkpoint_dir=str(tmp_path / "ckpt"))
    Vec2VecTranslator(max_steps=2, **params).fit(src, tgt)
    with pytest.raises(AlignError, match="other shapes"):
        Vec2VecTranslator(max_steps=4, resume=True, **dict(params, width=24)).fit(src, tgt)
