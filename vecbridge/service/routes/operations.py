"""What the server holds and how it is doing: GET /v1/models, /health, /metrics (Prometheus) and the Swagger UI
at /docs, served from the swagger-ui-py package's files when it is installed."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from pathlib import Path

import pydantic_core
from fastapi import APIRouter, Depends
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, Response

from vecbridge.service.dependencies import MetricsDep, RegistryDep, bearer
from vecbridge.service.errors import JSON
from vecbridge.service.schemas import ERROR_RESPONSES, ErrorResponse, Health, ModelList

DOCS_STATIC = "/docs/static"
router = APIRouter()


@functools.cache
def swagger_static() -> Path | None:
    """Swagger UI's files from the swagger-ui-py package, so /docs works without reaching a CDN."""
    spec = importlib.util.find_spec("swagger_ui")
    folder = Path(next(iter(spec.submodule_search_locations or [])), "static") if spec else None
    return folder if folder and (folder / "swagger-ui-bundle.js").is_file() else None


@router.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES, tags=["models"],
            dependencies=[Depends(bearer)])
async def list_models(registry: RegistryDep) -> Response:
    """Encoders (dims), translators (dims, source / target encoder, method, label-free confidence) and the
    ENCODER@TRANSLATOR pairs usable as `model`."""
    return Response(pydantic_core.to_json({"object": "list", "data": registry.cards()}), media_type=JSON)


@router.get("/health", response_model=Health, responses={503: {"model": Health}}, tags=["operations"])
async def health(registry: RegistryDep) -> Response:
    """200 once every model is loaded; 503 while loading, or if loading failed."""
    body = {"status": registry.status, "detail": registry.error}
    return Response(pydantic_core.to_json(body), status_code=200 if registry.status == "ok" else 503,
                    media_type=JSON)


@router.get("/metrics", tags=["operations"], responses={401: {"model": ErrorResponse}}, response_class=Response,
            dependencies=[Depends(bearer)])
async def prometheus(metrics: MetricsDep) -> Response:
    """Prometheus metrics: requests, latency, queue depth, batch sizes, vectors embedded and translated."""
    return Response(await asyncio.to_thread(metrics.render), media_type=metrics.content_type)


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    assets = {} if swagger_static() is None else {"swagger_js_url": f"{DOCS_STATIC}/swagger-ui-bundle.js",
                                                  "swagger_css_url": f"{DOCS_STATIC}/swagger-ui.css",
                                                  "swagger_favicon_url": f"{DOCS_STATIC}/favicon-32x32.png"}
    return get_swagger_ui_html(openapi_url="/openapi.json", title="vecbridge API", **assets)
