"""The one error type that reaches the command line and the service: bad input or environment, said in one line.

The rooms keep their own error classes (`AlignError`, `EncoderError`); the jobs turn them, and OS errors
such as a full disk, into `UserError` at the library layer's boundary. A message names a job's parameters in
backticks (`target_encoder`); the command line shows them as its flags (`--target-encoder`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from align.errors import AlignError
from encoders.errors import EncoderError

ROOM_ERRORS = (AlignError, EncoderError)
F = TypeVar("F", bound=Callable)


class UserError(ValueError):
    """Bad input or environment: the message says what was wrong and what to do."""


def user_errors(fn: F) -> F:
    """Decorate a job: the rooms' errors and OS errors leave it as `UserError` with the same one-line message."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ROOM_ERRORS as e:
            raise UserError(str(e)) from e
        except OSError as e:
            where = f" {e.filename}" if e.filename else ""
            raise UserError(f"cannot access{where}: {e.strerror or e}") from e
    return wrapper  # type: ignore[return-value]
