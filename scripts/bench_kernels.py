"""Time the geometric translator's CSLS matching (one self-learning round's cost) against the two-pass baseline.

`csls_matches` (align/geometric/kernels.py) takes each row's candidates on the other side with faiss's exact
inner-product search, both ways, and falls back to a full search for rows the candidates cannot settle (reported
as `one_pass_s`: until 2026-12-03 it made one pass over the similarity matrix with torch's top-k). The baseline is
the kernel both replaced:
two passes over the matrix (mean top-k similarities first, then the CSLS argmax), column reductions along the
strided axis. Both run on the same rows in the same process; their matches must be identical.

    python scripts/bench_kernels.py                       # minilm-l3 train_a vs minilm-l6 train_b, 25,000 each
    python scripts/bench_kernels.py --rotate --json       # the source randomly rotated: a wrong map's matching

Vectors come from bench_translate's cache (`bench_translate.py --prepare minilm-l3,minilm-l6`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_translate  # noqa: E402

from align.geometric.kernels import csls_matches  # noqa: E402
from align.vectors import unit_rows  # noqa: E402


def two_pass_csls(a: torch.Tensor, b: torch.Tensor, k: int, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline: both sides' mean top-k similarities in a first pass over row blocks (columns by a running
    top-k along the strided axis), the CSLS argmax of both sides in a second pass."""
    ra, col_top = [], None
    for i in range(0, len(a), chunk):
        s = a[i:i + chunk] @ b.T
        ra.append(s.topk(k, dim=1).values.mean(dim=1))
        top = s.topk(min(k, len(s)), dim=0).values
        col_top = top if col_top is None else torch.cat([col_top, top]).topk(k, dim=0).values
    ra, rb = torch.cat(ra), col_top.mean(dim=0)
    fwd, back_val = [], torch.full((len(b),), -float("inf"))
    back = torch.zeros(len(b), dtype=torch.long)
    for i in range(0, len(a), chunk):
        s = 2 * (a[i:i + chunk] @ b.T) - ra[i:i + chunk, None] - rb[None, :]
        fwd.append(s.argmax(dim=1))
        val, idx = s.max(dim=0)
        better = val > back_val
        back_val, back = torch.where(better, val, back_val), torch.where(better, idx + i, back)
    return torch.cat(fwd), back


def timed(fn, *args, repeats: int) -> tuple[float, tuple]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="minilm-l3")
    ap.add_argument("--target", default="minilm-l6")
    ap.add_argument("--rows", type=int, default=25000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs of each kernel")
    ap.add_argument("--rotate", action="store_true", help="rotate the source randomly (a wrong map's matching)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    x = bench_translate.vectors(args.source, "train_a", args.rows)[:args.rows]
    y = bench_translate.vectors(args.target, "train_b", args.rows)[:args.rows]
    if args.rotate:
        q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((x.shape[1], x.shape[1])))
        x = x @ q.astype(np.float32)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    x, y = unit_rows(x - x.mean(0)), unit_rows(y - y.mean(0))
    if x.shape[1] != y.shape[1]:
        raise SystemExit("--source and --target must have the same dims (the translator matches in one space)")
    base_s, (bf, bb) = timed(two_pass_csls, x, y, args.k, repeats=args.repeats)
    new_s, (nf, nb) = timed(csls_matches, x, y, args.k, repeats=args.repeats)
    row = {"rows": [len(x), len(y)], "dim": x.shape[1], "rotated": args.rotate, "two_pass_s": round(base_s, 2),
           "one_pass_s": round(new_s, 2), "speedup": round(base_s / new_s, 2),
           "identical": bool(torch.equal(bf, nf) and torch.equal(bb, nb)), "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(), "omp": os.environ.get("OMP_NUM_THREADS")}
    if args.json:
        print(json.dumps(row))
    else:
        print(f"CSLS matches {row['rows'][0]:,} x {row['rows'][1]:,} x {row['dim']}"
              f"{' (rotated source)' if args.rotate else ''}: two passes {row['two_pass_s']} s, one pass "
              f"{row['one_pass_s']} s ({row['speedup']}x), identical: {row['identical']}")


if __name__ == "__main__":
    main()
