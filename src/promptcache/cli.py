"""The ``promptcache`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``,
which adds its parser and sets ``func`` (a callable taking the parsed
arguments and returning an exit code). The parser knows the commands by name
(:data:`COMMANDS`) and imports a command's module only when that command is
chosen: ``promptcache --help`` and ``promptcache stats`` load none of the lab
(simulator, emulator, bench, report and their dependencies).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from promptcache._cliutil import plain_help, version

__all__ = ["COMMANDS", "Command", "build_parser", "main", "walk_parsers"]


class Command(NamedTuple):
    """A subcommand: its name, the module whose ``register`` builds it, and its one-line help."""

    name: str
    module: str
    help: str


COMMANDS: tuple[Command, ...] = (
    Command(
        "demo",
        "promptcache.lab.demo",
        "a real LangChain agent without and with promptcache (--core: offline core simulation)",
    ),
    Command(
        "emulate",
        "promptcache.lab.emulate",
        "serve an offline Anthropic/OpenAI/Gemini-compatible API with simulated cache usage",
    ),
    Command("bench", "promptcache.lab.bench", "offline cache hit-rate benchmarks"),
    Command(
        "audit",
        "promptcache.lab.audit",
        "cacheable share, cache killers and projected savings of a request log",
    ),
    Command(
        "proxy",
        "promptcache.gateway.cli",
        "an HTTP gateway that applies promptcache to any OpenAI/Anthropic client (base_url)",
    ),
    Command(
        "invalidate",
        "promptcache.invalidate_cli",
        "make every cache entry with a tag unreadable, in every process",
    ),
    Command(
        "stats",
        "promptcache.stats_cli",
        "hit rate, cached share, cost avoided and top miss reasons from the store",
    ),
    Command(
        "report",
        "promptcache.lab.report",
        "HTML report with charts from bench, audit, metrics or a request log",
    ),
    Command(
        "replay",
        "promptcache.lab.replay",
        "replay recorded requests with and without promptcache; fail if any content is lost",
    ),
)
"""Every subcommand, in the order ``promptcache --help`` lists them (the help shown there is this one)."""


if TYPE_CHECKING:  # generic only in the stubs
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    _SubParsers = argparse._SubParsersAction


class _LazySubcommands(_SubParsers):
    """Subcommands known by name whose parsers are built, from their module, when first needed.

    Until then each holds a placeholder parser: listing the commands needs only the names and
    help in :data:`COMMANDS`, and building every command's parser would import every module.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[str, str] = {}

    def add_lazy(self, command: Command) -> None:
        """List ``command`` without importing its module."""
        self.add_parser(command.name, help=command.help, add_help=False)
        self._pending[command.name] = command.module

    def load(self, name: str) -> argparse.ArgumentParser:
        """The real parser of ``name``, importing its module and registering it on first use."""
        module = self._pending.pop(name, None)
        if module is None:
            return self._name_parser_map[name]
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            raise argparse.ArgumentError(self, f"command {name!r} is not installed ({module})") from exc
        index = next(i for i, a in enumerate(self._choices_actions) if a.dest == name)
        placeholder = self._choices_actions.pop(index)
        del self._name_parser_map[name]
        register: Callable[[Any], None] = mod.register
        register(self)
        parser = self._name_parser_map.get(name)
        if parser is None:
            raise RuntimeError(f"{module}.register() did not add the {name!r} command")
        # Keep the command's place in the listing (register() appended its entry at the end).
        added = next((i for i, a in enumerate(self._choices_actions) if a.dest == name), None)
        entry = placeholder if added is None else self._choices_actions.pop(added)
        self._choices_actions.insert(index, entry)
        _plain(parser)
        return parser

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        """Build the chosen command's parser, then let it parse the rest of the line."""
        if isinstance(values, list | tuple) and values and values[0] in self._pending:
            self.load(values[0])
        super().__call__(parser, namespace, values, option_string)


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[_SubParsers]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield action


def walk_parsers(
    parser: argparse.ArgumentParser, *, load: bool = True
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every subparser below it, each with its command path (``promptcache bench hitrate``).

    Commands not built yet are built first (their modules imported), unless ``load`` is false.
    """
    yield parser.prog, parser
    for action in _subcommands(parser):
        if load and isinstance(action, _LazySubcommands):
            for name in list(action._pending):
                action.load(name)
        for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
            yield from walk_parsers(sub, load=load)


def _plain(parser: argparse.ArgumentParser) -> None:
    # Module docstrings double as descriptions; a terminal shows their reST markup verbatim.
    for _, p in walk_parsers(parser, load=False):
        p.description = plain_help(p.description)
        p.epilog = plain_help(p.epilog)
        for action in p._actions:
            action.help = plain_help(action.help)
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    choice.help = plain_help(choice.help)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand listed; a command's module is imported when it is chosen."""
    parser = argparse.ArgumentParser(prog="promptcache", description="Prompt caching for agent frameworks.")
    parser.add_argument("--version", action="version", version=f"promptcache {version()}")
    sub = cast(
        "_LazySubcommands",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND", action=_LazySubcommands),
    )
    for command in COMMANDS:
        sub.add_lazy(command)
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
