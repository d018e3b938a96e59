"""The `local` engine: the flow's batches read, mapped and written in this process."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from vecbridge.engine.flow import Flow
from vecbridge.stores.base import Batch


def mapped(flow: Flow) -> Iterator[Batch]:
    """The flow's batches, mapped by its step, in order."""
    step = flow.step
    for first, batch in cut(flow.reader.batches(flow.batch), flow.batch, flow.skip - flow.skip % flow.batch):
        batch.vectors = step(batch.vectors, first)
        yield batch


def encoded(texts: list[str], ranges: list[tuple[int, int]], encoder, device: str = "auto",
            batch_tokens: int | None = None) -> Iterator[tuple[np.ndarray, dict]]:
    """The texts of each (start, stop) range embedded by `encoder` (a name, or a loaded encoder) in one call, in
    order, with the call's stats."""
    from encoders.registry import get_encoder

    enc = get_encoder(encoder, device=device, batch_tokens=batch_tokens) if isinstance(encoder, str) else encoder
    for start, stop in ranges:
        vectors = enc.encode(texts[start:stop])
        yield vectors, {"tokens": int(enc.last_stats.tokens), "truncated": int(enc.last_stats.truncated)}


def cut(blocks: Iterable[Batch], size: int, skip: int = 0) -> Iterator[tuple[int, Batch]]:
    """The rows of `blocks` from row `skip` on, in batches cut at multiples of `size` rows whatever batches the
    store yields (a Parquet reader's follow its row groups): (first row, batch) pairs."""
    pending, held, first, row = [], 0, skip, 0
    for block in blocks:
        row += len(block)
        if row <= skip:
            continue
        if row - len(block) < skip:
            block = block.tail(skip - (row - len(block)))
        pending.append(block)
        held += len(block)
        while held >= (need := size - first % size):
            whole = Batch.concat(pending)
            yield first, whole.head(need)
            rest = whole.tail(need)
            pending, held, first = [rest] if len(rest) else [], held - need, first + need
    if held:
        yield first, Batch.concat(pending)

