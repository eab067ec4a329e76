"""Has this JSON-like value changed since last time? Without serializing it again.

The warm path sees the same tool list and the same history on every call of an
agent, usually as the very same objects, but a caller may mutate any of them in
place between calls, so identity proves nothing. A *record* taken of a value
answers the question by value: :func:`same` is true only when the value would
serialize to the same JSON bytes, key order included, as when the record was
taken. It may answer "changed" for a value whose bytes are unchanged (a list
replaced by a tuple, a dict subclass); callers then take their full path, which
is correct, only slower.

:func:`common_prefix` (how many leading messages of a conversation are unchanged)
keeps a weaker contract: a value whose keys were only reordered may count as
unchanged, so it suits values compared by their sorted-key canonical form.

A record is the value's JSON bytes plus a value copy compared with ``==``.

>>> rec = take({"name": "search", "strict": True})
>>> same({"name": "search", "strict": True}, rec), same({"name": "search", "strict": 1}, rec)
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

__all__ = [
    "Record",
    "common_prefix",
    "same",
    "str_values_only",
    "take",
]

#: A record of a value (opaque: compare values against it with :func:`same`).
Record = Any


def str_values_only(d: dict[str, Any]) -> bool:
    """True when every value of ``d`` is a ``str`` or ``None`` (most chat messages)."""
    # A loop, not all() over a generator: this runs for every new message.
    for v in d.values():  # noqa: SIM110
        if type(v) is not str and v is not None:
            return False
    return True


class _NoCopy(Exception):
    """A value whose equality cannot stand in for equal JSON."""


class _Strict:
    """A number in a value copy: equal only to a number that serializes the same.

    ``1 == 1.0 == True`` and ``0.0 == -0.0`` in Python, but each serializes
    differently, so a copy must not let one stand for another.
    """

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        v = self.v
        if type(other) is not type(v) or other != v:
            return False
        # Equal floats differ in JSON only as 0.0 and -0.0.
        return type(v) is not float or v != 0.0 or str(other) == str(v)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]


def _value_copy(v: Any) -> Any:
    # Containers are copied, so a caller mutating its value in place is seen as a
    # change; strings are immutable and shared.
    t = type(v)
    if t is str or v is None:
        return v
    if t is dict:
        if str_values_only(v):  # most messages: strings only, so a shallow copy is a value copy
            return dict(v)
        return {k: _value_copy(x) for k, x in v.items()}
    if t is list:
        return [_value_copy(x) for x in v]
    if t is tuple:
        return tuple(_value_copy(x) for x in v)
    if t is int or t is float or t is bool:
        return _Strict(v)
    raise _NoCopy


def py_take(value: Any) -> Record | None:
    """Pure-Python :func:`take`: the value's JSON bytes and a value copy, or None.

    The bytes answer :func:`same`; the copy answers :func:`common_prefix`, where
    one C-level ``==`` over a list of copies is far cheaper than serializing
    every message again (it does not see key order: see :func:`common_prefix`).
    """
    try:
        return (orjson.dumps(value), _value_copy(value))
    except (TypeError, _NoCopy, RecursionError):  # not JSON, or nested past the limits
        return None


def py_same(value: Any, record: Record) -> bool:
    """Pure-Python :func:`same`."""
    try:
        return bool(orjson.dumps(value) == record[0])
    except TypeError:
        return False


def py_common_prefix(values: Sequence[Any], records: Sequence[Record]) -> int:
    """Pure-Python :func:`common_prefix`."""
    limit = min(len(values), len(records))
    copies = [r[1] for r in records[:limit]]
    # The usual warm call first: every value unchanged, settled by one C-level comparison.
    if limit and list(values[: limit - 1]) == copies[: limit - 1]:
        return limit if values[limit - 1] == copies[limit - 1] else limit - 1
    k = 0
    while k < limit and values[k] == copies[k]:
        k += 1
    return k


take = py_take
same = py_same
common_prefix = py_common_prefix
