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
            whole = concat(pending)
            yield first, head(whole, need)
            rest = whole.tail(need)
            pending, held, first = [rest] if len(rest) else [], held - need, first + need
    if held:
        yield first, concat(pending)


def head(batch: Batch, stop: int) -> Batch:
    """The rows before `stop` (the batch itself when that is all of it)."""
    if stop >= len(batch):
        return batch
    return Batch(batch.ids[:stop], batch.vectors[:stop], None if batch.documents is None else batch.documents[:stop],
                 None if batch.metadata is None else batch.metadata[:stop])


def concat(batches: list[Batch]) -> Batch:
    """One batch of the rows of `batches`, in order (the batch itself when there is one)."""
    if len(batches) == 1:
        return batches[0]
    return Batch([i for b in batches for i in b.ids], np.concatenate([b.vectors for b in batches]),
                 None if batches[0].documents is None else [d for b in batches for d in b.documents],
                 None if batches[0].metadata is None else [m for b in batches for m in b.metadata])
