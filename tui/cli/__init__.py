"""`ckpt-tui` entry point: `ckpt-tui ROOT` opens the app; `ckpt-tui <command> ...` is the JSON CLI.

Dispatch: a first argument that is a command name runs the command, even when a folder of that name
exists (``ckpt-tui ./ls`` opens such a folder); ``-h``/``--help`` and ``--version`` are the program's;
anything else is the app's ``ROOT [options]``. Each command group lives in its own module exposing
``register(subparsers)``; a command's handler returns the exit code. Heavy imports (textual, pandas)
happen inside handlers, never here. Running a command imports and registers only its own module
(``COMMANDS`` names it): start-up is paid by every ``ls``; ``--help`` registers them all.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys

from tui import __version__
from tui.core import cache
from tui.core.text import safe_message

# command -> the module of tui.cli that registers it, in the order `--help` lists them (a test checks
# that each module registers exactly these).
COMMANDS = {
    "ls": "inspect_cmds", "inspect": "inspect_cmds", "metrics": "inspect_cmds", "diff": "diff_cmd",
    "rm": "ops_cmds", "slim": "ops_cmds", "prune": "ops_cmds", "promote": "ops_cmds", "trash": "ops_cmds",
    "convert": "convert_cmd", "runs": "runs_cmds", "ensemble": "runs_cmds", "serve": "serve_cmd", "du": "du_cmd",
}  # fmt: skip
# see main(); never a long-running one (serve). ls makes full collections rare instead (inspect_cmds).
NO_CYCLE_COLLECTION = frozenset({"inspect"})
EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
PROGRAM_FLAGS = ("-h", "--help", "--version")
HELP_WIDTH = 78


class UsageError(Exception):
    """Bad arguments or a missing path: printed as one line, exit 2."""


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, whose width is read here rather than by argparse's `import shutil` (and with
    it bz2 and lzma: ~1.5 ms of every command's start, since each add_argument makes a formatter)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size reads it: COLUMNS, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(message)


USAGE = "ckpt-tui ROOT [--poll SECONDS] [--keep K] [--metric NAME] [--no-cache]\n       ckpt-tui COMMAND ..."
DISPATCH = (
    "A first argument that names a command runs it, even when a folder of that name exists; to open a "
    "folder named like a command, write it as a path:"
)


def _app_help() -> str:
    """The app's arguments, as `ckpt-tui ROOT --help` lists them, for the top-level help."""
    from tui.cli.app_cmd import build_parser as app_parser

    lines = ["ckpt-tui ROOT [options] opens the app (a keyboard-driven browser) on ROOT:"]
    for action in app_parser()._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = action.metavar if not action.option_strings else " ".join(action.option_strings)
        if action.option_strings and action.metavar:
            name += f" {action.metavar}"
        lines.append(f"  {name:<20}{action.help}")
    return "\n".join(lines)


def command_module(name: str):
    return importlib.import_module(f"tui.cli.{name}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser (``--help``), or with ``only`` the command that module registers: nothing else
    is imported or built (the top level's help text included)."""
    if only is not None:
        parser = _Parser(prog="ckpt-tui", usage=USAGE)
        sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
        command_module(COMMANDS[only]).register(sub)
        for command in sub.choices.values():
            add_cache_option(command)
        return parser
    import textwrap

    parser = _Parser(
        prog="ckpt-tui",
        usage=USAGE,
        description=textwrap.fill(
            "Find, inspect, compare, prune and promote checkpoints: the app, and a CLI whose commands "
            "print tables for people and JSON with --json.",
            HELP_WIDTH,
        ),
        epilog="\n\n".join(
            [
                _app_help(),
                textwrap.fill(DISPATCH, HELP_WIDTH) + "\n  ckpt-tui ./ls       opens the folder ls",
                textwrap.fill(
                    "Exit codes: 0 done, 1 an action refused, 2 usage error. `ckpt-tui COMMAND --help` "
                    "for a command's options.",
                    HELP_WIDTH,
                ),
            ]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ckpt-tui {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND", title="commands")
    for name in dict.fromkeys(COMMANDS.values()):
        command_module(name).register(sub)
    for command in sub.choices.values():
        add_cache_option(command)
    return parser


def add_cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help=f"read every file afresh; neither read nor write the summary cache (also: {cache.ENV_DISABLE}=1)",
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = set(COMMANDS)
    try:
        if not argv:
            raise UsageError("give a ROOT folder to open the app, or a command (ckpt-tui --help lists them)")
        if argv[0] not in commands and argv[0] not in PROGRAM_FLAGS:
            from tui.cli.app_cmd import run_app

            return run_app(argv, commands)
        args = build_parser(argv[0] if argv[0] in commands else None).parse_args(argv)
        if args.no_cache:
            cache.configure(enabled=False)
        # inspect is short and builds trees of parsed headers that form no cycles: the cyclic collector,
        # run again and again as they pile up, finds nothing (~10% of an inspect of 10,000 tensors). When
        # any command returns the process is about to end: what it built is freed by reference counting,
        # and frozen it is not walked by the collection at interpreter exit (~15 ms after those tensors).
        gc.unfreeze()  # a caller running commands in one process (tests) gets back what the last one froze
        collecting = gc.isenabled()
        if args.command in NO_CYCLE_COLLECTION:
            gc.disable()
        try:
            return args.handler(args)
        finally:
            gc.freeze()
            if collecting:
                gc.enable()
    except UsageError as e:
        # Arguments are echoed in usage errors: a path holding ESC must not drive the terminal.
        print(f"ckpt-tui: {safe_message(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
