"""The ``promptcache`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``,
which adds its parser and sets ``func`` (a callable taking the parsed
arguments and returning an exit code). Modules that are not installed or not
written yet are skipped, so a missing optional dependency never breaks the
other commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from promptcache._cliutil import plain_help, version

COMMAND_MODULES = [
    "promptcache.lab.demo",
    "promptcache.lab.emulate",
    "promptcache.lab.bench",
    "promptcache.lab.audit",
    "promptcache.invalidate_cli",
    "promptcache.stats_cli",
    "promptcache.lab.report",
    "promptcache.lab.replay",
]


def walk_parsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every subparser below it, each with its command path (``promptcache bench hitrate``)."""
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield from walk_parsers(sub)


def _plain(parser: argparse.ArgumentParser) -> None:
    # Module docstrings double as descriptions; a terminal shows their reST markup verbatim.
    for _, p in walk_parsers(parser):
        p.description = plain_help(p.description)
        p.epilog = plain_help(p.epilog)
        for action in p._actions:
            action.help = plain_help(action.help)
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    choice.help = plain_help(choice.help)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(prog="promptcache", description="Prompt caching for agent frameworks.")
    parser.add_argument("--version", action="version", version=f"promptcache {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        register: Callable[[Any], None] = mod.register
        register(sub)
    _plain(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``promptcache`` command."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"promptcache {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
