"""`ckpt-tui` entry point: `ckpt-tui ROOT` opens the app; `ckpt-tui <command> ...` is the JSON CLI.

Each command group lives in its own module exposing ``register(subparsers)``; a command's handler
returns the exit code. Heavy imports (textual, pandas) happen inside handlers, never here.
"""

from __future__ import annotations

import argparse
import sys

from tui.cli import inspect_cmds, ops_cmds
from tui.core import cache
from tui.core.text import safe_message

COMMAND_MODULES = (inspect_cmds, ops_cmds)
EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or a missing path: printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ckpt-tui", description="Find, inspect, prune and promote checkpoints.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for module in COMMAND_MODULES:
        module.register(sub)
    for command in sub.choices.values():
        add_cache_option(command)
    return parser


def add_cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help=f"read every file afresh; neither read nor write the summary cache (also: {cache.ENV_DISABLE}=1)",
    )


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        if not argv or (argv[0] not in _command_names(parser) and argv[0] not in ("-h", "--help")):
            from tui.cli.app_cmd import run_app

            return run_app(argv)
        args = parser.parse_args(argv)
        if args.no_cache:
            cache.configure(enabled=False)
        return args.handler(args)
    except UsageError as e:
        # Arguments are echoed in usage errors: a path holding ESC must not drive the terminal.
        print(f"ckpt-tui: {safe_message(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
