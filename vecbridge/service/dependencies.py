"""What the routes share: the bearer scheme shown at /docs, the app's registry and metrics as FastAPI dependencies,
and `submit`, the one way into the micro-batching queue."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from vecbridge.service.batching import QueueFull
from vecbridge.service.errors import ApiError
from vecbridge.service.metrics import Metrics
from vecbridge.service.registry import Registry

# Documents the bearer scheme at /docs; the key itself is checked by `Gate`, before any body is read.
bearer = HTTPBearer(auto_error=False, description="the server's API key, when it was started with one")


def get_registry(request: Request) -> Registry:
    return request.app.state.models


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


RegistryDep = Annotated[Registry, Depends(get_registry)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def submit(request: Request, key: Hashable, payload: Any, rows: int) -> bytes:
    """The response bytes of one request's job, run in a batch with others of the same `key`; a full queue is
    answered 429 with Retry-After."""
    try:
        return await request.app.state.batcher.submit(key, payload, rows)
    except QueueFull as e:
        request.app.state.metrics.rejected.labels("queue_full").inc()
        raise ApiError(429, f"{e}; retry after a second, or send fewer requests at once", code="queue_full",
                       headers={"Retry-After": "1"}) from None
