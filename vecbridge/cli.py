"""The `vecbridge` command line: one subcommand per module in `vecbridge.commands`, errors as one line."""

from __future__ import annotations

import argparse
import importlib
import re
import signal
import sys
import threading

from vecbridge import __version__
from vecbridge.errors import UserError

# Each module defines `register(subparsers)` (adds its parser, sets `func`) and owns one verb of the CLI.
COMMANDS = ["data", "encoders", "embed", "train", "translate", "migrate", "eval", "stores", "serve", "audit"]


class Terminated(KeyboardInterrupt):
    """SIGTERM / SIGHUP, raised like Ctrl-C so that every staged file is removed on the way out."""


def _terminate(signum, frame):
    raise Terminated(signum)


class Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line, like every other error of the command line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _flags(parser: argparse.ArgumentParser, renamed: dict[str, str]) -> dict[str, str]:
    """Library parameter name -> this command's flag: each option's dest, plus the command's `PARAMETER_FLAGS`
    for parameters whose flag has another name."""
    flags = {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings}
    return {**flags, **renamed}


def flag_names(message: str, flags: dict[str, str]) -> str:
    """A library message as the command line says it: the parameters it names in backticks become flags."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: flags.get(m.group(1), m.group(0)), message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="vecbridge",
        description="Translate between text-embedding spaces without paired data: embed texts, train a "
                    "translator between two encoders' vectors, translate stored vectors, evaluate.")
    parser.add_argument("--version", action="version", version=f"vecbridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"vecbridge.commands.{name}")
        module.register(sub)
        sub.choices[name].set_defaults(flags=_flags(sub.choices[name], getattr(module, "PARAMETER_FLAGS", {})))
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed in one line
        return int(e.code or 0)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)} if main_thread else {}
    for s in previous:
        signal.signal(s, _terminate)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"vecbridge {args.command}: error: {flag_names(str(e), args.flags)}", file=sys.stderr)
        return 2
    except Terminated as e:
        print(f"vecbridge {args.command}: terminated by signal {e.args[0]}; nothing was published", file=sys.stderr)
        return 128 + int(e.args[0])
    except KeyboardInterrupt:
        print(f"vecbridge {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
