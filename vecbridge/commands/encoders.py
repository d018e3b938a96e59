"""`vecbridge encoders`: every known encoder, its dimension, backend, and whether it is installed."""

from __future__ import annotations

import argparse
import json

from encoders.registry import list_encoders
from vecbridge.errors import user_errors


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encoders", help="list the encoders and whether each is installed",
                       description=__doc__)
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


@user_errors
def run(args: argparse.Namespace) -> int:
    rows = list_encoders()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("name", "dim", "backend", "installed")
    table = [(r["name"], "-" if r["dim"] is None else str(r["dim"]), r["backend"],
              "yes" if r["installed"] else f"no: {r['install']}") for r in rows]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0
