"""The `vecbridge` command line: one subcommand per module in `vecbridge.commands`, errors as one line."""

from __future__ import annotations

import argparse
import importlib
import sys

from align.errors import AlignError
from encoders.errors import EncoderError
from vecbridge import __version__
from vecbridge.errors import UserError

# Each module defines `register(subparsers)` (adds its parser, sets `func`) and owns one verb of the CLI.
COMMANDS = ["data", "encoders", "embed", "train", "translate", "eval"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vecbridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vecbridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"vecbridge.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, AlignError, EncoderError) as e:
        print(f"vecbridge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vecbridge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
