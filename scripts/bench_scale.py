"""Benchmark the engines: `vecbridge translate` Parquet -> Parquet, 384 -> 768 dims through a Procrustes
translator, with `--engine local` and `--engine ray` on the same machine (the ray run starts its own local cluster
on this machine's cores, and its wall time includes that start). N random unit rows with int64 ids, written by
vecbridge's own Parquet writer (row groups of 65,536 rows), as one `.parquet` file or (`--layout dir`) a
directory of Parquet shards, the layout for stores too large to copy once more (a single file is assembled from
its parts at the end: twice the output's size on disk meanwhile).

For each engine, in a child process that runs the command line: wall time, vectors per minute, the job's own
seconds, the child's peak RSS (`resource.getrusage(RUSAGE_SELF)`: the process that writes, and for local also
reads and translates; RUSAGE_CHILDREN: the largest process it waited for, for ray the cluster's own processes
but not its workers) and the peak proportional set size of the whole process tree (sampled every 0.25 s: the Ray
cluster's workers included, its shared-memory object store counted once). Then whether the two outputs are the
same bytes (a streaming sha256 of the file, or of the directory's shards in order) and, with `--rows-hash`, the
same rows (a sha256 of the ids and vectors read back). Each output is hashed and deleted before the next engine
runs (`--keep-outputs` keeps them), and the source at the end, so that 10M rows fit on the disk. Prints JSON.

    python scripts/bench_scale.py --rows 1000000
    python scripts/bench_scale.py --rows 10000000 --layout dir
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from align.paired import ProcrustesTranslator
from vecbridge import paths, stores
from vecbridge.jobs import save_translator
from vecbridge.stores.base import STORE_FORMAT, Batch

D_IN, D_OUT, WRITE_ROWS = 384, 768, 65536
# the child: the command line in-process, then its own and its children's peak RSS (KiB) on stderr's last line
CHILD = ("import json, resource, sys\n"
         "from vecbridge.cli import main\n"
         "rc = main(sys.argv[1:])\n"
         "usage = {w: resource.getrusage(getattr(resource, w)).ru_maxrss for w in ('RUSAGE_SELF', 'RUSAGE_CHILDREN')}\n"
         "print(json.dumps(usage), file=sys.stderr)\n"
         "sys.exit(rc)\n")


def write_source(path: str, rows: int, seed: int) -> None:
    """`rows` random unit rows of D_IN dims with ids 0.., written in pieces by vecbridge's Parquet writer."""
    rng = np.random.default_rng(seed)
    info = stores.StoreInfo(str(path), "bench", rows, D_IN, "cosine", id_type="int")
    with stores.open_writer(str(path), dim=D_IN, count=rows, metric="cosine", source=info,
                            provenance={"format": STORE_FORMAT, "encoder": "bench-384"}) as writer:
        for start in range(0, rows, WRITE_ROWS):
            v = rng.standard_normal((min(WRITE_ROWS, rows - start), D_IN), dtype=np.float32)
            writer.write(Batch(list(range(start, start + len(v))), v / np.linalg.norm(v, axis=1, keepdims=True)))
        writer.commit()


def tree_pss(pid: int) -> int:
    """Bytes of the process `pid` and its descendants, shared pages divided among their sharers."""
    total = 0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run_engine(engine: str, translator: Path, src: str, dst: str) -> dict:
    """`vecbridge translate --engine ENGINE` in a child process, its memory sampled while it runs."""
    argv = [sys.executable, "-c", CHILD, "translate", "--translator", str(translator), "--input", str(src),
            "--output", str(dst), "--engine", engine, "--allow-encoder-mismatch", "--json"]
    peak, done = [0], threading.Event()
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sample():
        while not done.wait(0.25):
            peak[0] = max(peak[0], tree_pss(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    seconds = time.perf_counter() - start
    cpu = child_cpu_seconds()
    done.set()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"vecbridge translate --engine {engine} failed: {err.strip()[-800:]}")
    summary, usage = json.loads(out), json.loads(err.strip().splitlines()[-1])
    return {"engine": engine, "rows": summary["rows"], "wall_seconds": round(seconds, 2),
            "job_seconds": summary["seconds"], "vectors_per_minute": round(summary["rows"] / seconds * 60),
            "cpu_seconds_driver_and_children": cpu,
            "peak_rss_mib_self": round(usage["RUSAGE_SELF"] / 1024),
            "peak_rss_mib_children": round(usage["RUSAGE_CHILDREN"] / 1024),
            "peak_pss_mib_process_tree": round(peak[0] / 2**20)}


def child_cpu_seconds() -> float:
    """User + system seconds of the children waited for so far (each call: the total since the last)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    spent, CPU_SEEN[0] = total - CPU_SEEN[0], total
    return round(spent, 1)


CPU_SEEN = [0.0]


def store_files(spec: str) -> list[Path]:
    """The files of a Parquet store spec: the file, or the directory's shards in order."""
    path = Path(spec.removeprefix("parquet:"))
    return sorted(path.glob("*.parquet")) if path.is_dir() else [path]


def sha256(spec: str) -> str:
    h = hashlib.sha256()
    for path in store_files(spec):
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                h.update(block)
    return h.hexdigest()


def rows_sha256(spec: str) -> str:
    """sha256 of the store's ids and vectors as read back, in order."""
    h = hashlib.sha256()
    with stores.open_reader(spec) as reader:
        for batch in reader.batches(WRITE_ROWS):
            h.update(np.asarray(batch.ids, dtype=np.int64).tobytes())
            h.update(np.ascontiguousarray(batch.vectors).tobytes())
    return h.hexdigest()


def remove_store(spec: str) -> None:
    path = Path(spec.removeprefix("parquet:"))
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--layout", choices=("file", "dir"), default="file")
    ap.add_argument("--keep-outputs", action="store_true", help="keep each output until the end (twice the disk)")
    ap.add_argument("--rows-hash", action="store_true", help="also hash the ids and vectors read back")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    engines = args.engines.split(",")
    work = paths.home() / "bench" / "scale"
    work.mkdir(parents=True, exist_ok=True)
    spec = "{}.parquet" if args.layout == "file" else "parquet:{}"
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(args.seed)
        save_translator(ProcrustesTranslator().fit(rng.standard_normal((4096, D_IN), dtype=np.float32),
                                                   rng.standard_normal((4096, D_OUT), dtype=np.float32)),
                        tmp / "translator")
        src = spec.format(tmp / "in")
        start = time.perf_counter()
        write_source(src, args.rows, args.seed)
        prepared = time.perf_counter() - start
        runs, hashes, row_hashes = [], [], []
        for engine in engines:
            dst = spec.format(tmp / f"out-{engine}")
            runs.append(run_engine(engine, tmp / "translator", src, dst))
            start = time.perf_counter()
            hashes.append(sha256(dst))
            runs[-1]["output_bytes"] = sum(p.stat().st_size for p in store_files(dst))
            runs[-1]["hash_seconds"] = round(time.perf_counter() - start, 1)
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
            if args.rows_hash:
                row_hashes.append(rows_sha256(dst))
            if not args.keep_outputs:
                remove_store(dst)
        result = {"rows": args.rows, "dims": f"{D_IN} -> {D_OUT}", "layout": args.layout,
                  "cores": len(os.sched_getaffinity(0)), "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                  "source_written_seconds": round(prepared, 1), "runs": runs}
        if len(runs) == 2:
            result["same_bytes"] = hashes[0] == hashes[1]
            if row_hashes:
                result["same_rows"] = row_hashes[0] == row_hashes[1]
            result["ray_over_local_time"] = round(runs[1]["wall_seconds"] / runs[0]["wall_seconds"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
