"""The `ray` engine on Ray Data: a dataset of the flow's batches as row ranges, read by the workers themselves
(`StoreReader.read_range`) and mapped by a pool of actors that each open the source and load the step once; the
mapped batches come back in order and are written by this process, so every destination store works."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import pickle
import socket
import warnings
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from vecbridge import stores
from vecbridge.engine.flow import Flow, row_ranges
from vecbridge.errors import ROOM_ERRORS, UserError
from vecbridge.stores.base import Batch, StoreReader, StoreSpec, first_line

INSTALL = "pip install 'vecbridge[scale]'"
# A batch whose worker dies is retried on a restarted worker this many times (Ray Data's default retries forever,
# so a batch that always kills its worker, out of memory for one, would hang the job).
RETRIES = 3


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise UserError(f"the ray engine needs Ray Data, which is not installed: {INSTALL}") from None
    return ray


def resolved(source: StoreSpec) -> StoreSpec:
    """The source with an absolute path: the workers need not share this process's working directory."""
    return source if source.path is None else dataclasses.replace(source, path=source.path.resolve())


def results(tables: Iterator[pa.Table]) -> Iterator:
    """The workers' results (column `result`) in order; a job error a worker returned is raised here."""
    for table in tables:
        for chunk in table.column("result").chunks:
            for k in range(len(chunk)):
                result = pickle.loads(chunk[k].as_buffer())
                if isinstance(result, Exception):
                    raise result
                yield result


def mapped(flow: Flow, address: str | None) -> Iterator[Batch]:
    """The flow's batches, mapped by its step on a Ray cluster, in order. `address`: a running cluster to join;
    None starts a local one for the job (or uses the one this process is already connected to)."""
    items = [{"start": start, "stop": stop} for start, stop in row_ranges(flow.reader.info.count, flow.batch,
                                                                           flow.skip)]
    yield from results(pool_tables(items, RangeWorker, (resolved(flow.source), flow.what, flow.step), flow.gpu,
                                   address))


def parts_written(flow: Flow, sink, size: int, held: dict[int, int], address: str | None) -> Iterator[tuple]:
    """(part, rows) of every part of `size` rows from the flow's `skip` on, in order: the parts `held` (whole in
    the destination already, from a killed run) as they are, the others read, mapped and written by the workers
    themselves with `sink` (a `PartSink`), so no vector passes through this process."""
    count = flow.reader.info.count
    parts = range(flow.skip // size, -(-count // size))
    todo = [{"part": k, "start": k * size, "stop": min(k * size + size, count)} for k in parts if k not in held]
    done = results(pool_tables(todo, PartWorker, (resolved(flow.source), flow.what, flow.step, sink, flow.batch),
                               flow.gpu, address)) if todo else iter(())
    for k in parts:
        yield (k, held[k]) if k in held else next(done)


def encoded(texts: list[str], ranges: list[tuple[int, int]], encoder: str, address: str | None,
            device: str = "auto", batch_tokens: int | None = None) -> Iterator[tuple[np.ndarray, dict]]:
    """The texts of each (start, stop) range embedded by `encoder` on a pool of Ray actors (one per CPU, or per GPU
    where the cluster has them), in order, with each call's stats."""
    items = [{"texts": texts[start:stop]} for start, stop in ranges]
    for table in pool_tables(items, EncodeWorker, (encoder, device, batch_tokens), True, address):
        for row in table.to_pylist():
            yield (np.load(io.BytesIO(row["vectors"]), allow_pickle=False),
                   {"tokens": row["tokens"], "truncated": row["truncated"]})


def pool_tables(items: list[dict], worker: type, args: tuple, gpu: bool, address: str | None) -> Iterator[pa.Table]:
    """The tables a pool of `worker(*args)` actors returns for `items` (one item a call), in order, on the cluster at
    `address` (None: the one this process is connected to, or a local one started here and stopped after)."""
    ray = import_ray()
    started = connect(ray, address)
    try:
        data = ray.data.from_items(items)
        data.context.execution_options.preserve_order = True
        data.context.enable_progress_bars = data.context.print_on_execution_start = False  # the job shows its own
        out = pool_map(ray, data, worker, args, gpu)
        with console_quiet(logging.getLogger("ray.data")), workers_died():
            yield from out.iter_batches(batch_size=None, batch_format="pyarrow")
    finally:
        if started:
            ray.shutdown()


class EncodeWorker:
    """A Ray actor: loads the encoder once, then embeds each list of texts it is given (vectors as a .npy buffer,
    with the call's token counts)."""

    def __init__(self, encoder: str, device: str = "auto", batch_tokens: int | None = None):
        self.options, self.encoder = (encoder, device, batch_tokens), None

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.encoder is None:
            from encoders.registry import get_encoder

            name, device, batch_tokens = self.options
            self.encoder = get_encoder(name, device=device, batch_tokens=batch_tokens)
        buffer = io.BytesIO()
        np.save(buffer, self.encoder.encode(batch["texts"][0].as_py()), allow_pickle=False)
        stats = self.encoder.last_stats
        return pa.table({"vectors": pa.array([buffer.getvalue()], pa.large_binary()),
                         "tokens": [int(stats.tokens)], "truncated": [int(stats.truncated)]})


def connect(ray, address: str | None) -> bool:
    """Join the cluster at `address`, or start a local one on this machine's cores; whether this call did."""
    if ray.is_initialized():
        return False
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address:
            check_reachable(address)
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=len(os.sched_getaffinity(0)), **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"join the Ray cluster at `address` {address}" if address else "start a local Ray cluster"
        raise UserError(f"cannot {where} ({first_line(e)}); check that it runs, or leave `address` out to start a "
                        "local one") from None
    return True


def check_reachable(address: str) -> None:
    """A head's HOST:PORT that does not answer, refused at once (Ray itself would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():  # `auto`, ray://: Ray's own checks are quick
        return
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
        raise ConnectionError(f"nothing answers at {address}: {e.strerror or e}") from None


@contextlib.contextmanager
def workers_died():
    """Ray's error when a batch's worker died more than RETRIES times, as one line the user can act on."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    try:
        yield
    except (ActorDiedError, ActorUnavailableError, RayActorError) as e:
        raise UserError(f"a batch killed its Ray worker {RETRIES + 1} times ({first_line(e)[:160]}); the job stopped "
                        "there and published nothing: give the workers more memory or use a smaller batch") from None


@contextlib.contextmanager
def console_quiet(logger: logging.Logger):
    """Only errors from `logger` on the console meanwhile (its log file keeps every line): Ray Data announces
    each execution and its end there, and the job shows its own progress and says its own errors."""
    handlers = [h for h in logger.handlers if h.get_name() == "console"]
    levels = [h.level for h in handlers]
    for h in handlers:
        h.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for h, level in zip(handlers, levels, strict=True):
            h.setLevel(level)


def pool_map(ray, data, worker: type, args: tuple, gpu: bool):
    """`data` (one item per call) mapped by a pool of `worker(*args)` actors, one per CPU (or per GPU for a `gpu`
    step), each batch retried on a restarted actor at most RETRIES times."""
    workers, gpus_each = pool_size(ray, gpu)
    with warnings.catch_warnings():  # the retry limit has no named parameter in the pinned Ray yet
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
        return data.map_batches(worker, fn_constructor_args=args, batch_size=1, batch_format="pyarrow",
                                num_gpus=gpus_each or None,
                                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
                                max_restarts=-1, max_task_retries=RETRIES)


def pool_size(ray, gpu: bool) -> tuple[int, int]:
    """(most actors, GPUs per actor): one actor per CPU of the cluster, or per GPU where the step uses one."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if gpu else 0
    return (gpus, 1) if gpus else (max(int(resources.get("CPU", 1)), 1), 0)


class RangeWorker:
    """A Ray actor: opens the source once, then reads each row range it is given and maps its vectors by `step`.
    The job's own errors come back as the batch's result, raised by the driver as the job would raise them (Ray
    would wrap them, and lose them on the way)."""

    def __init__(self, source: StoreSpec, what: str, step):
        self.source, self.what, self.step, self.reader = source, what, step, None

    def __call__(self, ranges: pa.Table) -> pa.Table:
        start, stop = ranges["start"][0].as_py(), ranges["stop"][0].as_py()  # batch_size=1: one range a call
        try:
            if self.reader is None:
                self.reader = stores.open_reader(self.source, self.what)
            result = self.reader.read_range(start, stop)
            result.vectors = self.step(result.vectors, start)
        except (UserError, OSError, *ROOM_ERRORS) as e:
            result = e
        return pa.table({"result": pa.array([pickle.dumps(result, protocol=5)], pa.large_binary())})


class PartWorker(RangeWorker):
    """A Ray actor: opens the source once, then for each part it is given reads its rows, maps them by `step` in
    the flow's batches and writes them as one part file of the destination (`sink`); returns (part, rows)."""

    def __init__(self, source: StoreSpec, what: str, step, sink, batch: int):
        super().__init__(source, what, step)
        self.sink, self.batch = sink, batch

    def __call__(self, parts: pa.Table) -> pa.Table:
        k, start, stop = (parts[name][0].as_py() for name in ("part", "start", "stop"))
        try:
            if self.reader is None:
                self.reader = stores.open_reader(self.source, self.what)
            rows = self.reader.read_range(start, stop)
            result = (k, self.sink.write_part(k, self.mapped(rows, start)))
        except (UserError, OSError, *ROOM_ERRORS) as e:
            result = e
        return pa.table({"result": pa.array([pickle.dumps(result, protocol=5)], pa.large_binary())})

    def mapped(self, rows: Batch, start: int) -> Iterator[tuple[int, Batch]]:
        """The part's rows in the flow's batches, mapped: (first row, batch) pairs."""
        for first in range(0, len(rows), self.batch):
            batch = rows.tail(first).head(self.batch)
            batch.vectors = self.step(batch.vectors, start + first)
            yield start + first, batch


def check_source(reader: StoreReader, what: str) -> None:
    """Refuse, before any work, a source the workers cannot read in row ranges."""
    try:
        reader.read_range(0, 1)
    except NotImplementedError:
        local_db = {"chroma": " (a local Chroma database opens in one process at a time: serve it with `chroma run "
                              "--path DIR` and read chroma+http://HOST:PORT#COLLECTION)",
                    "qdrant": " (Qdrant's local mode locks its folder to one process)"}.get(reader.info.backend, "")
        raise UserError(f"{what} {reader.info.spec} cannot be read in row ranges by the ray engine's workers"
                        f"{local_db}; it reads .npy, Parquet, LanceDB, faiss Flat and Chroma servers: use `engine` "
                        "local") from None
