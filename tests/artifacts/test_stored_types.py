"""Issue 19, item 1: every object type the encoder stores is scanned, and comes back as itself.

Over a real SQLite file and a real redis-server (``shared_l2``): one worker computes and
stores, a second worker with its own empty L1 reads it from L2, so the value it gets is
decoded from the stored bytes, not the object kept in memory.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import pytest
from pydantic import BaseModel

from promptcache.artifacts import LookupResult, ToolOutputCache, ToolSpec, open_store
from promptcache.figures import LookupReason
from promptcache.policy import Policy
from promptcache.scan import Hit

from .conftest import StoreFactory

OPENAI_KEY = "sk-proj-" + "Qm7rT2xK9pL4vN8wB3cZ6hJ1dF5gS0aYeU-iO_tRq4Wn"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzX9aB4c5D"
READ = ToolSpec(name="lookup", side_effect="read_only", ttl=3600)
SharedL2 = tuple[StoreFactory, Callable[[], list[bytes]]]


@dataclasses.dataclass(frozen=True, slots=True)
class Credential:
    name: str
    value: str


class Profile(BaseModel):
    user: str
    credential: Credential
    tags: tuple[str, ...] = ()


@attrs.define
class Row:
    key: str
    note: str


class Pair(NamedTuple):
    left: int
    right: str


class Colour(enum.Enum):
    RED = "red"


def _workers(shared_l2: SharedL2) -> tuple[ToolOutputCache, ToolOutputCache]:
    make, _ = shared_l2
    return ToolOutputCache(make(), Policy()), ToolOutputCache(make(), Policy())


def test_object_types_come_back_with_their_types_from_l2(shared_l2: SharedL2) -> None:
    value = {
        "profile": Profile(user="ana", credential=Credential("db", "ok"), tags=("a", "b")),
        "row": Row("k", "n"),
        "pair": Pair(1, "r"),
        "raw": b"\x00\xffbinary",
        "tuple": (1, (2, "x")),
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "day": dt.date(2026, 1, 2),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "colour": Colour.RED,
        "$pc": "a caller's own key that looks like our tag",
        "nested": [Credential("a", "b"), {"deep": Pair(2, "s")}],
    }
    writer, reader = _workers(shared_l2)
    assert writer.call(READ, {"i": 1}, lambda i: value, tenant="acme").lookup.stored
    writer.store.flush()
    served = reader.call(READ, {"i": 1}, lambda i: pytest.fail("must be served from L2"), tenant="acme")
    assert served.lookup.hit and served.lookup.tier == "l2"
    got = served.value
    assert got == value
    assert type(got["profile"]) is Profile and type(got["profile"].credential) is Credential
    assert type(got["row"]) is Row and type(got["pair"]) is Pair and type(got["nested"][1]["deep"]) is Pair
    assert type(got["raw"]) is bytes and type(got["tuple"]) is tuple and got["colour"] is Colour.RED


def test_a_class_the_reader_cannot_find_comes_back_as_its_fields(shared_l2: SharedL2) -> None:
    @dataclasses.dataclass
    class Local:  # defined in a function: no import path leads to it
        a: int

    writer, reader = _workers(shared_l2)
    writer.call(READ, {"i": 2}, lambda i: Local(1), tenant="acme")
    writer.store.flush()
    served = reader.call(READ, {"i": 2}, lambda i: Local(1), tenant="acme")
    assert served.lookup.tier == "l2" and served.value == {"a": 1}


SECRET_FORMS: dict[str, Callable[[], Any]] = {
    "dataclass": lambda: Credential("openai", OPENAI_KEY),
    "pydantic": lambda: Profile(user="ana", credential=Credential("openai", OPENAI_KEY)),
    "attrs": lambda: Row("openai", OPENAI_KEY),
    "namedtuple": lambda: Pair(1, OPENAI_KEY),
    "bytes": lambda: f"OPENAI_API_KEY={OPENAI_KEY}\n".encode(),
    "tuple": lambda: ("key", OPENAI_KEY),
    "nested_mix": lambda: {"rows": [Row("a", "b"), Pair(2, "x")], "cfg": (Credential("k", OPENAI_KEY),)},
    "quoted_in_dataclass": lambda: Credential("aws", f'aws_secret_access_key = "{AWS_SECRET}"'),
}


@pytest.mark.parametrize("form", list(SECRET_FORMS))
def test_a_secret_inside_any_stored_type_is_never_written(shared_l2: SharedL2, form: str) -> None:
    make, raw = shared_l2
    tools = ToolOutputCache(make(), Policy())
    value = SECRET_FORMS[form]()
    served = tools.call(READ, {"form": form}, lambda form: value, tenant="acme")
    tools.store.flush()
    assert served.value == value  # the caller still gets its value
    assert served.lookup.reason is LookupReason.SECRET and not served.lookup.stored
    stored = b"".join(raw())
    for needle in (OPENAI_KEY[8:40], "wJalrXUtnFEMI"):
        assert needle.encode() not in stored
    if isinstance(value, bytes):
        assert base64.b64encode(value)[8:40] not in stored
    assert tools.stats().refused_secret == 1


# async and multi-process variants ------------------------------------------------------------


async def test_async_calls_store_and_serve_the_same_forms(shared_l2: SharedL2) -> None:
    make, raw = shared_l2
    writer, reader = ToolOutputCache(make(), Policy()), ToolOutputCache(make(), Policy())
    value = {"pair": Pair(3, "t"), "raw": b"\x01\x02", "row": Row("k", "n")}
    assert (await writer.acall(READ, {"i": 3}, lambda i: value, tenant="acme")).lookup.stored
    leaked = await writer.acall(READ, {"i": 4}, lambda i: Credential("k", OPENAI_KEY), tenant="acme")
    assert leaked.lookup.reason is LookupReason.SECRET
    writer.store.flush()
    served = await reader.acall(
        READ, {"i": 3}, lambda i: pytest.fail("must be served from L2"), tenant="acme"
    )
    assert served.lookup.tier == "l2" and served.value == value and type(served.value["pair"]) is Pair
    assert OPENAI_KEY[8:40].encode() not in b"".join(raw())


# The child stores values of classes both processes can import (promptcache's own dataclass and
# pydantic model, a stdlib named tuple), and one holding a secret; the parent reads them.
CHILD = """
import datetime as dt, sys, urllib.parse
from promptcache.artifacts import LookupResult, ToolSpec, open_store, ToolOutputCache
from promptcache.figures import LookupReason
from promptcache.scan import Hit
redis = sys.argv[1].startswith("redis")
store = open_store(sys.argv[1], namespace=sys.argv[2]) if redis else open_store(sys.argv[1])
tools = ToolOutputCache(store)
spec = ToolSpec(name="lookup", side_effect="read_only", ttl=3600)
value = {
    "hit": Hit(1, 2, "kind"),
    "lookup": LookupResult(hit=False, reason=LookupReason.STORED),
    "url": urllib.parse.urlparse("https://example.com/a?b=1"),
    "when": dt.date(2026, 12, 7),
    "raw": b"bytes",
}
assert tools.call(spec, {"i": 1}, lambda i: value, tenant="acme").lookup.stored
secret = Hit(0, 1, sys.argv[3])
assert not tools.call(spec, {"i": 2}, lambda i: secret, tenant="acme").lookup.stored
store.flush()
store.close()
"""


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_another_process_reads_the_types_back(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    location = str(tmp_path) if kind == "sqlite" else request.getfixturevalue("redis_server").url
    namespace = "st" + uuid.uuid4().hex[:8]
    subprocess.run([sys.executable, "-c", CHILD, location, namespace, OPENAI_KEY], check=True, timeout=120)
    store = open_store(location, namespace=namespace) if kind == "redis" else open_store(location)
    try:
        tools = ToolOutputCache(store, Policy())
        got = tools.call(READ, {"i": 1}, lambda i: pytest.fail("must be served from L2"), tenant="acme").value
        assert type(got["hit"]) is Hit and got["hit"] == Hit(1, 2, "kind")
        assert type(got["lookup"]) is LookupResult and got["lookup"].reason is LookupReason.STORED
        assert type(got["url"]) is urllib.parse.ParseResult and got["url"].netloc == "example.com"
        assert got["when"] == dt.date(2026, 12, 7) and got["raw"] == b"bytes"
        assert not tools.call(READ, {"i": 2}, lambda i: "recomputed", tenant="acme").lookup.hit
    finally:
        store.close()
