"""`vecbridge embed`: output format and sidecar, resume after an interruption, and every bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, cli, wait_for
from vecbridge.jobs import embedding as embed
from vecbridge.stores import npy

TEXTS = [f"Sentence number {i} talks about {topic}." for i, topic in
         enumerate(["cats", "stock markets", "rain", "football", "bread", "jazz", "volcanoes", "tax law",
                    "knitting", "satellites", "tea", "chess", "rivers"])]


class Interrupt(Exception):
    pass


def write_txt(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return path


def test_embed_writes_normalised_rows_in_order_with_sidecar(tmp_path, minilm):
    src = write_txt(tmp_path / "in.txt", TEXTS + ["word " * 400])
    out = tmp_path / "vecs.npy"
    rc, stdout, _ = cli("embed", "--encoder", "minilm-l6", "--input", src, "--output", out, "--chunk-size", 4)
    assert rc == 0 and "wrote 14 x 384" in stdout
    vecs = np.load(out, allow_pickle=False)
    assert vecs.dtype == np.float32 and vecs.shape == (14, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    direct = minilm.encode(TEXTS)
    assert np.sum(vecs[:13] * direct, axis=1).min() >= 0.9999
    meta = npy.read_sidecar(out)
    assert meta["encoder"] == "minilm-l6" and meta["dim"] == 384 and meta["count"] == 14
    assert meta["source"] == str(src) and meta["normalised"] is True and meta["truncated"] == 1
    assert {"numpy", "torch", "sentence-transformers"} <= set(meta["packages"]) and meta["created"]
    assert not embed.work_dir(out).exists()


def test_limit(tmp_path):
    out = tmp_path / "v.npy"
    meta = embed.embed("minilm-l6", str(write_txt(tmp_path / "in.txt", TEXTS)), out, limit=5)
    assert meta["count"] == 5 and np.load(out).shape == (5, 384)


def test_resume_after_interruption_is_byte_identical(tmp_path):
    src = str(write_txt(tmp_path / "in.txt", TEXTS))
    full = tmp_path / "full.npy"
    embed.embed("minilm-l6", src, full, chunk_size=3)

    out = tmp_path / "resumed.npy"

    def stop_after_second(k):
        if k == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        embed.embed("minilm-l6", src, out, chunk_size=3, after_chunk=stop_after_second)
    assert not out.exists() and not npy.sidecar_path(out).exists()
    wd = embed.work_dir(out)
    assert sorted(p.name for p in wd.glob("chunk-*.npy")) == ["chunk-000000.npy", "chunk-000001.npy"]

    encoded = []
    embed.embed("minilm-l6", src, out, chunk_size=3, after_chunk=encoded.append)
    assert encoded == [2, 3, 4], "finished chunks must not be encoded again"
    assert out.read_bytes() == full.read_bytes()
    assert not wd.exists()


def test_changed_input_invalidates_unfinished_work(tmp_path):
    out = tmp_path / "v.npy"

    def stop(k):
        raise Interrupt

    with pytest.raises(Interrupt):
        embed.embed("minilm-l6", str(write_txt(tmp_path / "a.txt", TEXTS)), out, chunk_size=4,
                            after_chunk=stop)
    other = list(reversed(TEXTS))
    logs = []
    embed.embed("minilm-l6", str(write_txt(tmp_path / "b.txt", other)), out, chunk_size=4,
                        log=logs.append)
    assert logs and "discarding" in logs[0]
    fresh = tmp_path / "fresh.npy"
    embed.embed("minilm-l6", str(tmp_path / "b.txt"), fresh, chunk_size=4)
    assert out.read_bytes() == fresh.read_bytes()


@pytest.mark.slow
def test_killed_process_resumes(tmp_path):
    """A real SIGKILL after the first finished chunk; the rerun completes to the same bytes.

    Slow (a fresh interpreter loads torch); `test_resume_after_interruption_is_byte_identical` covers the
    same path deterministically in-process.
    """
    src = str(write_txt(tmp_path / "in.txt", [f"{t} Variant {j}." for j in range(30) for t in TEXTS]))
    out = tmp_path / "killed.npy"
    code = ("import sys; from vecbridge.jobs import embed\n"
            "embed('minilm-l6', sys.argv[1], sys.argv[2], chunk_size=16, progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, src, str(out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = embed.work_dir(out) / "chunk-000000.npy.json"
    wait_for(first.exists, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if out.exists():
        pytest.skip("the run finished before it could be killed")
    assert first.exists() and not npy.sidecar_path(out).exists()
    embed.embed("minilm-l6", src, out, chunk_size=16)
    full = tmp_path / "full.npy"
    embed.embed("minilm-l6", src, full, chunk_size=16)
    assert out.read_bytes() == full.read_bytes()


def test_overwrite_replaces_only_vecbridge_outputs(tmp_path):
    src = str(write_txt(tmp_path / "in.txt", TEXTS[:3]))
    out = tmp_path / "v.npy"
    argv = ["embed", "--encoder", "minilm-l6", "--input", src, "--output", str(out)]
    assert cli(*argv)[0] == 0
    first = out.read_bytes()
    rc, _, err = cli(*argv)
    assert rc == 2 and "already exists" in err and "--overwrite" in err and out.read_bytes() == first
    write_txt(tmp_path / "in.txt", TEXTS[3:7])
    assert cli(*argv, "--overwrite")[0] == 0
    assert np.load(out).shape == (4, 384) and npy.read_sidecar(out)["count"] == 4
    # a file vecbridge did not write (no sidecar of its own) is never replaced, --overwrite or not
    mine = tmp_path / "mine.npy"
    mine.write_bytes(b"keep me")
    rc, _, err = cli(*argv[:-1], str(mine), "--overwrite")
    assert rc == 2 and "not written by vecbridge" in err and mine.read_bytes() == b"keep me"


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist"),
    ("empty", "holds no texts"),
    ("bad_jsonl", "line 2 is not valid JSON"),
    ("unknown_encoder", "unknown encoder 'nope'; known encoders: minilm-l6"),
    ("unknown_corpus", "nope"),
    ("no_dir", "does not exist; create it first"),
    ("not_npy", "is not a store vecbridge knows"),
    ("bad_limit", "--limit: expected a positive integer"),
    ("is_dir", "is a directory"),
])
def test_bad_input_is_one_line_error_and_no_output(tmp_path, case, expected):
    good = write_txt(tmp_path / "good.txt", TEXTS[:2])
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": oops}\n')
    (tmp_path / "adir.npy").mkdir()
    out = tmp_path / "out.npy"
    args = {"missing": ["--input", str(tmp_path / "nope.txt")],
            "empty": ["--input", str(tmp_path / "empty.txt")],
            "bad_jsonl": ["--input", str(tmp_path / "bad.jsonl")],
            "unknown_encoder": ["--input", str(good), "--encoder", "nope"],
            "unknown_corpus": ["--input", "builtin:nope"],
            "no_dir": ["--input", str(good), "--output", str(tmp_path / "no" / "out.npy")],
            "not_npy": ["--input", str(good), "--output", str(tmp_path / "out.txt")],
            "bad_limit": ["--input", str(good), "--limit", "0"],
            "is_dir": ["--input", str(good), "--output", str(tmp_path / "adir.npy"), "--overwrite"]}[case]
    argv = ["embed", "--encoder", "minilm-l6", "--output", str(out), *args]
    rc, _, err = cli(*argv)
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err and expected in err, err
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["adir.npy", "bad.jsonl", "empty.txt", "good.txt"], leftovers


def test_encoders_command():
    rc, out, _ = cli("encoders", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rc == 0 and rows["minilm-l6"]["dim"] == 384 and rows["minilm-l6"]["installed"] is True
    rc, out, _ = cli("encoders")
    assert rc == 0 and out.splitlines()[0].split() == ["name", "dim", "backend", "installed"]
    assert any(line.startswith("mpnet-base") and "768" in line for line in out.splitlines())
