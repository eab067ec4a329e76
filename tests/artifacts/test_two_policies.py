"""One store, two policies: an entry is served only under the policy that admitted it.

Issue 19, item 5. Two ``PromptCache`` instances with different policies, both with the
default ``version: "1"`` (so their keys are equal), share one SQLite file (or one Redis
namespace). The lenient one caches a value holding an e-mail address; the strict one denies
that class. The strict one must never be served that entry: every entry carries the identity
of the policy that admitted it (a digest of the policy's content), and a reader under another
policy takes it as a miss, ``LookupReason.POLICY_MISMATCH``, and computes.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from promptcache import PromptCache
from promptcache.artifacts import LookupReason, RetrieverSpec, ToolSpec
from promptcache.policy import Policy
from promptcache.tiers import TieredStore

from . import _policy_procs

LENIENT = {"data_classes": {"pii.email": {"action": "allow"}}}
STRICT = {"data_classes": {"pii.email": {"action": "deny", "max_ttl": None}}}
SPEC = ToolSpec(name="get_contact", side_effect="read_only")
MAIL = {"name": "Jane", "mail": "jane.doe@example.com"}


def test_identity_is_the_content_not_the_version() -> None:
    assert Policy.load(LENIENT).version == Policy.load(STRICT).version == "1"
    assert Policy.load(LENIENT).identity != Policy.load(STRICT).identity
    # equal content, whatever the spelling: one identity
    assert Policy.load(LENIENT).identity == Policy.load({"version": "1", **LENIENT}).identity


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def location(request: pytest.FixtureRequest, tmp_path: Path, ns: str) -> Iterator[Callable[[], Any]]:
    """A factory of store specs naming one shared L2 (a SQLite directory or a Redis namespace)."""
    if request.param == "sqlite":
        yield lambda: str(tmp_path / "shared")
    else:
        url = request.getfixturevalue("redis_server").url
        yield lambda: TieredStore.from_redis(url, namespace=ns)


def test_the_strict_policy_is_never_served_the_lenient_ones_entry(location: Callable[[], Any]) -> None:
    lenient = PromptCache(LENIENT, store=location(), record_stats=False)
    strict = PromptCache(STRICT, store=location(), record_stats=False)
    try:
        stored = lenient.tools.call(SPEC, {"id": 7}, lambda id: MAIL, tenant="acme")
        assert stored.lookup.stored and stored.lookup.reason is LookupReason.STORED
        lenient.store.flush()
        assert lenient.tools.call(SPEC, {"id": 7}, lambda id: {}, tenant="acme").lookup.hit

        calls = 0

        def fresh(id: int) -> dict[str, str]:
            nonlocal calls
            calls += 1
            return MAIL

        served = strict.tools.call(SPEC, {"id": 7}, fresh, tenant="acme")
        assert calls == 1, "the strict policy was served an entry its policy denies"
        assert not served.lookup.hit and served.lookup.reason is LookupReason.POLICY_MISMATCH
        assert not served.lookup.stored  # and its own policy denies storing it
        assert strict.tools.stats().policy_mismatch == 1 and strict.tools.stats().refused_policy == 1
        assert strict.tools.call(SPEC, {"id": 7}, fresh, tenant="acme").lookup.reason is (
            LookupReason.POLICY_MISMATCH
        )
        assert calls == 2  # still never served
        # the lenient one still reads its own entry
        assert lenient.tools.call(SPEC, {"id": 7}, lambda id: {}, tenant="acme").value == MAIL
    finally:
        lenient.close()
        strict.close()


def test_an_entry_the_reader_admits_is_stored_anew_under_its_own_policy(tmp_path: Path) -> None:
    a = PromptCache(LENIENT, store=str(tmp_path), record_stats=False)
    b = PromptCache(
        {"allow_public": False, "entries": {"tool_output": {"ttl": {"default": 60}}}},
        store=str(tmp_path),
        record_stats=False,
    )
    try:
        a.tools.call(SPEC, {"id": 1}, lambda id: {"n": 1}, tenant="acme")
        a.store.flush()
        first = b.tools.call(SPEC, {"id": 1}, lambda id: {"n": 2}, tenant="acme")
        assert first.lookup.reason is LookupReason.POLICY_MISMATCH and first.lookup.stored
        assert first.lookup.ttl_seconds == 60  # b's own decision
        again = b.tools.call(SPEC, {"id": 1}, lambda id: {"n": 3}, tenant="acme")
        assert again.lookup.hit and again.value == {"n": 2}
    finally:
        a.close()
        b.close()


async def test_asyncio_and_retrieval_check_the_policy_too(tmp_path: Path) -> None:
    a = PromptCache(LENIENT, store=str(tmp_path), record_stats=False)
    b = PromptCache(STRICT, store=str(tmp_path), record_stats=False)
    docs = [{"id": "d1", "text": "write to jane.doe@example.com"}]
    spec = RetrieverSpec(name="kb", index_version="1")

    async def search(query: str) -> list[dict[str, str]]:
        return docs

    try:
        first = await a.retrieval.aretrieve("jane", search, tenant="acme", retriever=spec)
        assert first.lookup.stored
        a.store.flush()
        served = await b.retrieval.aretrieve("jane", search, tenant="acme", retriever=spec)
        assert served.lookup.reason is LookupReason.POLICY_MISMATCH and not served.lookup.hit
        tool = await b.tools.acall(SPEC, {"id": 9}, lambda id: MAIL, tenant="acme")
        assert tool.lookup.reason is LookupReason.PII  # nothing there: its own refusal
    finally:
        a.close()
        b.close()


def test_concurrent_callers_under_another_policy_do_not_share_a_flight(tmp_path: Path) -> None:
    """Two caches on one TieredStore object share its flights: a result is taken only under one policy."""
    store = TieredStore.default(tmp_path)
    lenient = PromptCache(LENIENT, store=store, record_stats=False)
    strict = PromptCache(STRICT, store=store, record_stats=False)
    gate, started = threading.Event(), threading.Event()
    out: dict[str, Any] = {}

    def slow(id: int) -> dict[str, str]:
        started.set()
        assert gate.wait(30)
        return MAIL

    t = threading.Thread(
        target=lambda: out.update(a=lenient.tools.call(SPEC, {"id": 3}, slow, tenant="acme"))
    )
    t.start()
    assert started.wait(30)
    b = threading.Thread(
        target=lambda: out.update(b=strict.tools.call(SPEC, {"id": 3}, lambda id: MAIL, tenant="acme"))
    )
    b.start()
    while b.is_alive() and store.stats().single_flight_waiters == 0:
        b.join(0.005)
    gate.set()
    t.join(30)
    b.join(30)
    assert out["a"].lookup.stored
    assert not out["b"].lookup.hit and out["b"].lookup.reason in (
        LookupReason.POLICY_MISMATCH,
        LookupReason.PII,
    )
    store.close()


def test_two_processes_two_policies_one_file(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_policy_procs.store_under, args=(str(tmp_path), LENIENT, q))
    p.start()
    assert q.get(timeout=60) == "stored"
    p.join(30)
    strict = PromptCache(STRICT, store=str(tmp_path), record_stats=False)
    try:
        res = strict.tools.call(SPEC, {"id": 7}, lambda id: {"other": True}, tenant="acme")
        assert res.value == {"other": True}
        assert res.lookup.reason is LookupReason.POLICY_MISMATCH
    finally:
        strict.close()


def test_the_entry_header_carries_the_policy_and_older_headers_read_as_none() -> None:
    import orjson

    from promptcache.tiers.entry import _HEADER, MAGIC, SCHEMA_VERSION, Entry, decode_entry, encode_entry

    e = Entry.new("k" * 64, b"v", tenant="t", entry_type="tool_output", created_at=1.0, policy="p" * 32)
    back = decode_entry(encode_entry(e))
    assert back is not None and back.policy == "p" * 32 and back == e
    # a header written before entries carried a policy: readable, admitted by no policy
    meta = {k: v for k, v in orjson.loads(encode_entry(e)[_HEADER.size : -1]).items() if k != "policy"}
    head = orjson.dumps(meta)
    old = decode_entry(_HEADER.pack(MAGIC, SCHEMA_VERSION, len(head)) + head + b"v")
    assert old is not None and old.policy is None and old.payload == b"v"
