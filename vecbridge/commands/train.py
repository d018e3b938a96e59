"""`vecbridge train`: fit a translator between two vector files or stores (unpaired unless the method is paired),
or from a store to reference texts embedded by a new model (`--target-encoder`, `--source-encoder`)."""

from __future__ import annotations

import argparse
import sys

from align import METHODS, default_method
from align.confidence import LOW_CONFIDENCE
from vecbridge import jobs
from vecbridge.commands.args import non_negative_int, parse_param, positive_float, positive_int
from vecbridge.errors import UserError
from vecbridge.jobs import pivots
from vecbridge.report import emit

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
    "affine": "affine",
}

# the job's parameters whose flag has another name (see `vecbridge.cli.flag_names`)
PARAMETER_FLAGS = {"pivots": "--pivot", "reference_texts": "--target-texts", "reference_limit": "--target-limit"}


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="learn a translator from source-space vectors to target-space vectors",
        description="Learn a translator A -> B and write it as a directory (config.json + model.safetensors). "
                    "For geometric (the default) and vec2vec the two files are unpaired: different texts, any "
                    "sizes and dims. Paired methods (procrustes, ridge, mlp) need row-aligned files or --pairs. "
                    "Prints the label-free confidence of the result and warns when it is low.")
    p.add_argument("--source", required=True, metavar="STORE",
                   help="vectors of the source space: a .npy file or any store spec (all its vectors are read)")
    p.add_argument("--target", metavar="STORE",
                   help="vectors of the target space: a .npy file or any store spec; without it, --target-encoder "
                        "embeds reference texts")
    p.add_argument("--output", required=True, metavar="DIR", help="translator directory to create")
    p.add_argument("--target-encoder", metavar="NAME",
                   help="with no --target: embed reference texts (--target-texts) with this built-in encoder as "
                        "the target side (cached under $VECBRIDGE_HOME/references)")
    p.add_argument("--source-encoder", metavar="NAME",
                   help="with --target-encoder, when the source's model still runs: embed the same reference texts "
                        "with both and fit on those public pairs (method procrustes unless --method is given)")
    p.add_argument("--target-texts", default=jobs.REFERENCE_TEXTS, metavar="SPEC",
                   help=f"the reference texts --target-encoder embeds (default {jobs.REFERENCE_TEXTS}; auto: "
                        "the built-in corpus whose vectors look most like the source's domain)")
    p.add_argument("--target-limit", type=positive_int, default=jobs.REFERENCE_LIMIT, metavar="N",
                   help=f"how many reference texts, the first ones (default {jobs.REFERENCE_LIMIT})")
    p.add_argument("--pairs-from-documents", type=positive_int, metavar="K",
                   help="known pairs from the source store itself: K of its documents, sampled and embedded by "
                        "--target-encoder (geometric: a quarter held out to validate the map)")
    p.add_argument("--method", default=None, choices=list(METHODS),
                   help="geometric (default, unsupervised, CPU), vec2vec (unsupervised GAN, for GPUs), or a paired "
                        "method (procrustes is the default with --source-encoder)")
    p.add_argument("--pairs", metavar="PAIRS.npy",
                   help="known pairs: an integer .npy array (k, 2) of (source_row, target_row). Paired methods fit "
                        "on them; geometric uses them as a few-shot start (16 or more: a quarter validate the map)")
    pivot = p.add_mutually_exclusive_group()
    pivot.add_argument("--pivot", action="append", metavar="ENCODER", default=None,
                       help="geometric: a built-in encoder to step through when the two spaces are too far apart "
                            "to match directly (e.g. minilm-l6), tried before the anchor search; repeat to try "
                            "several. Its vectors of built-in texts are embedded once and cached. Default auto: "
                            "when no direct start passes (and both sides have "
                            f"{pivots.AUTO_MIN_ROWS}+ rows), every other installed built-in encoder is tried")
    pivot.add_argument("--no-pivot", action="store_true",
                       help="geometric: never step through a pivot encoder (not even --pivot auto's)")
    p.add_argument("--pivot-texts", default=pivots.DEFAULT_TEXTS, metavar="SPEC",
                   help=f"texts the pivot encoder embeds: the last --pivot-rows of them (default "
                        f"{pivots.DEFAULT_TEXTS})")
    p.add_argument("--pivot-rows", type=positive_int, default=pivots.DEFAULT_ROWS, metavar="N",
                   help=f"how many pivot texts (default {pivots.DEFAULT_ROWS})")
    p.add_argument("--whiten", type=float, default=None, metavar="EPS",
                   help="geometric: fit the output to the target's covariance (try 0.4): higher mean cosine, "
                        "slightly lower top-1; default off, which is best for retrieval")
    p.add_argument("--affine", type=float, default=None, metavar="STRENGTH",
                   help="geometric: a linear output map on the final matches, pulled toward the rotation with "
                        "this strength (try 0.03); helps a strongly anisotropic source such as e5-small; default "
                        "off")
    p.add_argument("--seed", type=non_negative_int, default=None, help="random seed (the method's default: 0)")
    p.add_argument("--time-budget", type=positive_float, metavar="MINUTES",
                   help="vec2vec: stop training after this many minutes")
    p.add_argument("--param", action="append", type=parse_param, default=[], metavar="NAME=VALUE",
                   help="set any hyper-parameter of the method (e.g. restarts=8); repeatable")
    p.add_argument("--devices", default=None, help="vec2vec / mlp: Lightning devices, a count or 'auto'")
    p.add_argument("--strategy", default=None, help="vec2vec / mlp: Lightning strategy, e.g. ddp")
    p.add_argument("--precision", default=None, help="vec2vec / mlp: Lightning precision, e.g. 32-true, bf16-mixed")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR", help="vec2vec: keep training checkpoints here")
    p.add_argument("--resume", action="store_true", help="vec2vec: continue from the last checkpoint in "
                                                         "--checkpoint-dir")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --output if it is a translator vecbridge wrote (never any other directory)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def _params(args) -> dict:
    from align import translator_class

    accepted = set(translator_class(args.method).param_names())
    params = dict(args.param)
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


def _pivot_lines(report: dict, names: list[str]) -> list[str]:
    """One line per requested pivot: what its legs scored, or why it was not needed."""
    init = (report or {}).get("stages", {}).get("init", {})
    legs = init.get("pivots", {})
    lines = []
    for name in names:
        if name not in legs:
            lines.append(f"pivot {name}: not used (the {init.get('chosen')} start passed first)")
            continue
        if "skipped" in legs[name]:
            lines.append(f"pivot {name}: skipped ({legs[name]['skipped']})")
            continue
        parts = [_leg_text(leg.replace('_', ' '), legs[name][leg])
                 for leg in ("source_to_pivot", "pivot_to_target") if leg in legs[name]]
        stopped = "" if "pivot_to_target" in legs[name] else "; chain stopped: its first leg is not confident"
        lines.append(f"pivot {name}: {', '.join(parts)}{stopped}; chosen start: {init.get('chosen')}")
    return lines


def _leg_text(leg: str, report: dict) -> str:
    if report.get("passed") is False:  # no start of the leg passed its screen: stopped before refining
        return f"{leg}: no start passed (best {report['start_score']:.2f}, {report['chosen']})"
    return f"{leg} {report['confidence']:.2f} ({report['chosen']})"


def confidence_line(confidence: dict | None) -> str:
    """The fit's verdict in words a user acts on: verdict, score and how far it is from the line."""
    if not confidence or confidence.get("score") is None:
        reason = (confidence or {}).get("reason", "this method reports none")
        return f"confidence: not measured ({reason})"
    check = confidence.get("validation")
    if check is not None:
        evidence = (f"{check['top1']:.0%} of {check['pairs']} held-out known pairs find their own target first "
                    f"among {check['pool']} rows")
    else:
        margin = confidence.get("margin", confidence["score"] - LOW_CONFIDENCE)
        side = "above" if margin >= 0 else "below"
        evidence = f"label-free score {confidence['score']:.2f}, {abs(margin):.2f} {side} the line of a failed map"
        if confidence.get("verdict_from"):
            evidence += f" ({confidence['verdict_from']})"
    if confidence.get("verdict") == "low":
        return f"confidence: LOW - {evidence}; this translator probably does not map the spaces (see the warning)"
    return (f"confidence: ok - {evidence}; the spaces are probably mapped onto each other (measure it with "
            "`vecbridge eval` if you have paired vectors)")


def run(args: argparse.Namespace) -> int:
    args.method = args.method or default_method(paired=bool(args.source_encoder))
    result = jobs.train_translator(
        args.source, args.target, args.output, method=args.method, params=_params(args), pairs=args.pairs,
        pivots=[] if args.no_pivot else args.pivot or pivots.AUTO, pivot_texts=args.pivot_texts,
        pivot_rows=args.pivot_rows,
        target_encoder=args.target_encoder, source_encoder=args.source_encoder, reference_texts=args.target_texts,
        reference_limit=args.target_limit, pairs_from_documents=args.pairs_from_documents, overwrite=args.overwrite,
        log=lambda msg: print(msg, file=sys.stderr))
    if args.json:
        emit(result, True)
    else:
        print(f"trained {args.method} translator -> {args.output} ({result['dim_source']} -> "
              f"{result['dim_target']} dims, {result['train_seconds']:.1f} s)")
        print(confidence_line(result["confidence"]))
        print("details: --json, or config.json in the translator directory")
    for line in _pivot_lines(result["fit_report"], result["pivots"]):
        print(line, file=sys.stderr)
    if "warning" in result:
        print(f"warning: {result['warning']}", file=sys.stderr)
    return 0
