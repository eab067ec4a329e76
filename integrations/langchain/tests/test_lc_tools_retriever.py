"""CachingRetriever over a real ``InMemoryVectorStore`` retriever (local embedding, no network)."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import InMemoryVectorStore
from promptcache_langchain import CachingRetriever

from promptcache import PromptCache

ACME = {"configurable": {"tenant_id": "acme"}}
GLOBEX = {"metadata": {"tenant_id": "globex"}}


class HashingEmbeddings(Embeddings):
    """Bag of words hashed into 64 buckets, L2-normalized: deterministic and local."""

    dim = 64

    def _one(self, text: str) -> list[float]:
        v = [0.0] * self.dim
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            v[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % self.dim] += 1.0
        n = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / n for x in v]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._one(text)


POLICY = [
    Document(
        id="bags", page_content="Each passenger may check one free bag in economy.", metadata={"page": 3}
    ),
    Document(
        id="cancel",
        page_content="Cancellations within 24 hours of booking are refunded.",
        metadata={"page": 7},
    ),
    Document(
        id="pets", page_content="Pets travel in the cabin in an approved carrier.", metadata={"page": 9}
    ),
]


class Counting(BaseRetriever):
    """The vector store's retriever, counting how often it really searches."""

    inner: BaseRetriever
    searches: int = 0

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        self.searches += 1
        return self.inner.invoke(query)

    async def _aget_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        self.searches += 1
        return await self.inner.ainvoke(query)


def _setup(tmp_path: Path, authorize: Any = None) -> tuple[Counting, PromptCache, CachingRetriever]:
    store = InMemoryVectorStore(HashingEmbeddings())
    store.add_documents(POLICY)
    counting = Counting(inner=store.as_retriever(search_kwargs={"k": 2}))
    cache = PromptCache(store=tmp_path / "pc", authorize=authorize)
    return counting, cache, CachingRetriever(counting, cache, index_version="v1", name="airline-policy")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_documents_round_trip_per_tenant(tmp_path: Path, use_async: bool) -> None:
    counting, _cache, retriever = _setup(tmp_path)

    async def get(q: str, config: dict[str, Any]) -> list[Document]:
        return await retriever.ainvoke(q, config) if use_async else retriever.invoke(q, config)

    direct = counting.inner.invoke("free checked bag economy")
    first = await get("free checked bag economy", ACME)
    again = await get("free  checked bag economy ", ACME)  # same normalized query: served
    other = await get("free checked bag economy", GLOBEX)  # another tenant: never shared
    assert counting.searches == 2
    assert first == again == other  # Document equality: content, metadata and id
    assert [(d.id, d.page_content, d.metadata) for d in first] == [
        (d.id, d.page_content, d.metadata) for d in direct
    ]
    assert first[0].id == "bags" and first[0].metadata == {"page": 3}


async def test_index_version_and_invalidation_force_a_fresh_search(tmp_path: Path) -> None:
    counting, cache, retriever = _setup(tmp_path)
    retriever.invoke("refund after cancellation", ACME)
    retriever.invoke("refund after cancellation", ACME)
    assert counting.searches == 1
    cache.invalidate("index:airline-policy@v1")
    retriever.invoke("refund after cancellation", ACME)
    assert counting.searches == 2
    v2 = CachingRetriever(counting, cache, index_version="v2", name="airline-policy")
    v2.invoke("refund after cancellation", ACME)
    assert counting.searches == 3


async def test_authorizer_is_asked_again_on_every_hit(tmp_path: Path) -> None:
    revoked: set[str] = set()

    def authorize(tenant: str, ids: list[str]) -> list[str]:
        return [i for i in ids if (tenant, i) not in revoked]

    counting, cache, retriever = _setup(tmp_path, authorize)
    assert retriever.invoke("pets in the cabin carrier", ACME)[0].id == "pets"
    revoked.add(("acme", "pets"))
    served = retriever.invoke("pets in the cabin carrier", ACME)
    assert counting.searches == 1 and "pets" not in [d.id for d in served]
    assert cache.retrieval.stats().auth_dropped == 1


async def test_missing_tenant_is_refused_when_required(tmp_path: Path) -> None:
    store = InMemoryVectorStore(HashingEmbeddings())
    store.add_documents(POLICY)
    cache = PromptCache({"require_tenant": True}, store=tmp_path / "pc")
    retriever = CachingRetriever(store.as_retriever(), cache, index_version="v1")
    with pytest.raises(ValueError, match="requires a tenant"):
        retriever.invoke("bags")
