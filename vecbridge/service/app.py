"""`create_app`: the FastAPI application, assembled from the registry, the micro-batching queue, the `Gate`
middleware and the routers of `vecbridge.service.routes`."""

from __future__ import annotations

import contextlib
import os
import threading

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from vecbridge import __version__
from vecbridge.service.batching import MicroBatcher
from vecbridge.service.errors import install_handlers
from vecbridge.service.gate import Gate
from vecbridge.service.metrics import Metrics
from vecbridge.service.registry import Registry
from vecbridge.service.routes import ROUTERS
from vecbridge.service.routes.operations import DOCS_STATIC, swagger_static
from vecbridge.service.work import BatchRunner

DEFAULTS = {"max_batch": 512, "max_inputs": 2048, "max_body_mb": 4.0, "max_queue": 256, "workers": 1}
DESCRIPTION = ("Embed texts (OpenAI-compatible), translate vectors between embedding spaces, and embed-then-translate "
               "queries into an older index's space (`ENCODER@TRANSLATOR`).")


def load_encoders(app: FastAPI) -> None:
    """Build the registry's encoders (in a background thread); when that fails, call `app.state.on_load_failure`."""
    app.state.models.load()
    if app.state.models.status == "failed" and app.state.on_load_failure is not None:
        app.state.on_load_failure()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    """Start the batch workers and the encoders' loading; stop the workers once the server has drained."""
    app.state.batcher.start()
    threading.Thread(target=load_encoders, args=(app,), name="vecbridge-load", daemon=True).start()
    yield
    await app.state.batcher.stop()


def create_app(encoders: list[str] = (), translators: dict[str, str | os.PathLike] | None = None, *,
               api_key: str | None = None, max_batch: int = DEFAULTS["max_batch"],
               max_inputs: int = DEFAULTS["max_inputs"], max_body_mb: float = DEFAULTS["max_body_mb"],
               max_queue: int = DEFAULTS["max_queue"], workers: int = DEFAULTS["workers"],
               device: str = "auto") -> FastAPI:
    """The service for `encoders` (names) and `translators` (name -> directory). Translators are loaded here (a
    bad one raises UserError); encoders are built in the background once the server runs (/health: 503 until
    then). `app.state.on_load_failure`, if set, is called when they cannot be built."""
    for name, value in (("max_batch", max_batch), ("max_inputs", max_inputs), ("max_queue", max_queue),
                        ("workers", workers)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    registry = Registry(list(encoders), dict(translators or {}), device=device)
    metrics = Metrics()
    batcher = MicroBatcher(BatchRunner(metrics), max_batch=max_batch, max_queue=max_queue, workers=workers,
                           on_batch=lambda key, n, rows: metrics.batch_requests.labels(key[0]).observe(n),
                           on_depth=metrics.queue_depth.set)
    app = FastAPI(title="vecbridge", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    # `models` is the name `vecbridge serve` reads the registry's load status under.
    app.state.models, app.state.metrics, app.state.batcher = registry, metrics, batcher
    app.state.max_inputs, app.state.on_load_failure = max_inputs, None
    install_handlers(app)
    app.add_middleware(Gate, metrics=metrics, api_key=api_key, max_body_bytes=int(max_body_mb * 2**20))
    for router in ROUTERS:
        app.include_router(router)
    if (static := swagger_static()) is not None:
        app.mount(DOCS_STATIC, StaticFiles(directory=static), name="docs-static")
    return app
