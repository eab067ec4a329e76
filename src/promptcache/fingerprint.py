"""Has this JSON-like value changed since last time? Without serializing it again.

The warm path sees the same tool list and the same history on every call of an
agent, usually as the very same objects, but a caller may mutate any of them in
place between calls, so identity proves nothing. A *record* taken of a value
answers the question by value: :func:`same` is true only when the value would
serialize to the same JSON bytes, key order included, as when the record was
taken. It may answer "changed" for a value whose bytes are unchanged (a list
replaced by a tuple, a dict subclass); callers then take their full path, which
is correct, only slower.

Records come from the native module ``promptcache._speedups`` when it was built
(untouched objects are recognized without looking at their content; others are
walked against a flat copy) and otherwise are the value's JSON bytes, serialized
again to compare; both keep the contract above, and the tests hold them to it.

>>> rec = take({"name": "search", "strict": True})
>>> same({"name": "search", "strict": True}, rec), same({"name": "search", "strict": 1}, rec)
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

__all__ = ["NATIVE", "Record", "common_prefix", "same", "str_values_only", "take"]

#: A record of a value (opaque: compare values against it with :func:`same`).
Record = Any


def str_values_only(d: dict[str, Any]) -> bool:
    """True when every value of ``d`` is a ``str`` or ``None`` (most chat messages)."""
    # A loop, not all() over a generator: this runs for every new message.
    for v in d.values():  # noqa: SIM110
        if type(v) is not str and v is not None:
            return False
    return True


def py_take(value: Any) -> Record | None:
    """Pure-Python :func:`take`: the value's JSON, or None when it has none."""
    try:
        return orjson.dumps(value)
    except TypeError:  # not JSON, or nested past orjson's limit
        return None


def py_same(value: Any, record: Record) -> bool:
    """Pure-Python :func:`same`."""
    try:
        return bool(orjson.dumps(value) == record)
    except TypeError:
        return False


def py_common_prefix(values: Sequence[Any], records: Sequence[Record]) -> int:
    """Pure-Python :func:`common_prefix`."""
    k = 0
    limit = min(len(values), len(records))
    while k < limit and py_same(values[k], records[k]):
        k += 1
    return k


try:
    from promptcache import _speedups
except ImportError:  # built without a C compiler: the fallback keeps the same contract
    _speedups = None  # type: ignore[assignment]

#: Whether records come from the native module.
NATIVE: bool = _speedups is not None

# Module-level names, not wrappers: a call here runs on every warm request.
if _speedups is not None:
    take = _speedups.take
    same = _speedups.same
    common_prefix = _speedups.common_prefix
else:
    take = py_take
    same = py_same
    common_prefix = py_common_prefix
