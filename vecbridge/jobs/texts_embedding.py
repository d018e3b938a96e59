"""Texts in memory -> vectors, encoded exactly as `vecbridge embed` encodes a chunk (the service's path): the
shared encoder instance from the registry, one `encode` call, L2-normalised float32 rows in input order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from encoders.base import Encoder
from encoders.registry import get_encoder
from vecbridge.errors import user_errors
from vecbridge.jobs.checks import check_encoder


@user_errors
def load_encoder(name: str, device: str = "auto", batch_tokens: int | None = None) -> Encoder:
    """The registry's shared instance of encoder `name` (built on first use; safe to call from several threads)."""
    check_encoder(name)
    return get_encoder(name, device=device, batch_tokens=batch_tokens)


@user_errors
def embed_texts(encoder: str | Encoder, texts: Sequence[str]) -> tuple[np.ndarray, int]:
    """(rows, tokens): `texts` encoded in one call, row i = texts[i], as `vecbridge embed` encodes them; `tokens`
    is what the encoder ran (after truncation at its max length)."""
    enc = encoder if isinstance(encoder, Encoder) else load_encoder(encoder)
    vectors = enc.encode(list(texts))
    return vectors, int(enc.last_stats.tokens)
