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
from collections.abc import Callable
from typing import Any

COMMAND_MODULES = [
    "promptcache.demo",
    "promptcache.emulate",
    "promptcache.bench",
    "promptcache.audit",
    "promptcache.invalidate_cli",
    "promptcache.stats_cli",
    "promptcache.report",
    "promptcache.replay",
]


def build_parser() -> argparse.ArgumentParser:
    """The parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(prog="promptcache", description="Prompt caching for agent frameworks.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        register: Callable[[Any], None] = mod.register
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``promptcache`` command."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    raise SystemExit(main())
