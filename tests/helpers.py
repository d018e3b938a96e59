"""What several test modules share and import by name: the CLI runner and the checks on a failed run, the fast
geometric settings, random isometries and unit rows, small translators and stores, the topic sentences, and a
separate `vecbridge` process for the tests that need one. The shared fixtures are in conftest.py."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vecbridge import stores
from vecbridge.cli import main
from vecbridge.stores import npy
from vecbridge.stores.base import STORE_FORMAT, Batch

REPO = Path(__file__).resolve().parents[1]

# GeometricTranslator on small synthetic data in seconds: few restarts, small samples. Bagging (several refined
# anchor starts averaged on small fits) is off: it multiplies a small fit's time, and it has its own test
FAST = dict(n_clusters=48, restarts=2, qap_restarts=0, init_sample=1200, refine_iters=8, refine_sample=600,
            score_sample=600, centroid_rounds=4, n_centroids=96, bag_starts=0, verbose=False)


def fast_params_flags(**overrides) -> list[str]:
    """FAST with `overrides` as `vecbridge train` flags: ["--param", "NAME=VALUE", ...], each VALUE as JSON."""
    return [a for name, value in {**FAST, **overrides}.items() for a in ("--param", f"{name}={json.dumps(value)}")]


# -- the CLI, in this process -----------------------------------------------------------------------------------

def cli(*argv) -> tuple[int, str, str]:
    """`vecbridge ARGV` in this process: (exit status, stdout, stderr). Arguments may be paths or numbers."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's own usage errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def assert_clean_failure(rc, err, expected):
    """A failed run as a user sees it: a non-zero exit and one line on stderr, no traceback, saying `expected`."""
    assert rc != 0, err
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err, err


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` with its content hash ('dir' for folders): what a failed run must not change."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "special"
    return out


# -- the CLI in a process of its own (for a test that kills it, races it or serves from it) ----------------------

def vecbridge_process(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen) -> subprocess.Popen:
    """`python -m vecbridge ARGV` started in the repository, its output dropped unless asked for."""
    return subprocess.Popen([sys.executable, "-m", "vecbridge", *map(str, argv)], cwd=REPO, stdout=stdout,
                            stderr=stderr, **popen)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll `condition` every 10 ms until it holds, `proc` has exited or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and not condition():
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- vectors ----------------------------------------------------------------------------------------------------

def random_isometry(rng_or_seed, d_out: int, d_in: int, dtype=np.float64) -> np.ndarray:
    """A random (d_out, d_in) matrix with orthonormal columns (d_out >= d_in), from a standard normal draw of that
    shape: `x @ q.T` maps rows of d_in dims into d_out dims keeping every distance (square: a rotation)."""
    rng = np.random.default_rng(rng_or_seed)
    return np.linalg.qr(rng.standard_normal((d_out, d_in)))[0].astype(dtype)


def random_unit_rows(rng_or_seed, n: int, d: int) -> np.ndarray:
    """`n` float32 rows of `d` dims at random directions, each of unit length."""
    x = np.random.default_rng(rng_or_seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- translators and stores -------------------------------------------------------------------------------------

def procrustes_translator(root: Path, x, y, name: str = "tr", encoders=("enc-a", "enc-b")) -> Path:
    """`vecbridge train --method procrustes` from rows `x` to rows `y` (written as root/NAME-a.npy and NAME-b.npy,
    recording `encoders`): the translator's folder, root/NAME."""
    a, b = root / f"{name}-a.npy", root / f"{name}-b.npy"
    npy.write_vectors(a, x, meta={"encoder": encoders[0]})
    npy.write_vectors(b, y, meta={"encoder": encoders[1]})
    rc, _, err = cli("train", "--method", "procrustes", "--source", a, "--target", b, "--output", root / name)
    assert rc == 0, err
    return root / name


def big_file_and_translator(root: Path, rng, rows: int) -> tuple[Path, Path]:
    """A vector file of `rows` x 16 (encoder enc-a), big enough to kill a translation of it half-way, and a
    procrustes translator 16 -> 16 (a random rotation) saved without the CLI: root/big.npy and root/tr."""
    from align.paired import ProcrustesTranslator
    from vecbridge.jobs import save_translator

    big = root / "big.npy"
    npy.write_vectors(big, rng.normal(size=(rows, 16)).astype(np.float32), meta={"encoder": "enc-a"})
    x = rng.normal(size=(300, 16)).astype(np.float32)
    save_translator(ProcrustesTranslator().fit(x, x @ random_isometry(rng, 16, 16)), root / "tr")
    return big, root / "tr"


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


# the stores that tests build with each library: N rows of D_IN dims (translated to D_OUT by conftest's
# stores_world), their ids, documents and metadata
N, D_IN, D_OUT = 300, 16, 24
IDS = [f"doc-{i}" for i in range(N)]
DOCS = [f"text number {i}" for i in range(N)]
META = [{"lang": "en" if i % 2 else "fr", "n": i} for i in range(N)]


def close_to(translated, vectors, q):
    """Whether `translated` points where `vectors` mapped by the isometry `q` do (cosine over 0.99 for each row)."""
    expected = vectors @ q.T
    cos = (np.asarray(translated) * expected).sum(1) / np.linalg.norm(translated, axis=1)
    return cos.min() > 0.99


def make_chroma(path, vectors, name="src"):
    import chromadb
    from chromadb.config import Settings

    c = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
    col = c.create_collection(name, embedding_function=None, metadata={"hnsw:space": "cosine"})
    col.add(ids=IDS, embeddings=vectors, documents=DOCS, metadatas=META)
    return f"chroma:{path}#{name}"


def read_chroma(spec):
    import chromadb
    from chromadb.config import Settings

    path, name = spec[len("chroma:"):].split("#")
    c = chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False))
    col = c.get_collection(name, embedding_function=None)
    got = col.get(ids=IDS, include=["embeddings", "documents", "metadatas"])
    order = [got["ids"].index(i) for i in IDS]
    return (IDS, np.asarray(got["embeddings"])[order], [got["documents"][k] for k in order],
            [got["metadatas"][k] for k in order])


# -- texts ------------------------------------------------------------------------------------------------------

TOPICS = {"weather": ["rain", "storm", "clouds", "forecast", "wind"],
          "football": ["goal", "match", "striker", "league", "referee"],
          "cooking": ["recipe", "oven", "flour", "sauce", "kitchen"],
          "music": ["guitar", "concert", "melody", "album", "singer"]}


def sentences(n: int, seed: int) -> tuple[list[str], list[str]]:
    """`n` sentences, each on two words of one of the TOPICS in turn, and those topics (the labels)."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    labels = [names[i % 4] for i in range(n)]
    texts = [f"The {' and the '.join(rng.choice(TOPICS[t], 2, replace=False))} were the talk of the day"
             for t in labels]
    return texts, labels
