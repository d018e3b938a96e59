"""`vecbridge embed`: encode a text source into a float32 .npy of L2-normalised rows plus a JSON sidecar."""

from __future__ import annotations

import argparse
import sys

from encoders.base import DEVICES
from vecbridge import engine, jobs, stores
from vecbridge.commands.args import positive_int
from vecbridge.jobs.embedding import CHUNK_SIZE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed", help="encode texts into a vector store (a .npy file among them)",
        description="Encode texts with an encoder into a new vector store of L2-normalised float32 rows: row i is "
                    "text i, with id i and the text as its document where the store keeps documents (a .npy file "
                    "gets a JSON sidecar instead). The store records the encoder, counts, input fingerprint and "
                    "package versions. Work is saved in chunks beside the output: an interrupted run continues "
                    "where it stopped when rerun with the same arguments; two runs on one output at once are "
                    f"refused. Stores: {stores.KNOWN}.")
    p.add_argument("--encoder", required=True, help="encoder name (see `vecbridge encoders`), or hf:<model>")
    p.add_argument("--input", required=True, metavar="SPEC",
                   help="texts: FILE.jsonl (field `text`), FILE.txt (one per line), builtin:CORPUS[:split] or "
                        "hf:DATASET[:split]")
    p.add_argument("--output", required=True, metavar="STORE",
                   help="the new store: FILE.npy, FILE.parquet, chroma:DIR#COLLECTION, ...")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="embed only the first N texts")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto picks cuda when present")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it is a store vecbridge wrote")
    p.add_argument("--batch-tokens", type=positive_int, default=None, metavar="N",
                   help="padded tokens per batch (batch size x longest text); lower it if memory runs out")
    p.add_argument("--chunk-size", type=positive_int, default=CHUNK_SIZE, metavar="N",
                   help=f"texts per resumable chunk (default {CHUNK_SIZE})")
    p.add_argument("--engine", choices=engine.ENGINES, default="local",
                   help="where the chunks are embedded: local (this process, default) or ray (Ray actors that each "
                        "load the encoder once; the same store)")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="with --engine ray: the Ray cluster to join (default: start a local one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    meta = jobs.embed(args.encoder, args.input, args.output, limit=args.limit, device=args.device,
                      overwrite=args.overwrite, batch_tokens=args.batch_tokens, chunk_size=args.chunk_size,
                      log=lambda msg: print(msg, file=sys.stderr), engine=args.engine, address=args.address)
    print(f"wrote {meta['count']} x {meta['dim']} vectors ({meta['encoder']}, {meta['device']}) to "
          f"{args.output}; {meta['truncated']} texts truncated at {meta['max_length']} tokens")
    return 0
