"""Hostile and careless input against the real CLI: every case fails with one line and a non-zero exit, and
leaves every file as it was (nothing created, changed or deleted), or succeeds doing exactly what was asked.

Classes: overwrite safety, damaged translators, wrong-encoder vectors, output/sidecar as one unit, stale temp
files, unreadable or malformed inputs (files, sidecars, configs, pairs, corpora, environment), bad flag values.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tests.helpers import (
    assert_clean_failure,
    big_file_and_translator,
    cli,
    fast_params_flags,
    random_isometry,
    snapshot,
    vecbridge_process,
    wait_for,
)
from vecbridge.cli import build_parser
from vecbridge.stores import npy


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Vector files of two fake encoders, paired eval files, a geometric and a procrustes translator."""
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(32, 16))
    z = centers[rng.integers(32, size=1400)] + 0.2 * rng.normal(size=(1400, 16))
    q = random_isometry(rng, 24, 16)
    y = z @ q.T + 0.01 * rng.normal(size=(1400, 24))
    data = root / "data"
    data.mkdir()
    files = {}
    for name, arr, enc in (("src", z[:1000], "enc-a"), ("tgt", y[:1000], "enc-b"), ("src_eval", z[1000:], "enc-a"),
                           ("tgt_eval", y[1000:], "enc-b"), ("other_a", z[1000:], "enc-c")):
        files[name] = data / f"{name}.npy"
        npy.write_vectors(files[name], arr.astype(np.float32), meta={"encoder": enc})
    (data / "notes.txt").write_text("my notes\n")
    assert cli("train", "--source", files["src"], "--target", files["tgt"], "--output", root / "geo",
               *fast_params_flags())[0] == 0
    assert cli("train", "--method", "procrustes", "--source", files["src"], "--target", files["tgt"],
               "--output", root / "proc")[0] == 0
    return root, files


@pytest.fixture
def w(world, tmp_path, monkeypatch):
    """A private copy of the world for one test, as the working directory."""
    root, _ = world
    shutil.copytree(root, tmp_path / "w")
    monkeypatch.chdir(tmp_path / "w")
    files = {k: Path("data") / f"{k}.npy" for k in world[1]}
    return tmp_path / "w", files


def _damage_config(path: Path, **changes):
    config = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    (path / "config.json").write_text(json.dumps(config))


def _damage_weights(path: Path, fn):
    tensors = load_file(str(path / "model.safetensors"))
    save_file(fn(tensors), str(path / "model.safetensors"))


def _nan_first(tensors):
    for v in tensors.values():
        v.reshape(-1)[0] = np.nan
        break
    return tensors


SETUPS = {
    "nan_scale": lambda r: _damage_config(r / "geo", **{"state.target_scale": float("nan")}),
    "neg_dim": lambda r: _damage_config(r / "geo", dim_source=-3),
    "bad_param": lambda r: _damage_config(r / "geo", **{"params.restarts": "many"}),
    "nan_weight": lambda r: _damage_weights(r / "geo", _nan_first),
    "wrong_shape": lambda r: _damage_weights(r / "geo", lambda t: {k: v[:5] for k, v in t.items()}),
    "utf8_config": lambda r: (r / "geo" / "config.json").write_bytes(b'{"format": "\xff\xfe"}'),
    "fifo_config": lambda r: ((r / "geo" / "config.json").unlink(), os.mkfifo(r / "geo" / "config.json")),
    "utf8_sidecar": lambda r: Path(r / "data" / "src_eval.npy.json").write_bytes(b"\xff\xfe{}"),
    "dir_sidecar": lambda r: (r / "data" / "new.npy.json").mkdir(),
    "pairs_dir": lambda r: (r / "pairs.npy").mkdir(),
    "pairs_huge": lambda r: _huge_header(r / "pairs.npy"),
    "pairs_float": lambda r: np.save(r / "pairs.npy", np.ones((4, 2))),
    "truncated": lambda r: (r / "data" / "cut.npy").write_bytes((r / "data" / "src.npy").read_bytes()[:5000]),
    "home_file": lambda r: (r / "homefile").write_text("x"),
    "lone_surrogate": lambda r: (r / "t.jsonl").write_text('{"text": "bad \\ud800 text"}\n'),
    "nan_input": lambda r: np.save(r / "data" / "nan.npy", np.full((4, 16), np.nan, dtype=np.float32)),
}


def _huge_header(path: Path):
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<i8", "fortran_order": False, "shape": (10**12, 2)})
        f.write(b"\0" * 64)


S, T, SE, TE = "data/src.npy", "data/tgt.npy", "data/src_eval.npy", "data/tgt_eval.npy"
CASES = [
    # overwrite safety: --overwrite never deletes what vecbridge did not write
    ("train_over_data_dir", None, ["train", "--source", S, "--target", T, "--output", "data", "--overwrite"],
     "contains the input"),
    ("train_over_cwd", None, ["train", "--source", S, "--target", T, "--output", ".", "--overwrite"], "must name"),
    ("train_over_other_dir", lambda r: (r / "mine").mkdir() or (r / "mine" / "a.txt").write_text("a"),
     ["train", "--source", S, "--target", T, "--output", "mine", "--overwrite"], "not a translator that vecbridge"),
    ("train_over_file", lambda r: (r / "afile").write_text("a"),
     ["train", "--source", S, "--target", T, "--output", "afile", "--overwrite"], "not a translator directory"),
    ("train_existing", None, ["train", "--source", S, "--target", T, "--output", "geo"], "already exists"),
    ("translate_over_foreign", lambda r: (r / "mine.npy").write_bytes(b"mine"),
     ["translate", "--translator", "geo", "--input", SE, "--output", "mine.npy", "--overwrite"],
     "not written by vecbridge"),
    ("translate_onto_input", None,
     ["translate", "--translator", "geo", "--input", SE, "--output", SE, "--overwrite"], "same store as --input"),
    ("translate_output_dir", lambda r: (r / "out.npy").mkdir(),
     ["translate", "--translator", "geo", "--input", SE, "--output", "out.npy", "--overwrite"], "is a directory"),
    # damaged translators
    ("nan_scale", "nan_scale", ["translate", "--translator", "geo", "--input", SE, "--output", "o.npy"], "geo"),
    ("neg_dim", "neg_dim", ["translate", "--translator", "geo", "--input", SE, "--output", "o.npy"], "geo"),
    ("bad_param", "bad_param", ["translate", "--translator", "geo", "--input", SE, "--output", "o.npy"], "geo"),
    ("nan_weight", "nan_weight", ["translate", "--translator", "geo", "--input", SE, "--output", "o.npy"], "geo"),
    ("wrong_shape", "wrong_shape", ["translate", "--translator", "geo", "--input", SE, "--output", "o.npy"], "geo"),
    ("utf8_config", "utf8_config", ["translate", "--translator", "geo", "--input", SE, "--output", "o.npy"], "geo"),
    ("fifo_config", "fifo_config", ["translate", "--translator", "geo", "--input", SE, "--output", "o.npy"], "geo"),
    # vectors of another encoder with the same dims
    ("wrong_encoder", None, ["translate", "--translator", "geo", "--input", "data/other_a.npy", "--output", "o.npy"],
     "embedded by 'enc-c'"),
    ("wrong_encoder_eval", None, ["eval", "--translator", "geo", "--source", "data/other_a.npy", "--target", TE],
     "embedded by 'enc-c'"),
    # output and sidecar as one unit; sidecars checked before any work
    ("dir_sidecar", "dir_sidecar", ["translate", "--translator", "geo", "--input", SE, "--output", "data/new.npy"],
     "sidecar"),
    ("utf8_sidecar_translate", "utf8_sidecar",
     ["translate", "--translator", "geo", "--input", SE, "--output", "o.npy"], "not UTF-8"),
    ("utf8_sidecar_train", "utf8_sidecar", ["train", "--source", SE, "--target", T, "--output", "t2"],
     "not UTF-8"),
    # unreadable or malformed inputs
    ("input_dir", None, ["translate", "--translator", "geo", "--input", "data", "--output", "o.npy"],
     "directory with no Parquet shards"),
    ("input_dev_zero", None, ["translate", "--translator", "geo", "--input", "/dev/zero", "--output", "o.npy"],
     "not a store vecbridge knows"),
    ("input_dev_zero_npy", lambda r: os.symlink("/dev/zero", r / "zero.npy"),
     ["translate", "--translator", "geo", "--input", "zero.npy", "--output", "o.npy"], "not a regular file"),
    ("input_truncated", "truncated", ["translate", "--translator", "proc", "--input", "data/cut.npy",
                                      "--output", "o.npy"], "truncated"),
    ("input_nan", "nan_input", ["translate", "--translator", "proc", "--input", "data/nan.npy", "--output", "o.npy"],
     "NaN"),
    ("eval_target_dims", None, ["eval", "--translator", "geo", "--source", SE, "--target", SE], "16 dims"),
    ("eval_one_row", None, ["eval", "--translator", "geo", "--source", SE, "--target", TE, "--pool", "1"],
     "at least 10"),
    ("pairs_dir", "pairs_dir", ["train", "--source", S, "--target", T, "--output", "t2", "--pairs", "pairs.npy"],
     "is a directory"),
    ("pairs_huge", "pairs_huge", ["train", "--source", S, "--target", T, "--output", "t2", "--pairs", "pairs.npy"],
     "--pairs"),
    ("pairs_float", "pairs_float", ["train", "--source", S, "--target", T, "--output", "t2", "--pairs",
                                    "pairs.npy"], "integer array"),
    ("lone_surrogate", "lone_surrogate", ["embed", "--encoder", "minilm-l6", "--input", "t.jsonl", "--output",
                                          "e.npy"], "surrogate"),
    ("pivot_unknown", None, ["train", "--source", S, "--target", T, "--output", "t2", "--pivot", "nope"],
     "unknown encoder 'nope'"),
    # bad flag values
    ("seed_negative", None, ["train", "--source", S, "--target", T, "--output", "t2", "--seed", "-1"],
     "integer >= 0"),
    ("time_budget_negative", None, ["train", "--method", "vec2vec", "--source", S, "--target", T, "--output", "t2",
                                    "--time-budget", "-1"], "positive number"),
    ("param_unknown", None, ["train", "--source", S, "--target", T, "--output", "t2", "--param", "nope=1"],
     "does not apply"),
    ("chunk_zero", None, ["translate", "--translator", "geo", "--input", SE, "--output", "o.npy", "--chunk", "0"],
     "positive integer"),
]


@pytest.mark.parametrize("name, setup, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_fails_in_one_line_and_changes_nothing(w, monkeypatch, name, setup, argv, expected):
    root, _ = w
    if isinstance(setup, str):
        SETUPS[setup](root)
    elif setup is not None:
        setup(root)
    before = snapshot(root)
    rc, _, err = cli(*argv)
    assert_clean_failure(rc, err, expected)
    assert snapshot(root) == before


def test_vecbridge_home_that_is_a_file(w, monkeypatch):
    root, _ = w
    SETUPS["home_file"](root)
    monkeypatch.setenv("VECBRIDGE_HOME", str(root / "homefile"))
    before = snapshot(root)
    rc, _, err = cli("data", "list")
    assert_clean_failure(rc, err, "is not a directory")
    assert snapshot(root) == before


def test_damaged_corpus_is_a_clear_error(w, monkeypatch):
    from vecbridge.corpora import store

    root, _ = w
    monkeypatch.setenv("VECBRIDGE_HOME", str(root / "home"))
    rows = [{"id": str(i), "text": f"text {i}", "genre": "news", "document": "d", "split": "eval"}
            for i in range(30)]
    monkeypatch.setitem(store.SOURCES, "brown", dataclasses.replace(store.SOURCES["brown"], parse=lambda _: iter(rows)))
    monkeypatch.setattr(store, "finish_rows", lambda rows, *a, **k: rows)
    store.build("brown", root)
    for arrow in (root / "home" / "corpora" / "brown").glob("*.arrow"):
        arrow.write_bytes(arrow.read_bytes()[:100])
    before = snapshot(root)
    rc, _, err = cli("embed", "--encoder", "minilm-l6", "--input", "builtin:brown", "--output", "e.npy")
    assert_clean_failure(rc, err, "is damaged")
    assert snapshot(root) == before


def test_overwrite_replaces_a_translator_and_only_a_translator(w):
    root, files = w
    before = (root / "geo" / "config.json").read_text()
    rc, _, err = cli("train", "--method", "procrustes", "--source", S, "--target", T, "--output", "geo", "--overwrite")
    assert rc == 0, err
    assert sorted(os.listdir(root / "geo")) == ["config.json", "model.safetensors"]
    assert json.loads((root / "geo" / "config.json").read_text())["method"] == "procrustes" != json.loads(before)[
        "method"]
    assert not [p for p in root.iterdir() if ".vecbridge-tmp-" in p.name]


def test_encoder_mismatch_can_be_allowed_explicitly(w):
    root, _ = w
    rc, _, err = cli("translate", "--translator", "geo", "--input", "data/other_a.npy", "--output", "o.npy",
                     "--allow-encoder-mismatch")
    assert rc == 0, err
    assert np.isfinite(np.load(root / "o.npy")).all()


def test_full_disk_is_reported_before_any_work(w, monkeypatch):
    root, _ = w
    usage = shutil.disk_usage(root)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    before = snapshot(root)
    rc, _, err = cli("translate", "--translator", "geo", "--input", SE, "--output", "o.npy")
    assert_clean_failure(rc, err, "not enough disk space")
    assert snapshot(root) == before


def test_write_error_midway_publishes_nothing(w, monkeypatch):
    # ENOSPC from the second block on: the output never appears and no temp file stays behind
    import errno

    from vecbridge.files import RowFile

    root, _ = w
    calls = []
    real = RowFile.write

    def failing(self, block):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, block)

    monkeypatch.setattr(RowFile, "write", failing)
    before = snapshot(root)
    rc, _, err = cli("translate", "--translator", "geo", "--input", SE, "--output", "o.npy", "--chunk", "50")
    assert_clean_failure(rc, err, "no space left")
    assert len(calls) > 1 and snapshot(root) == before


def test_sigkill_during_translate_leaves_only_a_temp_file_that_the_rerun_removes(tmp_path):
    big, tr = big_file_and_translator(tmp_path, np.random.default_rng(0), 400_000)
    proc = vecbridge_process("translate", "--translator", tr, "--input", big, "--output", tmp_path / "out.npy",
                             "--chunk", 1000)
    temps = []

    def big_temp_file():
        temps[:] = [p for p in tmp_path.iterdir() if p.name.startswith(".out.npy.vecbridge-tmp-")]
        return bool(temps) and temps[0].stat().st_size > 1_000_000

    wait_for(big_temp_file, proc)
    proc.kill()
    proc.wait()
    if (tmp_path / "out.npy").exists():
        pytest.skip("the run finished before it could be killed")
    assert temps and not (tmp_path / "out.npy.json").exists()
    assert cli("translate", "--translator", tr, "--input", big, "--output", tmp_path / "out.npy")[0] == 0
    assert np.load(tmp_path / "out.npy", mmap_mode="r").shape == (400_000, 16)
    assert not [p for p in tmp_path.iterdir() if "vecbridge-tmp" in p.name]


def test_two_concurrent_embed_runs_on_one_output_never_mix(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"alpha sentence {i} about rivers and hills\n" for i in range(600)))
    b.write_text("".join(f"beta line {i} on markets\n" for i in range(40)))
    out = tmp_path / "out.npy"
    first = vecbridge_process("embed", "--encoder", "minilm-l6", "--input", a, "--output", out, "--chunk-size", 32,
                              stderr=subprocess.PIPE, text=True)
    manifest = tmp_path / ".out.npy.partial" / "manifest.json"
    wait_for(manifest.exists, first)
    rc, _, err = cli("embed", "--encoder", "minilm-l6", "--input", b, "--output", out, "--chunk-size", "32")
    first_rc = first.wait(timeout=300)
    if first_rc == 0 and rc == 0:
        pytest.skip("the first run finished before the second started")
    assert first_rc == 0, first.stderr.read()
    assert_clean_failure(rc, err, "another vecbridge run is writing")
    meta = npy.read_sidecar(out)
    assert meta["source"] == str(a) and meta["count"] == 600 and np.load(out).shape == (600, 384)
    assert not (tmp_path / ".out.npy.partial").exists()


def test_a_damaged_resume_chunk_is_encoded_again(tmp_path):
    from vecbridge.jobs import embedding

    src = tmp_path / "in.txt"
    src.write_text("".join(f"sentence {i} on topic {i % 5}\n" for i in range(12)))
    out = tmp_path / "v.npy"

    class Stop(Exception):
        pass

    def stop(k):
        if k == 1:
            raise Stop

    with pytest.raises(Stop):
        embedding.embed("minilm-l6", str(src), out, chunk_size=4, after_chunk=stop)
    chunk = embedding.work_dir(out) / "chunk-000000.npy"
    chunk.write_bytes(chunk.read_bytes()[:300])
    encoded = []
    embedding.embed("minilm-l6", str(src), out, chunk_size=4, after_chunk=encoded.append)
    assert encoded == [0, 2]
    full = tmp_path / "full.npy"
    embedding.embed("minilm-l6", str(src), full, chunk_size=4)
    assert out.read_bytes() == full.read_bytes()


def _all_parsers(parser, prefix=()):
    yield prefix, parser
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, (*prefix, name))


def test_every_command_and_flag_has_help():
    for path, parser in _all_parsers(build_parser()):
        assert parser.description or not path, f"`vecbridge {' '.join(path)}` has no description"
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and len(action.help) > 10, (path, action.option_strings)
