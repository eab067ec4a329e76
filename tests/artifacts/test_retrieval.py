"""RetrievalCache: normalized keys, re-authorization on every hit, invalidation, secrets, faults."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from promptcache.artifacts import RetrievalCache, RetrieverSpec, normalize_query
from promptcache.policy import Policy
from promptcache.tiers import TieredStore

from .conftest import StoreFactory

KB = RetrieverSpec(name="kb", config={"k": 3, "rerank": "bm25"}, index_version="42")
SECRET = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


class Corpus:
    """Documents and who may read them, counting retriever and authorizer calls."""

    def __init__(self) -> None:
        self.docs = [
            {"id": "d1", "text": "refunds take 5 days", "metadata": {"src": "faq"}, "score": 0.9},
            {"id": "d2", "text": "refunds need a receipt", "metadata": {}, "score": 0.7},
            {"id": "d3", "text": "internal: refund abuse list", "metadata": {}, "score": 0.5},
        ]
        self.readable: dict[str, set[str]] = {"t1": {"d1", "d2", "d3"}, "t2": {"d1"}}
        self.searches = 0
        self.auth_calls = 0

    def search(self, query: str) -> list[dict[str, Any]]:
        self.searches += 1
        return [dict(d) for d in self.docs]

    def authorize(self, tenant: str, ids: list[str]) -> list[str]:
        self.auth_calls += 1
        return [i for i in ids if i in self.readable.get(tenant, set())]


@pytest.fixture
def env(shared_l2: tuple[StoreFactory, Callable[[], list[bytes]]]) -> tuple[RetrievalCache, Corpus]:
    make, _ = shared_l2
    corpus = Corpus()
    return RetrievalCache(make(max_staleness_s=5.0), Policy(), authorize=corpus.authorize), corpus


def test_query_normalization_folds_whitespace_and_keeps_case() -> None:
    assert normalize_query("  refund\r\n\tpolicy  ") == "refund policy"
    assert normalize_query("Cafe\u0301") == "Café"
    assert normalize_query("Refund") != normalize_query("refund")


def test_hit_on_normalized_query_and_miss_on_every_key_component(env: tuple[RetrievalCache, Corpus]) -> None:
    rc, c = env
    first = rc.retrieve("refund  policy", c.search, tenant="t1", retriever=KB)
    hit = rc.retrieve(" refund\npolicy ", c.search, tenant="t1", retriever=KB)
    assert not first.lookup.hit and first.lookup.stored and hit.lookup.hit
    assert [d["id"] for d in hit.value] == ["d1", "d2", "d3"] and hit.trust == "untrusted"
    assert hit.value[0] == {
        "id": "d1",
        "text": "refunds take 5 days",
        "metadata": {"src": "faq"},
        "score": 0.9,
    }
    misses = [
        rc.retrieve("Refund policy", c.search, tenant="t1", retriever=KB),  # case matters
        rc.retrieve("refund policy", c.search, tenant="t2", retriever=KB),
        rc.retrieve("refund policy", c.search, tenant="t1", retriever=KB, scope="group:finance"),
        rc.retrieve("refund policy", c.search, tenant="t1", retriever=KB, filters={"lang": "en"}),
        rc.retrieve("refund policy", c.search, tenant="t1", retriever=KB, index_version="43"),
        rc.retrieve(
            "refund policy", c.search, tenant="t1", retriever=KB.model_copy(update={"config": {"k": 5}})
        ),
        rc.retrieve("refund policy", c.search, tenant="t1", retriever=KB.model_copy(update={"name": "kb2"})),
    ]
    assert not any(m.lookup.hit for m in misses) and c.searches == 8


def test_authorizer_is_asked_on_every_hit_and_drops_are_counted(env: tuple[RetrievalCache, Corpus]) -> None:
    rc, c = env
    rc.retrieve("refund", c.search, tenant="t1", retriever=KB)
    assert c.auth_calls == 0  # a miss is the retriever's own answer
    for expected_calls in (1, 2):
        hit = rc.retrieve("refund", c.search, tenant="t1", retriever=KB)
        assert hit.lookup.hit and len(hit.value) == 3 and c.auth_calls == expected_calls
    c.readable["t1"].discard("d3")  # access revoked after the result was cached
    hit = rc.retrieve("refund", c.search, tenant="t1", retriever=KB)
    assert hit.lookup.hit and [d["id"] for d in hit.value] == ["d1", "d2"]
    assert hit.lookup.dropped == 1 and "withheld" in hit.lookup.why and rc.stats().auth_dropped == 1
    c.readable["t1"].add("d3")  # granted again: the cached result is complete again
    assert len(rc.retrieve("refund", c.search, tenant="t1", retriever=KB).value) == 3
    assert c.searches == 1


def test_a_failing_authorizer_fails_closed(env: tuple[RetrievalCache, Corpus]) -> None:
    rc, c = env
    rc.retrieve("refund", c.search, tenant="t1", retriever=KB)

    def broken(tenant: str, ids: list[str]) -> list[str]:
        raise TimeoutError("acl service down")

    rc.authorize = broken
    out = rc.retrieve("refund", c.search, tenant="t1", retriever=KB)
    assert not out.lookup.hit and "authorizer failed" in out.lookup.why
    assert c.searches == 2 and rc.stats().auth_errors == 1


def test_index_and_retriever_tags_invalidate(
    shared_l2: tuple[StoreFactory, Callable[[], list[bytes]]],
) -> None:
    make, _ = shared_l2
    a, b = RetrievalCache(make()), RetrievalCache(make())
    c = Corpus()
    b.retrieve("q", c.search, tenant="t1", retriever=KB)
    b.store.flush()
    assert a.retrieve("q", c.search, tenant="t1", retriever=KB).lookup.tier == "l2"
    c.docs[0]["text"] = "refunds take 3 days"  # reindexed
    a.invalidate("index:kb@42")
    out = a.retrieve("q", c.search, tenant="t1", retriever=KB)
    assert not out.lookup.hit and out.value[0]["text"] == "refunds take 3 days"
    # b never serves its old copy (it may serve the fresh one a just wrote back)
    assert b.retrieve("q", c.search, tenant="t1", retriever=KB).value[0]["text"] == "refunds take 3 days"
    b.store.flush()
    b.invalidate("retriever:kb")
    assert not a.retrieve("q", c.search, tenant="t1", retriever=KB).lookup.hit


def test_secret_in_a_document_is_never_written(
    shared_l2: tuple[StoreFactory, Callable[[], list[bytes]]],
) -> None:
    make, raw = shared_l2
    store = make()
    rc, c = RetrievalCache(store), Corpus()
    c.docs.append({"id": "d4", "text": f"token={SECRET}", "metadata": {}, "score": 0.1})
    out = rc.retrieve("q", c.search, tenant="t1", retriever=KB)
    assert len(out.value) == 4 and not out.lookup.stored and rc.stats().refused_secret == 1
    c.docs.pop()
    assert rc.retrieve("q2", c.search, tenant="t1", retriever=KB).lookup.stored
    store.flush()
    blobs = raw()
    assert blobs and not any(SECRET.encode() in b for b in blobs)


def test_documents_that_are_not_plain_are_returned_uncached() -> None:
    rc = RetrievalCache(TieredStore())
    out = rc.retrieve(
        "q", lambda q: [{"id": "d1", "text": "t", "embedding": object()}], tenant="t", retriever=KB
    )
    assert not out.lookup.stored and rc.stats().unserializable == 1
    bad_filter = rc.retrieve("q", lambda q: [], tenant="t", retriever=KB, filters={"since": object()})
    assert "not JSON-serializable" in bad_filter.lookup.why and rc.stats().unkeyable == 1


async def test_async_twin(env: tuple[RetrievalCache, Corpus]) -> None:
    rc, c = env

    async def asearch(q: str) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return c.search(q)

    assert not (await rc.aretrieve("q", asearch, tenant="t2", retriever=KB)).lookup.hit
    hit = await rc.aretrieve("q", asearch, tenant="t2", retriever=KB)
    assert hit.lookup.hit and [d["id"] for d in hit.value] == ["d1"] and hit.lookup.dropped == 2
