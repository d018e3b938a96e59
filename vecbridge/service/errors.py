"""Errors the service answers with, all in the OpenAI shape `{"error": {"message", "type", "param", "code"}}`, so
the official client raises its usual exception classes (BadRequestError, NotFoundError, ...)."""

from __future__ import annotations

import pydantic_core
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

JSON = "application/json"
# OpenAI's error `type` for each status this service answers with.
TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
         405: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
         422: "invalid_request_error", 429: "rate_limit_error", 503: "server_error"}


class ApiError(Exception):
    """A request the service refuses: HTTP `status` and a message saying what was wrong and what to do."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    return pydantic_core.to_json({"error": {"message": message, "type": TYPES.get(status, "server_error"),
                                            "param": param, "code": code}})


def error_response(error: ApiError) -> Response:
    return Response(error_body(error.status, error.message, error.param, error.code), status_code=error.status,
                    media_type=JSON, headers=error.headers)


def _param(loc) -> str | None:
    """'input' or 'vectors[3][1]' from a pydantic location such as ('body', 'vectors', 3, 1)."""
    parts = [p for p in loc if p != "body"]
    if not parts:
        return None
    out = str(parts[0])
    for p in parts[1:]:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def validation_error(errors: list) -> ApiError:
    """422 for a body that is not JSON or does not match the schema: the first problem, located."""
    first = errors[0] if errors else {}
    param = _param(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        param = None  # its location is a character offset, not a field
        message = f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'malformed')})"
    else:
        message = f"{param or 'body'}: {first.get('msg', 'invalid value')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problems)"
    return ApiError(422, message, param=param, code=first.get("type"))


def install_handlers(app: FastAPI) -> None:
    """Every error leaves in the OpenAI shape: ours, FastAPI's validation errors and Starlette's 404 / 405."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(validation_error(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = {404: f"no such endpoint: {request.method} {request.url.path}; see /docs",
                   405: f"{request.method} is not allowed on {request.url.path}; see /docs"}.get(exc.status_code,
                                                                                                  str(exc.detail))
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code)
        return error_response(ApiError(exc.status_code, message, code=code, headers=getattr(exc, "headers", None)))
