"""The policy reference page (``reference/policy.md``), generated from the pydantic policy models.

An mkdocs hook (``hooks:`` in ``mkdocs.yml``): every ``mkdocs build`` or ``mkdocs serve``
renders the page from the code, so the reference cannot drift from it and a plain build of a
fresh clone finds the page. It lives outside ``docs/`` so that the site does not publish it.
``python docs_hooks/policy_reference.py`` prints the page.
"""

from __future__ import annotations

import sys
import types
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from mkdocs.structure.files import File
from pydantic import BaseModel

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files

PAGE = "reference/policy.md"
# The checkout being built documents its own code, even when the installed promptcache is
# another checkout's editable install (a second clone sharing one virtualenv).
_SRC = Path(__file__).resolve().parents[1] / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from promptcache.policy import Policy, parse_duration  # noqa: E402


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        is_duration = any(getattr(m, "func", None) is parse_duration for m in meta)
        return "duration" if is_duration else _type_name(base)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in get_args(tp))}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _default(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, dict):
        keys = [k.value if isinstance(k, Enum) else str(k) for k in value]
        return "keys: " + ", ".join(keys) if keys else "{}"
    if isinstance(value, frozenset | set):
        return "[]" if not value else str(sorted(value))
    return repr(value)


def _model_of(tp: Any) -> tuple[str, type[BaseModel]] | None:
    """(path suffix, model) when ``tp`` is a model or a dict of models."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "", tp
    if get_origin(tp) is dict:
        value = get_args(tp)[1]
        if isinstance(value, type) and issubclass(value, BaseModel):
            return "<key>.", value
    return None


def _rows(model: type[BaseModel], prefix: str, out: list[str]) -> None:
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        default = (
            "required" if field.is_required() else _default(field.get_default(call_default_factory=True))
        )
        desc = field.description or ""
        duration = any(getattr(m, "func", None) is parse_duration for m in field.metadata)
        type_name = "duration" if duration else _type_name(field.annotation)
        cells = [f"`{prefix}{name}`", type_name, default, desc]
        out.append("| " + " | ".join(c.replace("|", "\\|") if i else c for i, c in enumerate(cells)) + " |")
        found = _model_of(field.annotation)
        if found is not None:
            nested.append((f"{prefix}{name}.{found[0]}", found[1]))
    for p, m in nested:
        _rows(m, p, out)


def render() -> str:
    """The reference page, as markdown."""
    out = [
        "# Policy reference",
        "",
        "Generated from `promptcache.policy` at each docs build (`docs_hooks/policy_reference.py`).",
        'Durations are seconds or strings such as `"5m"`, `"1h"`, `"2d"`.',
        "",
        "| field | type | default | meaning |",
        "|---|---|---|---|",
    ]
    _rows(Policy, "", out)
    return "\n".join(out) + "\n"


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    """mkdocs hook: add the generated page to the site's files."""
    stale = files.get_file_from_path(PAGE)
    if stale is not None:  # written into docs/ by an older ``make docs``: the code wins
        files.remove(stale)
    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    sys.stdout.write(render())
