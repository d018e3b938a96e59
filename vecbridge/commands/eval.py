"""`vecbridge eval`: score a translator on paired held-out vectors (row i of both files = the same text)."""

from __future__ import annotations

import argparse

from align import Translator
from align.metrics import evaluate
from vecbridge import storage
from vecbridge.errors import UserError
from vecbridge.report import emit


def register(sub) -> None:
    p = sub.add_parser("eval", help="measure a translator on paired held-out vectors",
                       description="Translate --source and compare with --target row by row: mean cosine, "
                                   "top-1 accuracy and mean/median rank of the true match within a pool.")
    p.add_argument("--translator", required=True, help="translator directory")
    p.add_argument("--source", required=True, help="held-out vectors in the translator's source space (.npy)")
    p.add_argument("--target", required=True, help="the same texts embedded in the target space (.npy)")
    p.add_argument("--pool", type=int, default=8192, help="candidates per ranking pool (default 8192)")
    p.add_argument("--reverse", action="store_true", help="evaluate the target -> source direction")
    p.add_argument("--search", action="store_true", help="evaluate the search output (see `translate --search`)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.pool < 2:
        raise UserError("--pool must be at least 2")
    translator = Translator.load(args.translator)
    src = storage.read_vectors(args.source, "--source")
    tgt = storage.read_vectors(args.target, "--target")
    if len(src) != len(tgt):
        raise UserError(f"--source has {len(src)} rows and --target {len(tgt)}; eval needs paired files "
                        "(row i = the same text embedded by both encoders)")
    translate = translator.inverse_transform if args.reverse else translator.transform
    pred = translate(src, search=args.search)
    metrics = evaluate(pred, tgt, pool=args.pool)
    metrics["method"] = translator.config_.get("method")
    metrics["output"] = "search" if args.search else "faithful"
    emit(metrics, args.json, title=f"{args.translator} on {len(src)} pairs (pool {metrics['pool']})")
    return 0
