"""Where a store -> store `translate` spends its time, per backend, and what the database clients cost alone.

`--stages`: `vecbridge.jobs.translate` of N random unit rows 384 -> 768 (a Procrustes translator) from a store of
each backend into a new one of the same backend, in this process, timed around the reader's batches, the
translation step, the writer's writes and its commit (wall and this process's CPU seconds), with the whole run's
vectors per minute. The source is written first by the library's own writer.

`--client`: the clients' own bulk calls on prepared arrays (N rows of 768 dims, string or integer ids, no
documents), into a new collection: chromadb's `add` in batches of its `max_batch_size`, and qdrant-client's
`upload_collection` (local mode), beside vecbridge's writer on the same rows, so that what the client costs
is told apart from what vecbridge adds.

`--throughput`: `vecbridge translate` store -> store as a child process (`/usr/bin/time`: wall seconds, user +
system CPU seconds, peak RSS) of each code tree in `--trees` (each put first on PYTHONPATH, `.` for this one),
one after the other on the same source store, so that a change is measured against the code before it under
the same load (`git archive COMMIT | tar -x -C DIR` makes a tree). Prints JSON lines.

    python scripts/bench_stores.py --stages --rows 1000000 --backends npy,parquet,parquet_dir,faiss,lancedb
    python scripts/bench_stores.py --stages --rows 20000 --backends chroma,qdrant
    python scripts/bench_stores.py --client --rows 20000
    python scripts/bench_stores.py --throughput --rows 1000000 --trees /tmp/before,.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from align.paired import ProcrustesTranslator
from vecbridge import paths, stores
from vecbridge.jobs import save_translator
from vecbridge.stores.base import STORE_FORMAT, Batch, StoreReader, StoreWriter

translate_module = importlib.import_module("vecbridge.jobs.translate")  # the module, not the function of that name
D_IN, D_OUT, WRITE_ROWS = 384, 768, 65536
SPECS = {"npy": ("{d}/in.npy", "{d}/out.npy"), "parquet": ("{d}/in.parquet", "{d}/out.parquet"),
         "parquet_dir": ("parquet:{d}/in", "parquet:{d}/out"), "faiss": ("faiss:{d}/in.faiss", "faiss:{d}/out.faiss"),
         "lancedb": ("lancedb:{d}/lance#src", "lancedb:{d}/lance#dst"),
         "chroma": ("chroma:{d}/chroma#src", "chroma:{d}/chroma#dst"),
         "qdrant": ("qdrant:{d}/qdrant#src", "qdrant:{d}/qdrant#dst")}


def unit_rows(rng, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def write_source(spec: str, rows: int, rng) -> None:
    info = stores.StoreInfo(spec, "bench", rows, D_IN, "cosine", id_type="int")
    with stores.open_writer(spec, dim=D_IN, count=rows, metric="cosine", source=info,
                            provenance={"format": STORE_FORMAT, "encoder": "bench-384"}) as writer:
        for start in range(0, rows, WRITE_ROWS):
            v = unit_rows(rng, min(WRITE_ROWS, rows - start), D_IN)
            writer.write(Batch(list(range(start, start + len(v))), v))
        writer.commit()


class Clock:
    """Wall and CPU seconds spent inside the wrapped calls, per stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu

    def timed_iter(self, name: str, iterator):
        iterator = iter(iterator)
        while True:
            with self.stage(name):
                item = next(iterator, None)
            if item is None:
                return
            yield item


@contextlib.contextmanager
def instrumented(clock: Clock):
    """Every reader's `batches`, the translation step, every writer's `write` and `commit`, timed."""
    patched = []

    def patch(cls, name, wrap):
        patched.append((cls, name, cls.__dict__[name]))
        setattr(cls, name, wrap(cls.__dict__[name]))

    def timed(stage):
        def wrap(fn):
            def inner(*a, **k):
                with clock.stage(stage):
                    return fn(*a, **k)
            return inner
        return wrap

    def timed_batches(fn):
        def inner(self, size):
            return clock.timed_iter("read", fn(self, size))
        return inner

    for mod in ("npy", "parquet", "faiss", "lancedb", "chroma", "qdrant"):
        module = __import__(f"vecbridge.stores.{mod}", fromlist=["Reader", "Writer"])
        for cls in {c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__}:
            if issubclass(cls, StoreReader) and "batches" in cls.__dict__:
                patch(cls, "batches", timed_batches)
            if issubclass(cls, StoreWriter):
                for name in ("write", "commit"):
                    if name in cls.__dict__:
                        patch(cls, name, timed(name))
    from vecbridge.stores import spill
    for name in ("write", "commit"):
        patch(spill.SpilledIndexWriter, name, timed(name))
    patch(translate_module.TranslateBatch, "__call__", timed("translate"))
    try:
        yield
    finally:
        for cls, name, fn in reversed(patched):
            setattr(cls, name, fn)


def prepare(tmp: Path, backend: str, rows: int, rng) -> tuple[str, str]:
    """A random procrustes translator 384 -> 768 in tmp/translator and the backend's source store of `rows` rows:
    (source spec, destination spec)."""
    save_translator(ProcrustesTranslator().fit(rng.standard_normal((4096, D_IN), dtype=np.float32),
                                               rng.standard_normal((4096, D_OUT), dtype=np.float32)),
                    tmp / "translator")
    src, dst = (s.format(d=tmp) for s in SPECS[backend])
    write_source(src, rows, rng)
    return src, dst


def stages(rows: int, backends: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for backend in backends:
        with tempfile.TemporaryDirectory(dir=work_dir()) as tmp:
            tmp = Path(tmp)
            src, dst = prepare(tmp, backend, rows, rng)
            clock = Clock()
            wall, cpu = time.perf_counter(), time.process_time()
            with instrumented(clock):
                out = translate_module.translate(tmp / "translator", src, dst, allow_encoder_mismatch=True,
                                                 progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            row = {"backend": backend, "rows": rows, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                   "vectors_per_minute": round(rows / wall * 60),
                   "stages_wall_s": {k: round(v, 2) for k, v in clock.wall.items()},
                   "stages_cpu_s": {k: round(v, 2) for k, v in clock.cpu.items()},
                   "load_average_1m": round(os.getloadavg()[0], 2), "job_seconds": out["seconds"]}
            print(json.dumps(row), flush=True)


def client_cost(rows: int, seed: int) -> None:
    """The clients' bulk calls alone against vecbridge's writer on the same prepared rows."""
    rng = np.random.default_rng(seed)
    vectors = unit_rows(rng, rows, D_OUT)
    str_ids, int_ids = [str(i) for i in range(rows)], list(range(rows))
    with tempfile.TemporaryDirectory(dir=work_dir()) as tmp:
        import chromadb
        from chromadb.config import Settings
        from qdrant_client import QdrantClient, models

        chroma = chromadb.PersistentClient(path=f"{tmp}/chroma-client", settings=Settings(anonymized_telemetry=False))
        collection = chroma.create_collection("bulk", embedding_function=None, metadata={"hnsw:space": "cosine"})
        step = chroma.get_max_batch_size()
        start = time.perf_counter()
        for i in range(0, rows, step):
            collection.add(ids=str_ids[i:i + step], embeddings=vectors[i:i + step])
        report("chroma", "client add, max_batch_size", rows, time.perf_counter() - start)
        qdrant = QdrantClient(path=f"{tmp}/qdrant-client")
        qdrant.create_collection("bulk", vectors_config=models.VectorParams(size=D_OUT,
                                                                              distance=models.Distance.COSINE))
        start = time.perf_counter()
        qdrant.upload_collection("bulk", vectors=vectors, ids=int_ids, batch_size=4096, wait=True)
        report("qdrant", "client upload_collection", rows, time.perf_counter() - start)
        qdrant.close()
        for backend, ids in (("chroma", str_ids), ("qdrant", int_ids)):
            info = stores.StoreInfo("bench", "bench", rows, D_OUT, "cosine", id_type="int")
            start = time.perf_counter()
            with stores.open_writer(SPECS[backend][1].format(d=tmp), dim=D_OUT, count=rows, metric="cosine",
                                    source=info, provenance={"format": STORE_FORMAT}) as writer:
                for i in range(0, rows, stores.DATABASE_BATCH_ROWS):
                    writer.write(Batch(ids[i:i + stores.DATABASE_BATCH_ROWS],
                                       vectors[i:i + stores.DATABASE_BATCH_ROWS]))
                writer.commit()
            report(backend, "vecbridge writer", rows, time.perf_counter() - start)


def throughput(rows: int, backends: list[str], trees: list[str], seed: int) -> None:
    """Each tree's `vecbridge translate` child on the same source store of each backend, one after the other."""
    rng = np.random.default_rng(seed)
    for backend in backends:
        with tempfile.TemporaryDirectory(dir=work_dir()) as tmp:
            tmp = Path(tmp)
            src, dst = prepare(tmp, backend, rows, rng)
            for tree in trees:
                # run from the tree itself: `python -m` puts the working directory before PYTHONPATH
                env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
                child = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", sys.executable, "-m", "vecbridge",
                                        "translate", "--translator", str(tmp / "translator"), "--input", src,
                                        "--output", dst, "--allow-encoder-mismatch", "--overwrite"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                       cwd=os.path.abspath(tree))
                if child.returncode:
                    raise SystemExit(f"{tree}: translate failed on {backend}: {child.stderr.strip()[-500:]}")
                wall, user, system, rss = child.stderr.strip().splitlines()[-1].split()
                print(json.dumps({"backend": backend, "tree": tree, "rows": rows, "wall_s": float(wall),
                                  "cpu_s": round(float(user) + float(system), 1),
                                  "vectors_per_minute": round(rows / float(wall) * 60),
                                  "peak_rss_mib": round(int(rss) / 1024),
                                  "load_average_1m": round(os.getloadavg()[0], 2)}), flush=True)


def report(backend: str, what: str, rows: int, seconds: float) -> None:
    print(json.dumps({"backend": backend, "what": what, "rows": rows, "seconds": round(seconds, 2),
                      "vectors_per_minute": round(rows / seconds * 60),
                      "load_average_1m": round(os.getloadavg()[0], 2)}), flush=True)


def work_dir() -> Path:
    work = paths.home() / "bench" / "stores"
    work.mkdir(parents=True, exist_ok=True)
    return work


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", action="store_true")
    ap.add_argument("--client", action="store_true")
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--trees", default=".", help="code trees to compare, comma-separated (--throughput)")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--backends", default="npy,parquet,parquet_dir,faiss,lancedb")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (args.stages or args.client or args.throughput):
        sys.exit("give --stages, --client and/or --throughput")
    if args.stages:
        stages(args.rows, args.backends.split(","), args.seed)
    if args.client:
        client_cost(args.rows, args.seed)
    if args.throughput:
        throughput(args.rows, args.backends.split(","), args.trees.split(","), args.seed)


if __name__ == "__main__":
    main()
