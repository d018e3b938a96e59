"""A job's data flow, described once for every engine: a store's rows in batches, each batch's vectors mapped by
a picklable step, the batches written in order into a destination store."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from vecbridge.stores.base import StoreReader, StoreSpec, StoreWriter


@dataclasses.dataclass
class Flow:
    """The rows of `reader` in batches cut at multiples of `batch` rows, each batch's vectors mapped by
    `step(vectors, first_row) -> vectors`, written into `writer` in the reader's order with a checkpoint after
    each batch. The first `skip` rows are in a resumed destination already: they are not written, and not read
    either, except those in the batch of row `skip`, mapped with it.

    Every engine cuts the same batches, so a row is mapped in the same company whichever engine runs the flow
    and wherever a resumed run starts (a step's output may depend on it: a one-row matrix product takes another
    BLAS path than a longer one). `step` is picklable: an engine with workers sends each a copy, which loads its
    model once, and each worker opens `source` itself (`what`: how messages name it) to read its batches with
    `StoreReader.read_range`. `gpu`: the step runs on a GPU where the workers have one (then one worker per
    GPU); `desc` names the progress bar."""

    source: StoreSpec
    what: str
    reader: StoreReader
    writer: StoreWriter
    step: Callable[[np.ndarray, int], np.ndarray]
    batch: int
    skip: int = 0
    gpu: bool = False
    desc: str = "rows"


def row_ranges(count: int, batch: int, skip: int = 0) -> list[tuple[int, int]]:
    """The batches a flow over `count` rows maps, as (start, stop) row ranges."""
    return [(start, min(start + batch, count)) for start in range(skip - skip % batch, count, batch)]
