"""A small client for `vecbridge serve`: numpy arrays in and out (base64 and .npy on the wire, never JSON floats).

    from vecbridge.client import Client
    with Client("http://127.0.0.1:8000") as vb:
        queries = vb.embeddings(["where is my parcel?"], model="minilm-l6@l6-to-mpnet")   # (1, 768) float32
        old = vb.translate(new_vectors, translator="l6-to-mpnet", reverse=True)
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Callable, Sequence

import httpx
import numpy as np

NPY = "application/x-npy"


class ServiceError(Exception):
    """An error answer of the service: its HTTP status and the OpenAI-shaped error's fields."""

    def __init__(self, status: int, message: str, type: str | None = None, param: str | None = None,
                 code: str | None = None):
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


def wait_until_healthy(url: str, timeout: float = 60.0, alive: Callable[[], bool] = lambda: True,
                       interval: float = 0.2) -> bool:
    """Poll `GET {url}/health` until it answers 200 (True), or `alive()` turns false or `timeout` seconds pass
    (False): for a service that is starting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(f"{url.rstrip('/')}/health", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(interval)
    return False


class Client:
    """`base_url` of a running `vecbridge serve`; `api_key` defaults to $VECBRIDGE_API_KEY (none if unset)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 60.0):
        api_key = api_key if api_key is not None else os.environ.get("VECBRIDGE_API_KEY") or None
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def embeddings(self, texts: str | Sequence[str], model: str) -> np.ndarray:
        """(len(texts), dims) float32 rows: `texts` embedded by `model` (an encoder, or ENCODER@TRANSLATOR)."""
        single = isinstance(texts, str)
        body = {"input": texts if single else list(texts), "model": model, "encoding_format": "base64"}
        data = _check(self._http.post("/v1/embeddings", json=body)).json()["data"]
        rows = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in sorted(data,
                                                                                            key=lambda d: d["index"])]
        return np.stack(rows).astype(np.float32, copy=False)

    def translate(self, vectors, translator: str, reverse: bool = False, search: bool = False) -> np.ndarray:
        """`vectors` (rows = items) translated by the server's `translator`; bit-identical to
        `vecbridge translate` of the same float32 rows."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        params = {"translator": translator, "reverse": str(reverse).lower(), "search": str(search).lower()}
        response = _check(self._http.post("/v1/translate", params=params, content=buf.getvalue(),
                                          headers={"content-type": NPY, "accept": NPY}))
        return np.load(io.BytesIO(response.content), allow_pickle=False)

    def models(self) -> list[dict]:
        """Encoders, translators and ENCODER@TRANSLATOR pairs the server holds (see /v1/models)."""
        return _check(self._http.get("/v1/models")).json()["data"]

    def health(self) -> dict:
        """{"status": "ok" | "loading" | "failed", "detail"}; does not raise while the server is loading."""
        response = self._http.get("/health")
        if response.status_code not in (200, 503):
            _check(response)
        return response.json()


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code == 200:
        return response
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        raise ServiceError(response.status_code, response.text[:500] or response.reason_phrase) from None
    raise ServiceError(response.status_code, error.get("message", ""), error.get("type"), error.get("param"),
                       error.get("code"))
