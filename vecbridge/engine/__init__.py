"""Engines under the jobs: a job describes its data flow once (`Flow`: read batches from a store, map their
vectors, write them into another); `run` runs it in this process (`local`) or on a Ray cluster (`ray`)."""

from __future__ import annotations

import contextlib

from tqdm import tqdm

from vecbridge.engine import local, ray_data
from vecbridge.engine.flow import Flow
from vecbridge.errors import UserError
from vecbridge.stores.base import StoreReader

__all__ = ["ENGINES", "Flow", "check", "run"]

ENGINES = ("local", "ray")


def check(engine: str, address: str | None, reader: StoreReader, what: str) -> None:
    """Refuse, before any work, an engine that does not exist or cannot run here, or a source (`reader`, which
    messages call `what`) it cannot read."""
    if engine not in ENGINES:
        raise UserError(f"`engine` {engine!r} is not an engine; use one of: {', '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise UserError(f"`address` {address} names a Ray cluster; it needs `engine` ray")
    if engine == "ray":
        ray_data.import_ray()
        ray_data.check_source(reader, what)


def run(flow: Flow, engine: str = "local", address: str | None = None, progress: bool | None = None) -> int:
    """Run `flow` on `engine` (`address`: the Ray cluster to join; None starts a local one for the job); return
    the rows read, those a resumed destination held included. `progress`: a progress bar (None: on a terminal)."""
    check(engine, address, flow.reader, flow.what)
    batches = ray_data.mapped(flow, address) if engine == "ray" else local.mapped(flow)
    rows, writer, held = flow.skip, flow.writer, flow.skip % flow.batch
    with contextlib.closing(batches), tqdm(total=flow.reader.info.count, initial=rows, unit="vec", unit_scale=True,
                                           desc=flow.desc, disable=None if progress is None else not progress) as bar:
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
