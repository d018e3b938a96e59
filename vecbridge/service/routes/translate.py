"""POST /v1/translate: vectors from a JSON or .npy body, checked against the translator's input space and
translated through the batching queue; the answer is JSON, or .npy when the request was .npy or asked for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from align.vectors import check_vectors
from vecbridge.errors import ROOM_ERRORS
from vecbridge.service.dependencies import RegistryDep, bearer, submit
from vecbridge.service.errors import JSON, ApiError, validation_error
from vecbridge.service.npy import NPY, read_npy
from vecbridge.service.registry import LoadedTranslator, direction_name
from vecbridge.service.schemas import ERROR_RESPONSES, ErrorResponse, TranslateRequest, TranslateResponse
from vecbridge.service.work import TranslateJob

router = APIRouter(tags=["translate"], dependencies=[Depends(bearer)])

# The body is read by `translation_input` (JSON or .npy), so its two formats are documented here.
REQUEST_BODY = {
    "required": True,
    "content": {"application/json": {"schema": TranslateRequest.model_json_schema()},
                NPY: {"schema": {"type": "string", "format": "binary",
                                 "description": "a float 2-D .npy array (numpy.save); translator, reverse "
                                                "and search are then query parameters"}}}}
RESPONSES = {
    **ERROR_RESPONSES, 415: {"model": ErrorResponse},
    200: {"content": {"application/json": {"schema": TranslateResponse.model_json_schema()},
                      NPY: {"schema": {"type": "string", "format": "binary"}}},
          "description": "the translated rows: JSON, or .npy when the request was .npy "
                         "or asked for it with `Accept: application/x-npy`"}}


@dataclass
class TranslationInput:
    """A /v1/translate request, whichever body format it came in."""

    translator: str
    vectors: np.ndarray
    reverse: bool
    search: bool
    as_npy: bool


def vectors_from_json(vectors: list[list[float]]) -> np.ndarray:
    if not vectors:
        raise ApiError(400, "vectors is empty; send at least one row", param="vectors", code="empty_input")
    lengths = {len(row) for row in vectors}
    if len(lengths) > 1:
        raise ApiError(400, f"the rows of vectors have different lengths ({', '.join(map(str, sorted(lengths)))})",
                       param="vectors", code="ragged_vectors")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, which the vector check refuses
        return np.array(vectors, dtype=np.float32)


async def translation_input(request: Request,
                            translator: str | None = Query(None, description=".npy bodies: the translator's name"),
                            reverse: bool = Query(False, description=".npy bodies: target space -> source space"),
                            search: bool = Query(False, description=".npy bodies: search output (geometric only)"),
                            ) -> TranslationInput:
    """The request from a JSON body, or from a .npy body and the query parameters."""
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    as_npy = content_type == NPY or NPY in request.headers.get("accept", "")
    body = await request.body()
    if content_type == NPY:
        if translator is None:
            raise ApiError(400, "a .npy body needs the translator as a query parameter: "
                                "/v1/translate?translator=NAME", param="translator", code="missing_translator")
        return TranslationInput(translator, read_npy(body), reverse, search, as_npy)
    if content_type == "application/json":
        try:
            req = TranslateRequest.model_validate_json(body)
        except ValidationError as e:
            raise validation_error(e.errors()) from None
        return TranslationInput(req.translator, vectors_from_json(req.vectors), req.reverse, req.search, as_npy)
    raise ApiError(415, f"unsupported Content-Type {content_type!r}; send application/json or {NPY}",
                   code="unsupported_media_type")


def checked_vectors(given: TranslationInput, loaded: LoadedTranslator) -> np.ndarray:
    """The vectors as float32, refused unless they fit the input space of the requested direction."""
    vectors, reverse = given.vectors, given.reverse
    dim_in, _, encoder_in = loaded.side(reverse)
    if vectors.ndim == 2 and vectors.shape[1] != dim_in:
        side = f"{'target' if reverse else 'source'} space ({encoder_in or 'encoder not recorded'})"
        hint = "; set reverse for vectors of the other space" if vectors.shape[1] == loaded.side(not reverse)[0] \
            else ""
        raise ApiError(400, f"vectors have {vectors.shape[1]} dims but translator {given.translator!r} expects "
                            f"{dim_in} (its {side}){hint}", param="vectors", code="dims_mismatch")
    try:
        vectors = check_vectors(vectors, "vectors", dim_in)
        if given.search:
            loaded.translator.check_search()
    except ROOM_ERRORS as e:
        raise ApiError(400, str(e), param="search" if given.search else "vectors", code="invalid_input") from None
    return vectors


@router.post("/v1/translate", responses=RESPONSES, openapi_extra={"requestBody": REQUEST_BODY})
async def translate(request: Request, given: Annotated[TranslationInput, Depends(translation_input)],
                    registry: RegistryDep) -> Response:
    """Translate vectors into the other space of a loaded translator; results are bit-identical (float32)
    to `vecbridge translate` of the same vectors."""
    loaded = registry.translator(given.translator)
    vectors = checked_vectors(given, loaded)
    key = ("translate", given.translator, given.reverse, given.search)
    content = await submit(request, key, TranslateJob(vectors, loaded, given.reverse, given.search, given.as_npy),
                           len(vectors))
    if given.as_npy:
        return Response(content, media_type=NPY, headers={"X-Vecbridge-Direction": direction_name(given.reverse)})
    return Response(content, media_type=JSON)
