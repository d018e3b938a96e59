"""The ASGI layer every request passes first: API key, body-size cap, metrics and one JSON access-log line. It runs
before any body is read, so a request without the key or with an oversized body costs the server nothing."""

from __future__ import annotations

import json
import logging
import time

from starlette.exceptions import HTTPException

from vecbridge.service.errors import JSON, error_body
from vecbridge.service.metrics import Metrics, path_label
from vecbridge.service.security import authorized

access_log = logging.getLogger("vecbridge.access")


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the cap (FastAPI passes HTTPException through)."""


def protected(path: str) -> bool:
    """Paths that need the API key: the API and the metrics; /health and the docs stay open."""
    return path.startswith("/v1/") or path == "/metrics"


class Gate:
    def __init__(self, app, *, metrics: Metrics, api_key: str | None, max_body_bytes: int):
        self.app, self.metrics, self.api_key, self.max_body_bytes = app, metrics, api_key, max_body_bytes
        self.limit_text = f"{max_body_bytes / 2**20:g} MB"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path, method = scope["path"], scope["method"]
        label = path_label(path)
        state = {"status": 500, "bytes_out": 0, "bytes_in": 0, "started": False}

        async def send_counted(message):
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
            elif message["type"] == "http.response.body":
                state["bytes_out"] += len(message.get("body", b""))
            await send(message)

        async def receive_capped():  # a body streamed without Content-Length is cut off once it passes the cap
            message = await receive()
            if message["type"] == "http.request":
                state["bytes_in"] += len(message.get("body", b""))
                if state["bytes_in"] > self.max_body_bytes:
                    raise BodyTooLarge(413, self._too_large())
            return message

        self.metrics.in_flight.labels(label).inc()
        try:
            refusal = self._refusal(scope, path)
            if refusal is not None:
                status, message, code, headers = refusal
                self.metrics.rejected.labels(code).inc()
                await _respond(send_counted, status, message, code, headers)
            else:
                try:
                    await self.app(scope, receive_capped, send_counted)
                except BodyTooLarge as e:  # raised outside a route that would have answered it
                    if state["started"]:
                        raise
                    await _respond(send_counted, 413, e.detail, "request_too_large")
        finally:
            seconds = time.perf_counter() - start
            self.metrics.in_flight.labels(label).dec()
            self.metrics.requests.labels(method, label, str(state["status"])).inc()
            self.metrics.latency.labels(label).observe(seconds)
            client = scope.get("client")
            access_log.info(json.dumps({
                "ts": round(time.time(), 3), "event": "request", "method": method, "path": path,
                "status": state["status"], "ms": round(seconds * 1000, 2), "bytes_in": state["bytes_in"],
                "bytes_out": state["bytes_out"], "client": client[0] if client else None}))

    def _too_large(self) -> str:
        return (f"the request body is larger than the {self.limit_text} limit; send fewer inputs per request, or "
                "start the server with a larger --max-body-mb")

    def _refusal(self, scope, path: str) -> tuple[int, str, str, dict | None] | None:
        headers = dict(scope["headers"])
        if self.api_key is not None and protected(path) and not authorized(headers.get(b"authorization"),
                                                                           self.api_key):
            return (401, "missing or wrong API key: send the header `Authorization: Bearer <key>`",
                    "invalid_api_key", {"WWW-Authenticate": "Bearer"})
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body_bytes
            except ValueError:
                return 400, "the Content-Length header is not a number", "invalid_content_length", None
            if too_big:
                return 413, self._too_large(), "request_too_large", None
        return None


async def _respond(send, status: int, message: str, code: str, headers: dict | None = None) -> None:
    body = error_body(status, message, code=code)
    raw = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
