"""Throughput (texts/s) and peak memory (RSS) of every installed encoder on the same texts.

Each encoder runs in its own subprocess so that its peak RSS is its own:
    python scripts/bench_encoders.py [--texts builtin:pool:eval] [--n 2000] [--encoders a,b] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from encoders.registry import get_encoder, list_encoders  # noqa: E402
from vecbridge.errors import UserError  # noqa: E402
from vecbridge.texts import read_texts  # noqa: E402


def measure(name: str, spec: str, n: int, device: str) -> dict:
    """Load one encoder and time `encode` over the first `n` texts of `spec` (run inside a worker process)."""
    texts = read_texts(spec, limit=n)
    # ru_maxrss is in KiB on Linux; the peak before loading the encoder is the cost of reading the texts.
    texts_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    enc = get_encoder(name, device=device)
    t1 = time.perf_counter()
    vectors = enc.encode(texts)
    t2 = time.perf_counter()
    return {"encoder": name, "backend": enc.backend, "device": enc.device, "dim": int(vectors.shape[1]),
            "texts": len(texts), "load_s": round(t1 - t0, 2), "encode_s": round(t2 - t1, 2),
            "texts_per_s": round(len(texts) / (t2 - t1), 1), "truncated": enc.last_stats.truncated,
            "texts_rss_mib": round(texts_rss, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run_worker(name: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--texts", args.texts, "--n", str(args.n),
           "--device", args.device]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return {"encoder": name, "error": lines[-1] if lines else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict], cores: int, load: tuple[float, float, float]) -> str:
    out = [f"texts: {rows[0].get('texts', '?') if rows else '?'}; CPU cores available: {cores}; "
           f"load average at the end (1/5/15 min): {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}", "",
           "| encoder | backend | device | dim | load s | texts/s | peak RSS MiB | of which texts MiB "
           "| truncated |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['encoder']} | error: {r['error']} | | | | | | | |")
        else:
            cells = [r[k] for k in ("encoder", "backend", "device", "dim", "load_s", "texts_per_s",
                                    "peak_rss_mib", "texts_rss_mib", "truncated")]
            out.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", default="builtin:pool:eval", metavar="SPEC",
                        help="texts to encode (any `vecbridge embed --input` SPEC)")
    parser.add_argument("--n", type=int, default=2000, help="number of texts")
    parser.add_argument("--encoders", default=None, help="comma-separated names (default: all installed)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a markdown table")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(measure(args.worker, args.texts, args.n, args.device)))
        return 0
    try:
        read_texts(args.texts, limit=1)
    except UserError as e:
        print(f"bench_encoders: cannot read texts {args.texts!r}: {e}; "
              "pass --texts FILE.txt or fetch the corpus", file=sys.stderr)
        return 2
    names = (args.encoders.split(",") if args.encoders else
             [r["name"] for r in list_encoders() if r["installed"] and ":" not in r["name"]])
    rows = [run_worker(name, args) for name in names]
    print(json.dumps(rows, indent=2) if args.json
          else markdown(rows, len(os.sched_getaffinity(0)), os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
