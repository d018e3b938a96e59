"""A Chroma *server* as a store (`chroma+http://HOST:PORT#COLLECTION`): the real `chroma run` server started on a
free loopback port, written and read through the real CLI; the swap happens on the server; bad addresses fail in
one line."""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pytest

from tests.helpers import DOCS, IDS, META, assert_clean_failure, cli, close_to, free_port, make_chroma, read_chroma

CHROMA = shutil.which("chroma", path=f"{__import__('sys').prefix}/bin") or shutil.which("chroma")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if CHROMA is None:
        pytest.skip("the chroma command (chromadb's server) is not installed")
    d = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    proc = subprocess.Popen([CHROMA, "run", "--path", str(d / "data"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import chromadb
    from chromadb.config import Settings

    deadline = time.monotonic() + 60
    while True:
        try:
            client = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
            client.heartbeat()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("the chroma server did not start")
            time.sleep(0.3)
    yield f"chroma+http://127.0.0.1:{port}", client
    proc.terminate()
    proc.wait(timeout=30)


def test_translate_to_and_from_a_server(stores_world, server, tmp_path):
    tr, q, v = stores_world
    url, client = server
    src = make_chroma(tmp_path / "local", v)
    dest = f"{url}#migrated"
    rc, out, err = cli("translate", "--translator", tr, "--input", src, "--output", dest, "--json")
    assert rc == 0, err
    col = client.get_collection("migrated", embedding_function=None)
    got = col.get(ids=IDS, include=["embeddings", "documents", "metadatas"])
    order = [got["ids"].index(i) for i in IDS]
    assert close_to(np.asarray(got["embeddings"])[order], v, q)
    assert [got["documents"][k] for k in order] == DOCS and [got["metadatas"][k] for k in order] == META
    assert not [c for c in client.list_collections() if "tmp" in getattr(c, "name", c)]  # swapped on the server
    rc, out, err = cli("stores", "inspect", dest, "--json")
    assert rc == 0 and '"encoder": "enc-b"' in out, err
    # and back from the server into a local store, the server's collection untouched
    before = col.get(include=["embeddings"])
    rc, _, err = cli("translate", "--translator", tr, "--input", dest, "--output", f"chroma:{tmp_path}/back#docs",
                     "--reverse")
    assert rc == 0, err
    back = read_chroma(f"chroma:{tmp_path}/back#docs")
    assert np.abs(back[1] - v).max() < 1e-3 and back[2] == DOCS
    after = col.get(include=["embeddings"])
    assert after["ids"] == before["ids"] and np.array_equal(after["embeddings"], before["embeddings"])
    # an existing collection needs --overwrite, which replaces it on the server
    assert_clean_failure(*cli("translate", "--translator", tr, "--input", src, "--output", dest)[::2],
                         "already exists")
    rc, _, err = cli("translate", "--translator", tr, "--input", src, "--output", dest, "--overwrite")
    assert rc == 0, err
    assert sorted(getattr(c, "name", c) for c in client.list_collections()) == ["migrated"]


@pytest.mark.parametrize("spec, expected", [
    ("chroma+http://127.0.0.1:1#x", "no chroma server answers at http://127.0.0.1:1"),
    ("chroma+http:/nohost#x", "write chroma+http://HOST:PORT#COLLECTION"),
    ("chroma+http://127.0.0.1:8000", "the collection is missing"),
    ("chroma+http://127.0.0.1:99999#x", "write chroma+http://HOST:PORT#COLLECTION"),
    ("qdrant+http://127.0.0.1:6333#x", "not supported yet"),
])
def test_bad_server_specs(spec, expected):
    assert_clean_failure(*cli("stores", "inspect", spec)[::2], expected)


def test_server_refuses_resume_and_a_missing_collection(stores_world, server, tmp_path):
    tr, _, v = stores_world
    url, _ = server
    src = make_chroma(tmp_path / "local", v)
    assert_clean_failure(*cli("translate", "--translator", tr, "--input", src, "--output", f"{url}#r",
                              "--resume")[::2], "--resume needs a local store")
    assert_clean_failure(*cli("stores", "inspect", f"{url}#nope")[::2], "collection 'nope' does not exist")


def test_ray_workers_read_a_server_by_row_ranges(stores_world, server, tmp_path):
    """`--engine ray` from a Chroma server: each worker asks the server for its own rows (here 4 a batch); the
    store written is the one the local engine writes, byte for byte. A local database is refused in one line."""
    tr, _, v = stores_world
    url, _ = server
    src = make_chroma(tmp_path / "local", v)
    rc, _, err = cli("translate", "--translator", tr, "--input", src, "--output", f"{url}#ray-source")
    assert rc == 0, err
    for engine in ("local", "ray"):
        rc, _, err = cli("translate", "--translator", tr, "--input", f"{url}#ray-source", "--output",
                         tmp_path / f"{engine}.parquet", "--chunk", 4, "--reverse", "--engine", engine)
        assert rc == 0, err
    assert (tmp_path / "ray.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()
    rc, _, err = cli("translate", "--translator", tr, "--input", src, "--output", tmp_path / "x.npy", "--engine",
                     "ray")
    assert_clean_failure(rc, err, "a local Chroma database opens in one process at a time")
