"""`vecbridge translate`: translate a vector file or a vector store into the other space of a translator (streamed,
bounded memory)."""

from __future__ import annotations

import argparse
import sys

from vecbridge import engine as engines
from vecbridge import jobs, stores
from vecbridge.commands.args import positive_int
from vecbridge.report import emit

# the job's parameters whose flag has another name (see `vecbridge.cli.flag_names`)
PARAMETER_FLAGS = {"batch": "--chunk"}


def register(sub) -> None:
    p = sub.add_parser(
        "translate", help="translate stored vectors into the other space of a translator",
        description="Translate --input (vectors of the translator's source space, or of its target space with "
                    "--reverse) into --output: float32 L2-normalised rows in the same order, plus a sidecar "
                    "naming the encoder and the translator. The output and its sidecar are published together; "
                    "a failed or killed run leaves nothing behind. Either side may be a vector store "
                    f"({stores.KNOWN}): ids, documents and metadata are carried over, the source is only read, "
                    "and the new store is built under a temporary name and swapped in when complete.")
    p.add_argument("--translator", required=True, metavar="DIR", help="translator directory from `vecbridge train`")
    p.add_argument("--input", required=True, metavar="STORE",
                   help="vectors to translate: a .npy file (memory-mapped) or a store spec")
    p.add_argument("--output", required=True, metavar="STORE",
                   help="where to write the translated vectors: a .npy file or a store spec")
    p.add_argument("--reverse", action="store_true", help="translate target-space vectors back to the source space")
    p.add_argument("--search", action="store_true",
                   help="output queries for nearest-neighbour search among native vectors of the other space: "
                        "higher top-1, lower cosine to the true vector (geometric only; see README)")
    p.add_argument("--chunk", type=positive_int, default=None, metavar="ROWS",
                   help="rows translated at a time (bounds memory; default 65536, 4096 with a Chroma or Qdrant store)")
    p.add_argument("--allow-encoder-mismatch", action="store_true",
                   help="translate even when the input's sidecar names another encoder than the translator's")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --output if it is a vector file or store vecbridge wrote")
    p.add_argument("--resume", action="store_true",
                   help="continue the unfinished destination of a killed run of the same translation (same "
                        "translator, input, output and options) from its last recorded batch; without it, such a "
                        "leftover is removed and the run starts over")
    p.add_argument("--engine", choices=engines.ENGINES, default="local",
                   help="where the batches are translated: local (this process, the default) or ray (a Ray "
                        "cluster; .npy, Parquet, LanceDB and faiss Flat sources; needs pip install "
                        "'vecbridge[scale]'); both write the same store")
    p.add_argument("--address", metavar="ADDRESS",
                   help="with --engine ray: join the running Ray cluster at ADDRESS (its head's HOST:PORT, or auto "
                        "for the one `ray start` runs here; default: start a local one for the run)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = jobs.translate(args.translator, args.input, args.output, reverse=args.reverse, search=args.search,
                             batch=args.chunk, overwrite=args.overwrite,
                             allow_encoder_mismatch=args.allow_encoder_mismatch, resume=args.resume,
                             engine=args.engine, address=args.address)
    if not summary["exact"]:
        print(f"vecbridge translate: note: {args.input} stores approximate vectors (a lossy faiss index); "
              "the translation starts from its reconstructions", file=sys.stderr)
    if summary["dropped"]:
        print(f"vecbridge translate: note: {args.output} cannot hold the source's "
              f"{' and '.join(summary['dropped'])}; they were not carried over", file=sys.stderr)
    emit(summary, args.json, title="translated")
    return 0
