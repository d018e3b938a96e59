"""Encoders: batching, order, normalisation, truncation, threads, the registry and its cache, model folders."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from encoders import packages, registry
from encoders.base import resolve_device
from encoders.batching import token_budget_batches
from encoders.errors import EncoderError
from tests.helpers import REPO

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

def test_token_budget_batches_cover_every_index_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=101)
    batches = token_budget_batches(lengths, max_tokens=600)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(101))
    assert np.all(np.diff(lengths[flat]) <= 0), "batches must visit texts longest first"
    for b in batches:
        assert len(b) * lengths[b].max() <= 600 or len(b) == 1


def test_token_budget_batches_edge_cases():
    assert token_budget_batches([], 10) == []
    # An item over budget gets a batch of its own; equal lengths keep input order.
    assert [b.tolist() for b in token_budget_batches([50, 5, 5, 5], 10)] == [[0], [1, 2], [3]]
    with pytest.raises(ValueError):
        token_budget_batches([1], 0)


# --- the shared batching loop, on minilm-l6 (parity with sentence-transformers: test_core_bert.py) ----------

@pytest.fixture(scope="module")
def one_by_one(minilm):
    """Each text encoded alone: no batching, sorting or chunking involved."""
    return np.concatenate([minilm.encode([t]) for t in TEXTS])


def test_rows_are_normalised_and_in_input_order(minilm, one_by_one, monkeypatch):
    # many small batches over several chunks, so sorting and putting rows back are both exercised
    monkeypatch.setattr(minilm, "batch_tokens", 32)
    monkeypatch.setattr(minilm, "chunk", 3)
    order = np.random.default_rng(1).permutation(len(TEXTS))
    out = minilm.encode([TEXTS[i] for i in order])
    assert out.shape == (len(TEXTS), 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out, one_by_one[order], atol=1e-5)


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
    assert minilm.last_stats.texts == 0


def _installed(name: str) -> bool:
    return {r["name"]: r["installed"] for r in registry.list_encoders()}[name]


@pytest.mark.parametrize("name", ["minilm-l6", "minilm-l3"])
def test_one_encoder_serves_several_threads(name):
    if not _installed(name):
        pytest.skip(f"{name} is not installed (pip install 'vecbridge[models]')")
    enc = registry.get_encoder(name, device="cpu")
    long = "word " * (enc.max_length + 10)
    # each thread its own order and count of texts (one cut at max_length), so crossed rows or stats would show
    inputs = [[long, *TEXTS[k:], *TEXTS[:k]][:6 + k] for k in range(4)]
    alone = [(enc.encode(texts), enc.last_stats) for texts in inputs]
    start = threading.Barrier(len(inputs))

    def work(k):
        start.wait()
        return [(enc.encode(inputs[k]), enc.last_stats) for _ in range(3)]

    with ThreadPoolExecutor(len(inputs)) as pool:
        results = list(pool.map(work, range(len(inputs))))
    for k, runs in enumerate(results):
        for rows, stats in runs:
            np.testing.assert_allclose(rows, alone[k][0], atol=1e-5)
            assert stats == alone[k][1]
            assert (stats.texts, stats.truncated) == (6 + k, 1)


class _SettingsSpy:
    """Forwards to a `tokenizers.Tokenizer` and records calls that change its settings."""

    SETTERS = ("enable_truncation", "no_truncation", "enable_padding", "no_padding")

    def __init__(self, tokenizer):
        self._tokenizer, self.changes = tokenizer, []

    def __getattr__(self, attr):
        if attr in self.SETTERS:
            self.changes.append(attr)
        return getattr(self._tokenizer, attr)


@pytest.mark.parametrize("name", ["minilm-l6", "minilm-l3"])
def test_encode_leaves_the_tokenizer_settings_alone(name, monkeypatch):
    """A settings change during encode would race with another thread's encode on the shared tokenizer."""
    if not _installed(name):
        pytest.skip(f"{name} is not installed (pip install 'vecbridge[models]')")
    enc = registry.get_encoder(name, device="cpu")
    spy = _SettingsSpy(enc.tokenizer)
    monkeypatch.setattr(enc, "tokenizer", spy)
    enc.encode([*TEXTS, "word " * (enc.max_length + 10)])
    assert spy.changes == [] and enc.last_stats.truncated == 1


def test_hf_local_folder_runs_sentence_transformers():
    """`hf:` around sentence-transformers: our sorting and batching give what its own encode gives."""
    enc = registry.get_encoder(f"hf:{registry._minilm_l6_folder()}", device="cpu", batch_tokens=64)
    assert enc.backend == "sentence-transformers" and enc.dim == 384
    want = enc.model.encode(TEXTS, batch_size=3, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(enc.encode(TEXTS), want, atol=1e-5)


# --- the encoder cache --------------------------------------------------------------------------------------

@pytest.fixture
def empty_cache(monkeypatch):
    """An empty encoder cache for one test; the session's cache (built models) comes back afterwards."""
    monkeypatch.setattr(registry, "_built", {})
    monkeypatch.setattr(registry, "_building", {})


@pytest.fixture
def fake_entry(monkeypatch, empty_cache):
    """A registry row that builds in a blink, counts its builds and fails on request."""
    state = SimpleNamespace(builds=0, fail=False)

    def build(name, device, batch_tokens):
        time.sleep(0.05)  # long enough for racing threads to overlap
        state.builds += 1
        if state.fail:
            raise EncoderError("the build failed")
        return object()

    monkeypatch.setitem(registry.ENCODERS, "fake", registry.EncoderEntry("fake", 3, "none", (), build))
    return state


def test_get_encoder_builds_once_per_name_device_and_batch_tokens(fake_entry):
    a = registry.get_encoder("fake", device="cpu")
    assert registry.get_encoder("fake", device="cpu") is a
    assert registry.get_encoder("fake", device="cpu", batch_tokens=64) is not a
    assert registry.get_encoder("fake", device="auto") is not a
    assert fake_entry.builds == 3
    registry.clear_encoder_cache()
    assert registry.get_encoder("fake", device="cpu") is not a
    assert fake_entry.builds == 4


def test_get_encoder_from_racing_threads_builds_once(fake_entry):
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: registry.get_encoder("fake", device="cpu"), range(8)))
    assert fake_entry.builds == 1 and all(g is got[0] for g in got)


def test_failed_build_is_not_cached(fake_entry):
    fake_entry.fail = True
    with pytest.raises(EncoderError, match="the build failed"):
        registry.get_encoder("fake", device="cpu")
    fake_entry.fail = False
    registry.get_encoder("fake", device="cpu")
    assert fake_entry.builds == 2


# --- registry and errors ----------------------------------------------------------------------------------

def test_unknown_encoder_lists_known_ones():
    with pytest.raises(EncoderError, match="known encoders: minilm-l6, mpnet-base"):
        registry.get_encoder("no-such-model")


def test_list_encoders_rows():
    rows = {r["name"]: r for r in registry.list_encoders()}
    assert {"minilm-l6", "mpnet-base", "minilm-l3", "e5-small"} <= set(rows)
    assert rows["minilm-l6"]["installed"] and rows["minilm-l6"]["dim"] == 384
    assert rows["mpnet-base"]["dim"] == 768 and rows["mpnet-base"]["extra"] == "models"


def test_missing_optional_model_names_the_extra(monkeypatch, empty_cache):
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


# --- where models are unpacked; encoders stands alone ---------------------------------------------------------

@pytest.fixture
def default_models_dir():
    previous = packages._models_dir
    yield
    packages.set_models_dir(previous)


def test_models_dir_default_follows_the_environment(monkeypatch, tmp_path, default_models_dir):
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    assert packages.models_dir() == tmp_path / "home" / "models"
    monkeypatch.delenv("VECBRIDGE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert packages.models_dir() == tmp_path / "xdg" / "vecbridge" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert packages.models_dir() == tmp_path / "user" / ".cache" / "vecbridge" / "models"


def test_set_models_dir_moves_the_unpacking(tmp_path, monkeypatch, default_models_dir):
    monkeypatch.setenv("VECBRIDGE_HOME", str(tmp_path / "home"))
    packages.set_models_dir(tmp_path / "models")
    target = packages.unpack_split_zip(_split_zip(tmp_path), "toy", marker="modules.json")
    assert target == tmp_path / "models" / "toy" and (target / "weights.bin").is_file()
    assert not (tmp_path / "home").exists()
    packages.set_models_dir(None)
    assert packages.models_dir() == tmp_path / "home" / "models"


def test_encoders_imports_nothing_of_the_other_rooms():
    for path in sorted((REPO / "encoders").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad = [n for n in names if n.split(".")[0] in ("vecbridge", "align", "attacks")]
            assert not bad, f"{path.relative_to(REPO)}:{node.lineno} imports {bad}"
