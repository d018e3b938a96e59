"""Engines under the jobs: a job describes its data flow once (`Flow`: read batches from a store, map their
vectors, write them into another); `run` runs it in this process (`local`) or on a Ray cluster (`ray`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from vecbridge.engine import local, ray_data
from vecbridge.engine.flow import Flow
from vecbridge.errors import UserError
from vecbridge.stores.base import StoreReader

__all__ = ["ENGINES", "Flow", "check", "encode_texts", "run"]

ENGINES = ("local", "ray")


def check(engine: str, address: str | None, reader: StoreReader | None = None, what: str = "") -> None:
    """Refuse, before any work, an engine that does not exist or cannot run here, or a source (`reader`, which
    messages call `what`) it cannot read."""
    if engine not in ENGINES:
        raise UserError(f"`engine` {engine!r} is not an engine; use one of: {', '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise UserError(f"`address` {address} names a Ray cluster; it needs `engine` ray")
    if engine == "ray":
        ray_data.import_ray()
        if reader is not None:
            ray_data.check_source(reader, what)


def encoded(texts: list[str], ranges: list[tuple[int, int]], encoder: str, engine: str = "local",
            address: str | None = None, device: str = "auto", batch_tokens: int | None = None) -> Iterator[tuple]:
    """The texts of each (start, stop) range embedded by the built-in `encoder` in one call, in order, as
    (vectors, {"tokens", "truncated"}): in this process (`local`) or by a pool of Ray actors that each load the
    encoder once (`ray`: the cluster at `address`, or a local one). The same calls on every engine, so the same
    vectors."""
    check(engine, address)
    if engine == "ray":
        return ray_data.encoded(texts, ranges, encoder, address, device, batch_tokens)
    return local.encoded(texts, ranges, encoder, device, batch_tokens)


def encode_texts(texts: list[str], encoder: str, engine: str = "local", address: str | None = None,
                 chunk: int = 256, progress: bool | None = None, desc: str = "embed") -> np.ndarray:
    """`texts` embedded by the built-in `encoder`, row i = texts[i], in calls of `chunk` texts (see `encoded`)."""
    ranges = [(start, min(start + chunk, len(texts))) for start in range(0, len(texts), chunk)]
    blocks = encoded(texts, ranges, encoder, engine, address)
    out = []
    with contextlib.closing(blocks), tqdm(total=len(texts), unit="doc", unit_scale=True, desc=desc,
                                          disable=None if progress is None else not progress) as bar:
        for vectors, _ in blocks:
            out.append(vectors)
            bar.update(len(vectors))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def run(flow: Flow, engine: str = "local", address: str | None = None, progress: bool | None = None) -> int:
    """Run `flow` on `engine` (`address`: the Ray cluster to join; None starts a local one for the job); return
    the rows read, those a resumed destination held included. `progress`: a progress bar (None: on a terminal)."""
    check(engine, address, flow.reader, flow.what)
    rows, writer, held = flow.skip, flow.writer, flow.skip % flow.batch
    bar = tqdm(total=flow.reader.info.count, initial=rows, unit="vec", unit_scale=True, desc=flow.desc,
               disable=None if progress is None else not progress)
    if engine == "ray" and writer.workers_write:  # the workers write the destination's files themselves
        parts = writer.worker_parts(flow.batch, flow.reader.read_range(0, min(flow.batch, flow.reader.info.count)))
        with contextlib.closing(ray_data.parts_written(flow, *parts, address)) as written, bar:
            for k, n in written:
                writer.adopt_part(k, n)
                writer.checkpoint()
                rows += n
                bar.update(n)
        return rows
    batches = ray_data.mapped(flow, address) if engine == "ray" else local.mapped(flow)
    with contextlib.closing(batches), bar:
        for batch in batches:
            if held:  # the first batch: its rows before `skip` are in the destination already
                batch, held = batch.tail(held), 0
                if not len(batch):
                    continue
            writer.write(batch)
            writer.checkpoint()
            rows += len(batch)
            bar.update(len(batch))
    return rows
