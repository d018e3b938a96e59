"""`vecbridge eval`: score a translator on paired held-out vectors or stores (the same text under the same id, or
row i of both)."""

from __future__ import annotations

import argparse

from vecbridge import jobs
from vecbridge.commands.args import positive_int
from vecbridge.report import emit


def register(sub) -> None:
    p = sub.add_parser("eval", help="measure a translator on paired held-out vectors",
                       description="Translate --source and compare with --target row by row: mean cosine, "
                                   "top-1 accuracy and mean/median rank of the true match within a pool.")
    p.add_argument("--translator", required=True, metavar="DIR", help="translator directory")
    p.add_argument("--source", required=True, metavar="STORE",
                   help="held-out vectors in the translator's source space: a .npy file or any store spec")
    p.add_argument("--target", required=True, metavar="STORE",
                   help="the same texts embedded in the target space (stores with ids are paired by id, others "
                        "row by row)")
    p.add_argument("--pool", type=positive_int, default=8192, metavar="N",
                   help="candidates per ranking pool (default 8192, at least 10)")
    p.add_argument("--reverse", action="store_true", help="evaluate the target -> source direction")
    p.add_argument("--search", action="store_true", help="evaluate the search output (see `translate --search`)")
    p.add_argument("--allow-encoder-mismatch", action="store_true",
                   help="evaluate even when --source's sidecar names another encoder than the translator's")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    metrics = jobs.evaluate(args.translator, args.source, args.target, pool=args.pool, reverse=args.reverse,
                            search=args.search, allow_encoder_mismatch=args.allow_encoder_mismatch)
    emit(metrics, args.json, title=f"{args.translator} on {metrics['n']} pairs (pool {metrics['pool']})")
    return 0
