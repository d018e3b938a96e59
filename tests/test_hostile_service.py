"""The service under hostile input (issue 35): a `.npy` body whose header claims negative dims is a 400 with no
traceback in the log, and `serve` on a port that is taken refuses in one line."""

from __future__ import annotations

import io
import socket

import httpx
import numpy as np
import pytest
from numpy.lib import format as npy_format

from tests.helpers import (
    assert_clean_failure,
    cli,
    free_port,
    procrustes_translator,
    random_isometry,
    random_unit_rows,
    vecbridge_process,
)
from vecbridge.client import wait_until_healthy


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    x = random_unit_rows(0, 300, 8)
    return procrustes_translator(root, x, x @ random_isometry(1, 8, 8, np.float32))


def _npy_header(shape, data: bytes) -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def test_npy_body_with_negative_dims_is_a_400_and_no_traceback(translator, tmp_path):
    port, log = free_port(), tmp_path / "server.log"
    with open(log, "wb") as err:
        proc = vecbridge_process("serve", "--port", port, "--translator", f"tr={translator}", stderr=err)
    try:
        assert wait_until_healthy(f"http://127.0.0.1:{port}", 120, alive=lambda: proc.poll() is None), log.read_text()
        for shape in [(-2, -4), (-1, 8), (4, -2), (-4, -8)]:  # one server for every shape
            r = httpx.post(f"http://127.0.0.1:{port}/v1/translate?translator=tr",
                           content=_npy_header(shape, b"\0" * 128), headers={"content-type": "application/x-npy"})
            assert r.status_code == 400, (shape, r.text)
            assert r.json()["error"]["param"] == "body"
        ok = httpx.post(f"http://127.0.0.1:{port}/v1/translate?translator=tr",
                        content=_npy_header((2, 8), np.ones((2, 8), "<f4").tobytes()),
                        headers={"content-type": "application/x-npy"})
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
    assert "Traceback" not in log.read_text() and '"level": "error"' not in log.read_text()


def test_serve_on_a_taken_port_refuses_in_one_line(translator):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, out, err = cli("serve", "--port", port, "--translator", f"tr={translator}")
    assert_clean_failure(rc, err, f"could not listen on 127.0.0.1:{port}")
    assert "in use" in err and not out
