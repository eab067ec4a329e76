"""Pydantic models built from values promptcache made and checked itself, without validation.

The engine and the integrations build several models on the path of every model call (a plan,
its blocks, the provider usage, the call's figures, the explanation). Validating values the code
has just computed with their declared types cost a visible share of a warm call, and
``model_construct`` costs about as much as validating; :func:`unchecked` does only what
``model_construct`` ends with, in native code where ``promptcache._speedups`` was built (each
``object.__setattr__`` from Python is a wrapper-descriptor call of its own). Callers are
responsible for the values having the declared types; each caller's tests compare its result
with the validated constructor's.

>>> from promptcache.usage import CacheUsage
>>> u = unchecked(CacheUsage, {"provider": "openai", "model": None, "input_tokens": 10,
...     "cache_read_tokens": 0, "cache_write_tokens": 0, "cache_write_tokens_by_ttl": {},
...     "output_tokens": 1, "thinking_tokens": 0}, fields_set={"provider", "input_tokens", "output_tokens"})
>>> u == CacheUsage(provider="openai", input_tokens=10, output_tokens=1)
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["unchecked"]

M = TypeVar("M", bound=BaseModel)


def _unchecked_py(
    cls: type[M],
    values: dict[str, Any],
    fields_set: set[str] | None,
    private: dict[str, Any] | None,
) -> M:
    # What the native function does, for an install without promptcache._speedups.
    out = cls.__new__(cls)
    object.__setattr__(out, "__dict__", values)
    object.__setattr__(out, "__pydantic_fields_set__", set(values) if fields_set is None else fields_set)
    object.__setattr__(out, "__pydantic_extra__", None)
    object.__setattr__(out, "__pydantic_private__", private)
    return out


_Build = Callable[[type[Any], dict[str, Any], set[str] | None, dict[str, Any] | None], Any]
_build: _Build
try:
    from promptcache._speedups import unchecked as _build
except ImportError:  # built without the extension: the same steps in Python
    _build = _unchecked_py


def unchecked(
    cls: type[M],
    values: dict[str, Any],
    *,
    fields_set: set[str] | None = None,
    private: dict[str, Any] | None = None,
) -> M:
    """An instance of ``cls`` holding ``values`` (every field, in declaration order) as given.

    ``fields_set`` is what ``model_fields_set`` reports (default: every key of ``values``);
    ``private`` the model's private attributes (None for a model without any).
    """
    out: M = _build(cls, values, fields_set, private)
    return out
