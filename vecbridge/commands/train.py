"""`vecbridge train`: fit a translator between two vector files (unpaired unless the method is paired)."""

from __future__ import annotations

import argparse
import inspect
import sys
import time

import numpy as np

from align import METHODS, translator_class
from vecbridge import pivots, storage
from vecbridge.errors import UserError
from vecbridge.report import emit

PAIRED = ("procrustes", "ridge", "mlp")
# CLI flag -> translator hyper-parameter; passed only to methods whose __init__ takes it.
TRAINING_FLAGS = {
    "seed": "seed",
    "time_budget": "time_budget_s",
    "devices": "devices",
    "strategy": "strategy",
    "precision": "precision",
    "checkpoint_dir": "checkpoint_dir",
    "resume": "resume",
    "whiten": "whiten",
}


def register(sub) -> None:
    p = sub.add_parser("train", help="learn a translator from source vectors to target vectors",
                       description="Learn a translator A -> B. For `geometric` and `vec2vec` the two files are "
                                   "unpaired (different texts, any sizes and dims); paired methods need row-aligned "
                                   "files or --pairs.")
    p.add_argument("--source", required=True, help="source-space vectors (.npy)")
    p.add_argument("--target", required=True, help="target-space vectors (.npy)")
    p.add_argument("--output", required=True, help="translator directory to create")
    p.add_argument("--method", default="geometric", choices=list(METHODS))
    p.add_argument("--pairs", help="few-shot / paired: .npy int array (k, 2) of (source_row, target_row)")
    p.add_argument("--pivot", action="append", metavar="ENCODER", default=None,
                   help="geometric: a built-in encoder to step through when the two spaces are too far apart to "
                        "match directly (e.g. minilm-l6); repeat to try several. Its vectors are embedded from "
                        "built-in texts once and cached")
    p.add_argument("--pivot-texts", default=pivots.DEFAULT_TEXTS, metavar="SPEC",
                   help=f"texts the pivot encoder embeds: the last --pivot-rows of them, apart from training "
                        f"sets cut from the head of the same spec (default {pivots.DEFAULT_TEXTS})")
    p.add_argument("--pivot-rows", type=int, default=pivots.DEFAULT_ROWS, metavar="N",
                   help=f"how many pivot texts (default {pivots.DEFAULT_ROWS})")
    p.add_argument("--whiten", type=float, default=None, metavar="EPS",
                   help="geometric: fit the output to the target's covariance (try 0.4): mean cosine +0.03-0.08, "
                        "top-1 -0 to -0.8 points (more out of distribution); default off, for retrieval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="stop training after this many minutes (methods that train iteratively)")
    p.add_argument("--devices", default=None, help="Lightning devices: a count or 'auto'")
    p.add_argument("--strategy", default=None, help="Lightning strategy, e.g. ddp")
    p.add_argument("--precision", default=None, help="Lightning precision, e.g. 32-true, bf16-mixed")
    p.add_argument("--checkpoint-dir", default=None, help="keep Lightning training checkpoints here")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --checkpoint-dir")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output directory")
    p.add_argument("--json", action="store_true", help="print the training report as JSON")
    p.set_defaults(func=run)


def _params(args, cls) -> dict:
    accepted = set(cls.param_names())
    params = {}
    for flag, param in TRAINING_FLAGS.items():
        value = getattr(args, flag)
        if value is None or value is False:
            continue
        if param not in accepted:
            raise UserError(f"--{flag.replace('_', '-')} does not apply to method {args.method!r}")
        if flag == "time_budget":
            value = value * 60.0
        if flag == "devices" and str(value).isdigit():
            value = int(value)
        params[param] = value
    return params


def _pairs(path: str | None) -> np.ndarray | None:
    if path is None:
        return None
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"pairs file {path} does not exist") from None
    except ValueError as e:
        raise UserError(f"pairs file {path} is not a .npy array ({e})") from None


def _report_pivots(report: dict, names: list[str]) -> None:
    """One stderr line per requested pivot: what its legs scored, or why it was not needed."""
    init = report.get("stages", {}).get("init", {})
    legs = init.get("pivots", {})
    for name in names:
        if name not in legs:
            print(f"pivot {name}: not used (the {init.get('chosen')} start passed first)", file=sys.stderr)
            continue
        parts = [f"{leg.replace('_', ' ')} {legs[name][leg]['confidence']:.2f} ({legs[name][leg]['chosen']})"
                 for leg in ("source_to_pivot", "pivot_to_target") if leg in legs[name]]
        stopped = "" if "pivot_to_target" in legs[name] else "; chain stopped: its first leg is not confident"
        print(f"pivot {name}: {', '.join(parts)}{stopped}; chosen start: {init.get('chosen')}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    cls = translator_class(args.method)
    params = _params(args, cls)
    storage.check_writable(args.output, overwrite=args.overwrite)
    src = storage.read_vectors(args.source, "--source")
    tgt = storage.read_vectors(args.target, "--target")
    pairs = _pairs(args.pairs)
    fit_args = {"pairs": pairs}
    pivot_names = list(dict.fromkeys(args.pivot or []))  # in the order given, each once
    if pivot_names:
        if "pivots" not in inspect.signature(cls.fit).parameters:
            raise UserError(f"--pivot does not apply to method {args.method!r} (only to geometric)")
        fit_args["pivots"] = {name: pivots.pivot_vectors(name, args.pivot_texts, args.pivot_rows)
                              for name in pivot_names}
    translator = cls(**params)
    start = time.perf_counter()
    translator.fit(src, tgt, **fit_args)
    seconds = time.perf_counter() - start
    src_meta, tgt_meta = storage.read_sidecar(args.source), storage.read_sidecar(args.target)
    meta = {
        "source_encoder": src_meta.get("encoder"),
        "target_encoder": tgt_meta.get("encoder"),
        "trained_on": {"source": str(args.source), "target": str(args.target),
                       "source_rows": len(src), "target_rows": len(tgt),
                       "pairs": None if pairs is None else int(len(pairs)),
                       "pivots": None if not pivot_names else {"encoders": pivot_names, "texts": args.pivot_texts,
                                                               "rows": args.pivot_rows}},
        "train_seconds": round(seconds, 2),
        "fit_report": getattr(translator, "fit_report_", None),
    }
    translator.save(args.output, meta=meta, overwrite=args.overwrite)
    result = {"output": str(args.output), "method": args.method, "dim_source": translator.dim_source_,
              "dim_target": translator.dim_target_, "train_seconds": round(seconds, 2),
              "confidence": translator.confidence_ if hasattr(translator, "confidence_") else None}
    emit(result, args.json, title=f"trained {args.method} translator -> {args.output}")
    if pivot_names:
        _report_pivots(getattr(translator, "fit_report_", None) or {}, pivot_names)
    confidence = result["confidence"] or {}
    if confidence.get("verdict") == "low":
        check = confidence.get("validation")
        evidence = (f"label-free confidence {confidence['score']:.2f} is low" if check is None else
                    f"only {check['top1']:.0%} of {check['pairs']} held-out known pairs find their own target first "
                    f"among {check['pool']} rows")
        print(f"warning: {evidence}: this translator probably does not map the spaces onto each other. Try a pivot "
              "encoder close to one side (--pivot minilm-l6), known pairs (--pairs: a few dozen are often enough; "
              "with 16 or more, a quarter validate the map), more vectors per side or another --seed; check with "
              "`vecbridge eval` if you have paired vectors.", file=sys.stderr)
    return 0
