"""CachingRetriever over a cache whose location is unusable: every query is answered (issue 19, item 6).

A file where the cache directory should be, and a directory under ``/proc``: both fail for root
too. The location comes through ``PromptCache(store=...)`` or ``$PROMPTCACHE_CACHE_DIR``; the
retriever is LangChain's own ``InMemoryVectorStore`` retriever, called sync and async.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import InMemoryVectorStore
from promptcache_langchain import CachingRetriever

from promptcache import PromptCache

ACME: Any = {"configurable": {"tenant_id": "acme"}}
DOCS = [Document(id="bags", page_content="Each passenger may check one free bag.", metadata={"page": 3})]


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


def _location(where: str, tmp_path: Path) -> Path:
    if where == "proc":
        return Path(f"/proc/promptcache-{uuid.uuid4().hex[:8]}")
    (tmp_path / "a-file").write_text("not a directory\n")
    return tmp_path / "a-file"


@pytest.mark.parametrize("via", ["store", "env"])
@pytest.mark.parametrize("where", ["file_in_the_way", "proc"])
async def test_the_retriever_answers_from_an_unusable_location(
    where: str, via: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    location = _location(where, tmp_path)
    if via == "env":
        monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(location))
        cache = PromptCache(record_stats=False)
    else:
        cache = PromptCache(store=str(location), record_stats=False)
    caplog.set_level(logging.WARNING, logger="promptcache")
    store = InMemoryVectorStore.from_documents(DOCS, DeterministicFakeEmbedding(size=16))
    counting = Counting(inner=store.as_retriever(search_kwargs={"k": 1}))
    retriever = CachingRetriever(counting, cache, index_version="kb-1")
    for _ in range(3):
        assert [d.id for d in retriever.invoke("how many bags?", ACME)] == ["bags"]
        assert [d.id for d in await retriever.ainvoke("how many bags?", ACME)] == ["bags"]
    assert counting.searches >= 1  # the first query searched; the rest may come from L1
    cache.store.flush()
    assert cache.store.stats().tiers["l2"].tier_skipped >= 1
    assert len(caplog.records) == 1 and str(location) in caplog.records[0].getMessage()
    cache.close()
