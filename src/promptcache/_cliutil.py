"""What every ``promptcache`` subcommand shares: progress on a terminal, plain help text, the version.

Progress goes to stderr and only when stderr is a terminal and ``rich`` is installed, so
``--json`` on stdout and piped output are never touched; without ``rich`` the commands run the
same, silently.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Progress", "plain_help", "progress", "progress_wanted", "version"]

Progress = Callable[[int], None]
"""An update callback: ``update(done)`` with how many items are finished."""


def version() -> str:
    """The installed version of the ``promptcache-core`` distribution.

    Never the ``promptcache`` distribution's: that PyPI name belongs to an unrelated project.
    """
    from importlib import metadata

    try:
        return metadata.version("promptcache-core")
    except metadata.PackageNotFoundError:
        pass
    import promptcache

    return str(getattr(promptcache, "__version__", "unknown"))


def progress_wanted(disabled: bool = False) -> bool:
    """Whether a progress display may be shown: stderr is a terminal and ``rich`` is importable."""
    if disabled or not sys.stderr.isatty():
        return False
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return False
    return True


def _noop(done: int) -> None:
    del done


@contextmanager
def progress(label: str, total: int | None = None, *, enabled: bool = True) -> Iterator[Progress]:
    """A progress bar (``total`` known) or spinner (``total`` None) on stderr, as an update callback.

    Nothing is shown when ``enabled`` is false, stderr is not a terminal or ``rich`` is missing;
    the callback is then a no-op, so callers never branch.
    """
    if not enabled or not progress_wanted():
        yield _noop
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    bar = RichProgress(*columns, console=Console(stderr=True), transient=True)
    task = bar.add_task(label, total=total)
    with bar:

        def update(done: int) -> None:
            bar.update(task, completed=done)

        yield update


# reST that reads badly in a terminal: roles (:class:`~a.b.C`), literals (``x``), table rules.
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_TILDE_PATH = re.compile(r"^(?:[\w]+\.)+(\w+)$")
_LITERAL = re.compile(r"``([^`]*)``")
_TABLE_RULE = re.compile(r"^[ \t]*=+(?:[ \t]+=+)*[ \t]*$", re.MULTILINE)
_DIRECTIVE = re.compile(r"^\.\. [a-z-]+::.*$", re.MULTILINE)


def _role(m: re.Match[str]) -> str:
    text = m.group(1).strip()
    short = _TILDE_PATH.match(text)
    # :class:`~a.b.C` shows C in rendered docs; a full dotted path is kept (the reader may import it).
    return short.group(1) if short and m.group(0).find("~") != -1 else text


def plain_help(text: str | None) -> str | None:
    """``text`` without reST markup, for ``--help`` pages (docstrings double as descriptions)."""
    if not text:
        return text
    out = _ROLE.sub(_role, text)
    out = _LITERAL.sub(r"\1", out)
    out = _DIRECTIVE.sub("", out)
    out = _TABLE_RULE.sub("", out)
    out = out.replace("::\n", ":\n")
    return re.sub(r"\n{3,}", "\n\n", out)
