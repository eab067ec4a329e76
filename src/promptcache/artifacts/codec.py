"""The stored form of an artifact value: what is written, what is scanned, what comes back.

:func:`to_plain` turns a value into JSON types, tagging what JSON cannot say: dataclasses,
pydantic models, attrs classes and named tuples (by their fields and their class's import
path), tuples, bytes, dates, times, UUIDs and enum members. The payload is that form as
JSON, and the secret scan reads that same form (:func:`scan_view`): what is scanned is
exactly what is stored, whatever the object types were. :func:`from_plain` gives the value
back with its types.

A class comes back as itself when it is found, already imported, at the path recorded
(``module:qualname``) and is still of the same sort (a dataclass is still a dataclass).
Nothing is ever imported on a read and no ``__init__`` runs: a dataclass or attrs instance
is rebuilt field by field, as :mod:`copy` does, a named tuple by ``_make``, a pydantic model
by ``model_validate``. A class that cannot be found (defined inside a function, or not
imported in the reading process) comes back as its plain form: a dict of its fields (a list
for a named tuple), the value of an enum member. Attributes that are not fields (set in
``__post_init__`` outside ``fields()``) are not stored; pydantic fields are read as
attributes, so a ``SecretStr`` (no JSON form) makes the value unstorable rather than stored.

>>> import dataclasses
>>> @dataclasses.dataclass
... class Fare:
...     route: str
...     usd: int
>>> plain = to_plain({"fare": Fare("SFO-JFK", 210), "raw": b"ok"})
>>> plain["raw"]
{'$pc': 'bytes', 'b64': 'b2s='}
>>> from_plain(plain)["raw"]
b'ok'
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import enum
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["TAG", "from_plain", "scan_view", "to_plain"]

#: The key that marks a tagged value; a caller's dict holding it is itself tagged (``dict``).
TAG = "$pc"


def to_plain(value: Any) -> Any:
    """``value`` as JSON types, with tags for the types JSON lacks; ``TypeError`` for any other type."""
    try:
        return _plain(value)
    except RecursionError:
        raise TypeError("value nested too deeply to store") from None


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _obj(sort: str, value: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {TAG: sort, "type": _path(type(value)), "fields": {k: _plain(v) for k, v in fields.items()}}


def _plain(value: Any) -> Any:
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, enum.Enum):
        return {TAG: "enum", "type": _path(type(value)), "value": _plain(value.value)}
    if isinstance(value, Mapping):
        items = {}
        for k, v in value.items():
            if type(k) is not str:
                raise TypeError(f"a stored mapping's keys are strings, not {type(k).__name__}")
            items[k] = _plain(v)
        return {TAG: "dict", "items": items} if TAG in items else items
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        if hasattr(type(value), "_fields"):
            names: tuple[str, ...] = type(value)._fields  # type: ignore[attr-defined]
            return _obj("namedtuple", value, dict(zip(names, value, strict=True)))
        return {TAG: "tuple", "items": [_plain(v) for v in value]}
    if isinstance(value, bytes | bytearray | memoryview):
        return {TAG: "bytes", "b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, BaseModel):
        fields = {k: getattr(value, k) for k in type(value).model_fields}
        fields.update(value.model_extra or {})
        return _obj("pydantic", value, fields)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _obj("dataclass", value, {f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if _is_attrs(type(value)):
        return _obj("attrs", value, {name: getattr(value, name) for name in _attrs_fields(type(value))})
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return {TAG: type(value).__name__, "iso": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "hex": value.hex}
    if isinstance(value, str | int | float):  # subclasses of the JSON scalars
        return _plain(type(value).__mro__[-2](value))
    raise TypeError(f"{type(value).__name__} has no stored form")


def _is_attrs(cls: type) -> bool:
    # What attrs.has() checks; attrs itself is imported only once such a class is seen (the
    # core does not depend on it, and an attrs class cannot exist without it).
    return getattr(cls, "__attrs_attrs__", None) is not None


def _attrs_fields(cls: type) -> list[str]:
    import attrs

    return [a.name for a in attrs.fields(cls)]


def scan_view(plain: Any) -> Any:
    """The plain form as a scanner should read it: stored bytes as their text (not base64)."""
    if isinstance(plain, list):
        return [scan_view(v) for v in plain]
    if not isinstance(plain, dict):
        return plain
    if plain.get(TAG) == "bytes" and isinstance(plain.get("b64"), str):
        try:
            return base64.b64decode(plain["b64"]).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return plain
    return {k: scan_view(v) for k, v in plain.items()}


def from_plain(plain: Any) -> Any:
    """The value :func:`to_plain` stored, with its types (see the module docstring for the limits).

    ``ValueError`` or ``TypeError`` for a tagged value that is not well formed.
    """
    if isinstance(plain, list):
        return [from_plain(v) for v in plain]
    if not isinstance(plain, dict):
        return plain
    sort = plain.get(TAG)
    if sort is None:
        return {k: from_plain(v) for k, v in plain.items()}
    decode = _DECODERS.get(sort)
    if decode is None:
        raise ValueError(f"unknown stored sort {sort!r}")
    return decode(plain)


def _find(path: Any, check: Callable[[type], bool]) -> type | None:
    """The class at ``module:qualname`` if its module is already imported and it passes ``check``."""
    if not isinstance(path, str) or ":" not in path:
        return None
    module, qualname = path.split(":", 1)
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        if found is None or part.startswith("<"):
            return None
        found = getattr(found, part, None)
    return found if isinstance(found, type) and check(found) else None


def _fields(plain: dict[str, Any]) -> dict[str, Any]:
    fields = plain["fields"]
    if not isinstance(fields, dict):
        raise ValueError("stored fields are not a mapping")
    return {k: from_plain(v) for k, v in fields.items()}


def _set_fields(cls: Any, fields: dict[str, Any]) -> Any:
    # Field by field, without __init__ (as copy and pickle rebuild an instance): frozen and
    # slotted classes included, and no user code runs on a read.
    obj = cls.__new__(cls)
    for k, v in fields.items():
        object.__setattr__(obj, k, v)
    return obj


def _dataclass(plain: dict[str, Any]) -> Any:
    fields = _fields(plain)
    cls = _find(plain.get("type"), dataclasses.is_dataclass)
    if cls is None or {f.name for f in dataclasses.fields(cls)} != set(fields):
        return fields
    return _set_fields(cls, fields)


def _attrs(plain: dict[str, Any]) -> Any:
    fields = _fields(plain)
    cls = _find(plain.get("type"), _is_attrs)
    if cls is None or set(_attrs_fields(cls)) != set(fields):
        return fields
    return _set_fields(cls, fields)


def _pydantic(plain: dict[str, Any]) -> Any:
    fields = _fields(plain)
    cls = _find(plain.get("type"), lambda c: issubclass(c, BaseModel))
    return fields if cls is None else cls.model_validate(fields)  # type: ignore[attr-defined]


def _namedtuple(plain: dict[str, Any]) -> Any:
    fields = _fields(plain)
    cls = _find(plain.get("type"), lambda c: issubclass(c, tuple) and hasattr(c, "_fields"))
    if cls is None or tuple(cls._fields) != tuple(fields):  # type: ignore[attr-defined]
        return list(fields.values())
    return cls._make(fields.values())  # type: ignore[attr-defined]


def _enum(plain: dict[str, Any]) -> Any:
    value = from_plain(plain["value"])
    cls = _find(plain.get("type"), lambda c: issubclass(c, enum.Enum))
    return value if cls is None else cls(value)


def _items(plain: dict[str, Any]) -> Any:
    items = plain["items"]
    if not isinstance(items, list | dict):
        raise ValueError("stored items are not a list or a mapping")
    return from_plain(items) if isinstance(items, list) else {k: from_plain(v) for k, v in items.items()}


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "dict": _items,
    "tuple": lambda p: tuple(_items(p)),
    "bytes": lambda p: base64.b64decode(p["b64"], validate=True),
    "dataclass": _dataclass,
    "attrs": _attrs,
    "pydantic": _pydantic,
    "namedtuple": _namedtuple,
    "enum": _enum,
    "datetime": lambda p: dt.datetime.fromisoformat(p["iso"]),
    "date": lambda p: dt.date.fromisoformat(p["iso"]),
    "time": lambda p: dt.time.fromisoformat(p["iso"]),
    "uuid": lambda p: uuid.UUID(hex=p["hex"]),
}
