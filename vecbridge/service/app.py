"""The FastAPI application: OpenAI-compatible /v1/embeddings, /v1/translate (JSON or .npy), /v1/models, /health,
/metrics and the docs, over the library layer (`vecbridge.jobs`) through the micro-batching queue."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydantic_core
from fastapi import Depends, FastAPI, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from numpy.lib import format as npy_format
from pydantic import ValidationError
from starlette.responses import HTMLResponse, Response

from align.vectors import check_vectors
from vecbridge import __version__
from vecbridge.errors import ROOM_ERRORS
from vecbridge.service.batching import MicroBatcher, QueueFull
from vecbridge.service.errors import JSON, ApiError, install_handlers, validation_error
from vecbridge.service.gate import Gate
from vecbridge.service.metrics import Metrics
from vecbridge.service.models import Models
from vecbridge.service.schemas import (
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    Health,
    ModelList,
    TranslateRequest,
    TranslateResponse,
)
from vecbridge.service.work import BatchRunner, EmbedJob, TranslateJob

NPY = "application/x-npy"
DEFAULTS = {"max_batch": 512, "max_inputs": 2048, "max_body_mb": 4.0, "max_queue": 256, "workers": 1}
log = logging.getLogger("vecbridge.service")
# Documents the bearer scheme at /docs; the key itself is checked by `Gate`, before any body is read.
bearer = HTTPBearer(auto_error=False, description="the server's API key, when it was started with one")
ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 422, 429, 503)}


def _swagger_static() -> Path | None:
    """Swagger UI's files from the swagger-ui-py package, so /docs works without reaching a CDN."""
    spec = importlib.util.find_spec("swagger_ui")
    folder = Path(next(iter(spec.submodule_search_locations or [])), "static") if spec else None
    return folder if folder and (folder / "swagger-ui-bundle.js").is_file() else None


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
    models = Models(list(encoders), dict(translators or {}), device=device)
    metrics = Metrics()
    batcher = MicroBatcher(BatchRunner(metrics), max_batch=max_batch, max_queue=max_queue, workers=workers,
                           on_batch=lambda key, n, rows: metrics.batch_requests.labels(key[0]).observe(n),
                           on_depth=metrics.queue_depth.set)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()

        def load() -> None:
            models.load()
            if models.status == "failed":
                log.error(pydantic_core.to_json({"event": "load_failed", "error": models.error}).decode())
                hook: Callable[[], None] | None = getattr(app.state, "on_load_failure", None)
                if hook is not None:
                    hook()
            else:
                log.info('{"event": "ready"}')

        threading.Thread(target=load, name="vecbridge-load", daemon=True).start()
        yield
        await batcher.stop()

    app = FastAPI(title="vecbridge", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Embed texts (OpenAI-compatible), translate vectors between embedding spaces, and "
                              "embed-then-translate queries into an older index's space (`ENCODER@TRANSLATOR`).")
    app.state.models, app.state.metrics, app.state.batcher = models, metrics, batcher
    app.state.on_load_failure = None
    install_handlers(app)
    app.add_middleware(Gate, metrics=metrics, api_key=api_key, max_body_bytes=int(max_body_mb * 2**20))

    async def run(key, payload, rows: int) -> bytes:
        try:
            return await batcher.submit(key, payload, rows)
        except QueueFull as e:
            metrics.rejected.labels("queue_full").inc()
            raise ApiError(429, f"{e}; retry after a second, or send fewer requests at once", code="queue_full",
                           headers={"Retry-After": "1"}) from None

    @app.post("/v1/embeddings", response_model=EmbeddingResponse, responses=ERRORS, tags=["embeddings"],
              dependencies=[Depends(bearer)])
    async def embeddings(body: EmbeddingRequest) -> Response:
        """Embed texts with an encoder, or with ENCODER@TRANSLATOR: embed, then translate into the space of the
        translator's other encoder (a new model's query landing in an old index's space)."""
        route = models.route(body.model)
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts:
            raise ApiError(400, "input is empty; send a text or a non-empty list of texts", param="input",
                           code="empty_input")
        if len(texts) > max_inputs:
            raise ApiError(413, f"input has {len(texts)} texts; this server takes at most {max_inputs} per request "
                                "(--max-inputs): split them over several requests", param="input",
                           code="too_many_inputs")
        empty = next((i for i, t in enumerate(texts) if not t.strip()), None)
        if empty is not None:
            where = "input" if isinstance(body.input, str) else f"input[{empty}]"
            raise ApiError(400, f"{where} is an empty string; every input needs some text", param="input",
                           code="empty_input")
        if body.dimensions is not None and body.dimensions != route.dims:
            raise ApiError(400, f"model {body.model!r} makes {route.dims}-dim vectors and cannot shorten them; "
                                f"leave out `dimensions` or give {route.dims}", param="dimensions",
                           code="unsupported_dimensions")
        content = await run(("embed", route.encoder.name), EmbedJob(texts, route, body.model, body.encoding_format),
                            len(texts))
        return Response(content, media_type=JSON)

    translate_body = {
        "required": True,
        "content": {"application/json": {"schema": TranslateRequest.model_json_schema()},
                    NPY: {"schema": {"type": "string", "format": "binary",
                                     "description": "a float 2-D .npy array (numpy.save); translator, reverse "
                                                    "and search are then query parameters"}}}}
    translate_responses = {200: {"content": {"application/json": {"schema": TranslateResponse.model_json_schema()},
                                             NPY: {"schema": {"type": "string", "format": "binary"}}},
                                 "description": "the translated rows: JSON, or .npy when the request was .npy "
                                                "or asked for it with `Accept: application/x-npy`"}}

    @app.post("/v1/translate", responses={**ERRORS, 415: {"model": ErrorResponse}, **translate_responses},
              openapi_extra={"requestBody": translate_body}, tags=["translate"], dependencies=[Depends(bearer)])
    async def translate(request: Request,
                        translator: str | None = Query(None, description=".npy bodies: the translator's name"),
                        reverse: bool = Query(False, description=".npy bodies: target space -> source space"),
                        search: bool = Query(False, description=".npy bodies: search output (geometric only)"),
                        ) -> Response:
        """Translate vectors into the other space of a loaded translator; results are bit-identical (float32)
        to `vecbridge translate` of the same vectors."""
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        as_npy = content_type == NPY or NPY in request.headers.get("accept", "")
        body = await request.body()
        if content_type == NPY:
            if translator is None:
                raise ApiError(400, "a .npy body needs the translator as a query parameter: "
                                    "/v1/translate?translator=NAME", param="translator", code="missing_translator")
            vectors, name = _read_npy(body), translator
        elif content_type == "application/json":
            try:
                req = TranslateRequest.model_validate_json(body)
            except ValidationError as e:
                raise validation_error(e.errors()) from None
            vectors, name, reverse, search = _rows(req.vectors), req.translator, req.reverse, req.search
        else:
            raise ApiError(415, f"unsupported Content-Type {content_type!r}; send application/json or {NPY}",
                           code="unsupported_media_type")
        loaded = models.translator(name)
        dim_in, _, encoder_in = loaded.side(reverse)
        if vectors.ndim == 2 and vectors.shape[1] != dim_in:
            side = f"{'target' if reverse else 'source'} space ({encoder_in or 'encoder not recorded'})"
            hint = "; set reverse for vectors of the other space" if vectors.shape[1] == loaded.side(not reverse)[0] \
                else ""
            raise ApiError(400, f"vectors have {vectors.shape[1]} dims but translator {name!r} expects {dim_in} "
                                f"(its {side}){hint}", param="vectors", code="dims_mismatch")
        try:
            vectors = check_vectors(vectors, "vectors", dim_in)
            if search:
                loaded.translator.check_search()
        except ROOM_ERRORS as e:
            raise ApiError(400, str(e), param="vectors" if not search else "search", code="invalid_input") from None
        content = await run(("translate", name, reverse, search), TranslateJob(vectors, loaded, reverse, search,
                                                                              as_npy), len(vectors))
        if as_npy:
            return Response(content, media_type=NPY,
                            headers={"X-Vecbridge-Direction": "reverse" if reverse else "forward"})
        return Response(content, media_type=JSON)

    @app.get("/v1/models", response_model=ModelList, responses=ERRORS, tags=["models"],
             dependencies=[Depends(bearer)])
    async def list_models() -> Response:
        """Encoders (dims), translators (dims, source / target encoder, method, label-free confidence) and the
        ENCODER@TRANSLATOR pairs usable as `model`."""
        return Response(pydantic_core.to_json({"object": "list", "data": models.cards()}), media_type=JSON)

    @app.get("/health", response_model=Health, responses={503: {"model": Health}}, tags=["operations"])
    async def health() -> Response:
        """200 once every model is loaded; 503 while loading, or if loading failed."""
        body = {"status": models.status, "detail": models.error}
        return Response(pydantic_core.to_json(body), status_code=200 if models.status == "ok" else 503,
                        media_type=JSON)

    @app.get("/metrics", tags=["operations"], responses={401: {"model": ErrorResponse}},
             response_class=Response, dependencies=[Depends(bearer)])
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latency, queue depth, batch sizes, vectors embedded and translated."""
        return Response(await asyncio.to_thread(metrics.render), media_type=metrics.content_type)

    static = _swagger_static()
    if static is not None:
        app.mount("/docs/static", StaticFiles(directory=static), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        assets = {} if static is None else {"swagger_js_url": "/docs/static/swagger-ui-bundle.js",
                                            "swagger_css_url": "/docs/static/swagger-ui.css",
                                            "swagger_favicon_url": "/docs/static/favicon-32x32.png"}
        return get_swagger_ui_html(openapi_url="/openapi.json", title="vecbridge API", **assets)

    return app


def _read_npy(body: bytes) -> np.ndarray:
    """A float 2-D array from .npy bytes; the header is checked against the body's length before any array is
    made, so a header that claims a huge shape costs nothing."""
    buf = io.BytesIO(body)
    try:
        version = npy_format.read_magic(buf)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format version {version} (numpy.save writes 1.0)")
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = read_header(buf, max_header_size=2**16)
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ApiError(400, f"the body is not a readable .npy array ({reason}); send a float 2-D array written with "
                            "numpy.save", param="body", code="invalid_npy") from None
    if len(shape) != 2 or dtype.kind != "f":
        raise ApiError(400, f"the .npy body holds {dtype} {shape}; send a float 2-D array (rows = vectors)",
                       param="body", code="invalid_npy")
    if shape[0] == 0:
        raise ApiError(400, "the .npy body holds no vectors", param="body", code="empty_input")
    data = len(body) - buf.tell()
    if data != shape[0] * shape[1] * dtype.itemsize:
        raise ApiError(400, f"the .npy body is damaged: its header says {shape} {dtype} but {data} bytes of data "
                            "follow", param="body", code="invalid_npy")
    arr = np.frombuffer(body, dtype=dtype, offset=buf.tell()).reshape(shape, order="F" if fortran else "C")
    return arr


def _rows(vectors: list[list[float]]) -> np.ndarray:
    if not vectors:
        raise ApiError(400, "vectors is empty; send at least one row", param="vectors", code="empty_input")
    lengths = {len(row) for row in vectors}
    if len(lengths) > 1:
        raise ApiError(400, f"the rows of vectors have different lengths ({', '.join(map(str, sorted(lengths)))})",
                       param="vectors", code="ragged_vectors")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, which the vector check refuses
        return np.array(vectors, dtype=np.float32)
