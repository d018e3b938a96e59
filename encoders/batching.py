"""Batching by a token budget: group length-sorted inputs so each padded batch holds ~`max_tokens` tokens.

Sorting by length keeps padding small; the budget (batch size x longest item) bounds activation memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def token_budget_batches(lengths: Sequence[int] | np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Split item indices into batches whose padded size `len(batch) * max(lengths[batch])` <= `max_tokens`.

    Items are visited longest first (a stable sort, so equal lengths keep input order): an out-of-memory
    failure then shows on the first batch rather than at the end. An item longer than the budget gets a
    batch of its own. Every index appears exactly once; within and across batches lengths are non-increasing.
    """
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if lengths.size and lengths.min() < 0:
        raise ValueError("lengths must be non-negative")
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    n = order.size
    while start < n:
        # The first item of a batch is its longest, so it fixes the padded width of the whole batch.
        width = max(int(lengths[order[start]]), 1)
        size = max(max_tokens // width, 1)
        batches.append(order[start:start + size])
        start += size
    return batches
