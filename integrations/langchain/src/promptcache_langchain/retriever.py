"""``CachingRetriever``: any LangChain ``BaseRetriever`` with its results cached per tenant.

>>> retriever = CachingRetriever(store.as_retriever(), cache, index_version="2024-05-15")  # doctest: +SKIP
>>> docs = retriever.invoke("baggage allowance", {"configurable": {"tenant_id": "acme"}})  # doctest: +SKIP

Results live in ``cache.retrieval``, keyed by tenant, the normalized query, the retriever's name
and configuration (``search_type``/``search_kwargs`` when it has them), the call's ``filters`` and
the index version: bump ``index_version`` when the index changes, or invalidate
``index:<name>@<version>`` / ``retriever:<name>``. The cache's authorizer
(``PromptCache(authorize=...)``) is asked again on every hit, so a document the tenant may no
longer read is withheld even though it is cached. Documents stay untrusted: each returned
``Document`` is what the retriever returned (content, metadata, id), nothing is promoted into a
prompt's instructions.
"""

from __future__ import annotations

import hashlib
import logging
from contextvars import ContextVar
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig, ensure_config
from pydantic import ConfigDict
from pydantic_core import to_jsonable_python

from promptcache.artifacts import LookupResult, RetrieverSpec
from promptcache.tenancy import DEFAULT_TENANT_KEY, resolve_tenant
from promptcache_langchain.tenant import runtime_context

__all__ = ["CachingRetriever"]

log = logging.getLogger("promptcache.langchain.retriever")

# The tenant of the current invoke: BaseRetriever hands _get_relevant_documents no config.
_TENANT: ContextVar[str | None] = ContextVar("promptcache_retriever_tenant", default=None)


def _doc_id(doc: Document) -> str:
    """The id the authorizer sees: the document's own, else a content hash (stable across runs)."""
    if doc.id:
        return str(doc.id)
    mid = doc.metadata.get("id")
    if isinstance(mid, str | int) and str(mid):
        return str(mid)
    return "sha256:" + hashlib.sha256(doc.page_content.encode()).hexdigest()


def _to_plain(docs: list[Document]) -> list[dict[str, Any]]:
    out = []
    for d in docs:
        score = d.metadata.get("score")
        out.append(
            {
                "id": _doc_id(d),
                "text": d.page_content,
                "metadata": dict(d.metadata),
                "score": float(score)
                if isinstance(score, int | float) and not isinstance(score, bool)
                else None,
            }
        )
    return out


def _from_plain(docs: list[dict[str, Any]]) -> list[Document]:
    return [
        Document(id=d["id"], page_content=d["text"], metadata=dict(d.get("metadata") or {})) for d in docs
    ]


def _default_config(retriever: BaseRetriever) -> dict[str, Any]:
    # What changes a retriever's answer for the same query, where the retriever exposes it.
    cfg: dict[str, Any] = {"class": type(retriever).__name__}
    for attr in ("search_type", "search_kwargs", "k"):
        value = getattr(retriever, attr, None)
        if value is not None:
            cfg[attr] = to_jsonable_python(value, fallback=repr)
    return cfg


class CachingRetriever(BaseRetriever):
    """Serve ``retriever``'s documents from ``cache.retrieval`` (sync ``invoke`` and async ``ainvoke``).

    ``name`` identifies the retriever in keys and tags (default: its class name); ``retriever_config``
    what else decides its answer (default: its ``search_type``/``search_kwargs``/``k``);
    ``filters`` are part of the key; ``index_version`` is the index's version. Documents come
    back as LangChain ``Document`` objects with their metadata and ids (a document without an
    id gets a content-hash id, on a miss as on a hit, so both return the same documents).
    The tenant comes from the call's ``RunnableConfig`` (``configurable``/``metadata``
    ``tenant_key``), resolved by the cache's policy.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: BaseRetriever
    cache: Any  # PromptCache: Any so pydantic neither validates nor copies it
    index_version: str | None = None
    retriever_name: str | None = None
    retriever_config: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None
    ttl: int | str | None = None
    tenant_key: str = DEFAULT_TENANT_KEY

    def __init__(
        self,
        retriever: BaseRetriever,
        cache: Any,
        *,
        index_version: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Wrap ``retriever`` over ``cache`` (a ``PromptCache``)."""
        super().__init__(
            retriever=retriever, cache=cache, index_version=index_version, retriever_name=name, **kwargs
        )

    @property
    def spec(self) -> RetrieverSpec:
        """The retriever's identity as the cache keys it."""
        return RetrieverSpec.model_validate(
            {
                "name": self.retriever_name or type(self.retriever).__name__,
                "config": (
                    self.retriever_config
                    if self.retriever_config is not None
                    else _default_config(self.retriever)
                ),
                "index_version": self.index_version,
                "ttl": self.ttl,
            }
        )

    def _tenant_of(self, config: RunnableConfig | None) -> str:
        # ensure_config merges the ambient config too (a retriever called inside a graph node).
        return resolve_tenant(
            self.cache, self.tenant_key, config=ensure_config(config), runtime_context=runtime_context()
        )

    def invoke(self, input: str, config: RunnableConfig | None = None, **kwargs: Any) -> list[Document]:
        """Retrieve (or serve) documents for ``input``; the tenant is read from ``config``."""
        token = _TENANT.set(self._tenant_of(config))
        try:
            return super().invoke(input, config, **kwargs)
        finally:
            _TENANT.reset(token)

    async def ainvoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`invoke`."""
        token = _TENANT.set(self._tenant_of(config))
        try:
            return await super().ainvoke(input, config, **kwargs)
        finally:
            _TENANT.reset(token)

    def _tenant(self) -> str:
        tenant = _TENANT.get()
        return tenant if tenant is not None else self._tenant_of(None)

    def _log(self, lookup: LookupResult) -> None:
        log.debug(
            "retriever %s: %s (%s, key %s, %d withheld)",
            self.spec.name,
            "hit" if lookup.hit else "run",
            lookup.tier or lookup.why,
            lookup.key_digest,
            lookup.dropped,
        )

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        def fetch(q: str) -> list[dict[str, Any]]:
            return _to_plain(self.retriever.invoke(q, {"callbacks": run_manager.get_child()}))

        served = self.cache.retrieval.retrieve(
            query, fetch, tenant=self._tenant(), retriever=self.spec, filters=self.filters
        )
        self._log(served.lookup)
        return _from_plain(served.value)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        async def fetch(q: str) -> list[dict[str, Any]]:
            return _to_plain(await self.retriever.ainvoke(q, {"callbacks": run_manager.get_child()}))

        served = await self.cache.retrieval.aretrieve(
            query, fetch, tenant=self._tenant(), retriever=self.spec, filters=self.filters
        )
        self._log(served.lookup)
        return _from_plain(served.value)
