"""`vecbridge embed`: encode a text source into a float32 .npy of L2-normalised rows plus a JSON sidecar."""

from __future__ import annotations

import argparse

from encoders.base import DEVICES
from vecbridge.embed import CHUNK_SIZE, embed_to_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="encode texts into a vector file (.npy + .npy.json)",
                       description=__doc__)
    p.add_argument("--encoder", required=True, help="encoder name (see `vecbridge encoders`), or hf:<model>")
    p.add_argument("--input", required=True, metavar="SPEC",
                   help="texts: FILE.jsonl, FILE.txt, builtin:CORPUS[:split] or hf:DATASET")
    p.add_argument("--output", required=True, metavar="FILE.npy", help="vector file to write")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="embed only the first N texts")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto picks cuda when present")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--batch-tokens", type=int, default=None, metavar="N",
                   help="padded tokens per batch (batch size x longest text); lower it if memory runs out")
    p.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, metavar="N",
                   help="texts per resumable chunk written to the work dir beside the output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    meta = embed_to_file(args.encoder, args.input, args.output, limit=args.limit, device=args.device,
                         overwrite=args.overwrite, batch_tokens=args.batch_tokens, chunk_size=args.chunk_size)
    print(f"wrote {meta['count']} x {meta['dim']} vectors ({meta['encoder']}, {meta['device']}) to "
          f"{args.output}; {meta['truncated']} texts truncated at {meta['max_length']} tokens")
    return 0
