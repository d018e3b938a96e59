"""POST /v1/embeddings: the OpenAI embeddings request, for an encoder or for ENCODER@TRANSLATOR (embed, then
translate into the space of the translator's other encoder)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from vecbridge.service.dependencies import RegistryDep, bearer, submit
from vecbridge.service.errors import JSON, ApiError
from vecbridge.service.schemas import ERROR_RESPONSES, EmbeddingRequest, EmbeddingResponse
from vecbridge.service.work import EmbedJob

router = APIRouter(tags=["embeddings"], dependencies=[Depends(bearer)])


def checked_texts(body: EmbeddingRequest, max_inputs: int) -> list[str]:
    """The request's texts as a list, refused when empty, when one is blank, or when there are over `max_inputs`."""
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
    return texts


@router.post("/v1/embeddings", response_model=EmbeddingResponse, responses=ERROR_RESPONSES)
async def embeddings(body: EmbeddingRequest, request: Request, registry: RegistryDep) -> Response:
    """Embed texts with an encoder, or with ENCODER@TRANSLATOR: embed, then translate into the space of the
    translator's other encoder (a new model's query landing in an old index's space)."""
    route = registry.route(body.model)
    texts = checked_texts(body, request.app.state.max_inputs)
    if body.dimensions is not None and body.dimensions != route.dims:
        raise ApiError(400, f"model {body.model!r} makes {route.dims}-dim vectors and cannot shorten them; "
                            f"leave out `dimensions` or give {route.dims}", param="dimensions",
                       code="unsupported_dimensions")
    job = EmbedJob(texts, route, body.model, body.encoding_format)
    return Response(await submit(request, ("embed", route.encoder.name), job, len(texts)), media_type=JSON)
