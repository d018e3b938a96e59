"""`vecbridge translate`: translate a vector file into the other space of a translator (streamed, bounded memory)."""

from __future__ import annotations

import argparse

from vecbridge import jobs
from vecbridge.commands.args import positive_int
from vecbridge.report import emit


def register(sub) -> None:
    p = sub.add_parser(
        "translate", help="translate stored vectors into the other space of a translator",
        description="Translate --input (vectors of the translator's source space, or of its target space with "
                    "--reverse) into --output: float32 L2-normalised rows in the same order, plus a sidecar "
                    "naming the encoder and the translator. The output and its sidecar are published together; "
                    "a failed or killed run leaves nothing behind.")
    p.add_argument("--translator", required=True, metavar="DIR", help="translator directory from `vecbridge train`")
    p.add_argument("--input", required=True, metavar="FILE.npy", help="vectors to translate (.npy, memory-mapped)")
    p.add_argument("--output", required=True, metavar="FILE.npy", help="translated vectors to write (.npy)")
    p.add_argument("--reverse", action="store_true", help="translate target-space vectors back to the source space")
    p.add_argument("--search", action="store_true",
                   help="output queries for nearest-neighbour search among native vectors of the other space: "
                        "higher top-1, lower cosine to the true vector (geometric only; see README)")
    p.add_argument("--chunk", type=positive_int, default=65536, metavar="ROWS",
                   help="rows translated at a time (bounds memory; default 65536)")
    p.add_argument("--allow-encoder-mismatch", action="store_true",
                   help="translate even when the input's sidecar names another encoder than the translator's")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --output if it is a vector file vecbridge wrote")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = jobs.translate(args.translator, args.input, args.output, reverse=args.reverse, search=args.search,
                             chunk=args.chunk, overwrite=args.overwrite,
                             allow_encoder_mismatch=args.allow_encoder_mismatch)
    emit(summary, args.json, title="translated")
    return 0
