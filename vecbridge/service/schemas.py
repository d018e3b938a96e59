"""Request and response bodies of the HTTP API (pydantic models; they are also the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EmbeddingRequest(BaseModel):
    """The OpenAI embeddings request. `model`: a loaded encoder, or ENCODER@TRANSLATOR (embed, then translate)."""

    model_config = ConfigDict(extra="ignore")  # OpenAI clients may send fields such as `user`

    input: str | list[str] = Field(description="a text or a list of texts (token arrays are not accepted)")
    model: str = Field(description="encoder name, or ENCODER@TRANSLATOR for a query in another space")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: little-endian float32 bytes, as the official client decodes them")
    dimensions: int | None = Field(None, description="must equal the model's dims when given (no shortening)")
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class TranslateRequest(BaseModel):
    """Vectors of the translator's source space (or of its target space with `reverse`)."""

    model_config = ConfigDict(extra="forbid")

    translator: str = Field(description="a translator loaded with --translator NAME=DIR")
    vectors: list[list[float]] = Field(description="rows to translate, all of the input space's dims")
    reverse: bool = Field(False, description="translate target-space vectors back to the source space")
    search: bool = Field(False, description="output queries for nearest-neighbour search (geometric only)")


class TranslateResponse(BaseModel):
    translator: str
    direction: Literal["forward", "reverse"]
    vectors: list[list[float]]


class ModelCard(BaseModel):
    """One entry of /v1/models: an encoder, a translator, or an ENCODER@TRANSLATOR pair usable as `model`."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "vecbridge"
    kind: Literal["encoder", "translator", "encoder+translator"]
    dims: int | None = Field(None, description="output dims of an encoder or pair")
    dim_source: int | None = None
    dim_target: int | None = None
    source_encoder: str | None = None
    target_encoder: str | None = None
    method: str | None = None
    confidence: dict | None = Field(None, description="the translator's label-free confidence, as saved")
    direction: Literal["forward", "reverse"] | None = None
    backend: str | None = None
    max_length: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "loading", "failed"]
    detail: str | None = None


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# The error bodies each API route documents at /docs; every one has the ErrorResponse shape.
ERROR_RESPONSES = {status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 422, 429, 503)}
