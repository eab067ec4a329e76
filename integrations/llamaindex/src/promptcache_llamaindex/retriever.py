"""``CachingRetriever``: any LlamaIndex retriever, with results cached per tenant and index version.

Built on :class:`promptcache.artifacts.RetrievalCache`: the key covers the tenant, the normalized
query, the retriever's name and configuration, the filters and the index version, and documents
served from cache are re-authorized when an ``authorize`` hook is given. Retrieved text stays
untrusted content; caching it does not change where LlamaIndex puts it in the prompt.
"""

from __future__ import annotations

import uuid
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index_instrumentation import get_dispatcher
from pydantic import BaseModel

from promptcache import PromptCache
from promptcache.artifacts import Authorizer, RetrievalCache, RetrieverSpec, Served, open_store
from promptcache_llamaindex._tenant import DEFAULT_TENANT_KEY, resolve_tenant
from promptcache_llamaindex.events import RetrievalCacheEvent

__all__ = ["CachingRetriever", "document_of", "node_of"]

dispatcher = get_dispatcher(__name__)

_EXTRA = "__promptcache_node__"


def document_of(nws: NodeWithScore) -> dict[str, Any]:
    """A retrieved node as the cache's ``{id, text, metadata, score}`` document.

    The node's text is stored without metadata; what LlamaIndex needs to render it the same way
    again (metadata, the excluded keys, templates) travels in ``metadata``.
    """
    node = nws.node
    text = node.get_content() if not isinstance(node, TextNode) else node.text
    extra: dict[str, Any] = {
        "metadata": dict(node.metadata),
        "excluded_llm_metadata_keys": list(node.excluded_llm_metadata_keys),
        "excluded_embed_metadata_keys": list(node.excluded_embed_metadata_keys),
    }
    if isinstance(node, TextNode):
        extra.update(
            metadata_template=node.metadata_template,
            metadata_separator=node.metadata_separator,
            text_template=node.text_template,
        )
    if node.ref_doc_id is not None:
        extra["ref_doc_id"] = node.ref_doc_id
    # Scores are rounded: a full-precision float's digit run can look like a card number to the
    # sensitive-data scan, which would refuse to store the result (and 6 digits rank the same).
    score = round(nws.score, 6) if nws.score is not None else None
    return {"id": node.node_id, "text": text, "metadata": {_EXTRA: extra}, "score": score}


def node_of(doc: dict[str, Any]) -> NodeWithScore:
    """The node a cached document stands for."""
    extra = dict((doc.get("metadata") or {}).get(_EXTRA) or {})
    ref = extra.pop("ref_doc_id", None)
    node = TextNode(id_=doc["id"], text=doc["text"], **extra)
    if ref is not None:
        from llama_index.core.schema import NodeRelationship, RelatedNodeInfo

        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=ref)
    return NodeWithScore(node=node, score=doc.get("score"))


def _config_of(retriever: BaseRetriever) -> dict[str, Any]:
    # Settings that change the result belong in the key (top-k, mode, filters on the retriever).
    out: dict[str, Any] = {"class": type(retriever).__name__}
    for name in ("_similarity_top_k", "similarity_top_k", "_vector_store_query_mode", "_sparse_top_k"):
        value = getattr(retriever, name, None)
        if isinstance(value, int | str | float | bool):
            out[name.lstrip("_")] = value
    filters = getattr(retriever, "_filters", None)
    if isinstance(filters, BaseModel):
        out["filters"] = filters.model_dump(mode="json")
    return out


class CachingRetriever(BaseRetriever):
    """Serve ``retriever``'s results from promptcache's retrieval cache when the key matches.

    ``index_version`` must change whenever the index content changes (it is part of the key and
    a tag: ``cache.invalidate(f"index:{name}@{version}")`` drops one version). The tenant comes
    from the instrumentation tag ``tenant_key``, then ``tenant``, then the policy default.
    """

    def __init__(
        self,
        retriever: BaseRetriever,
        cache: PromptCache,
        *,
        index_version: str | None = None,
        name: str | None = None,
        store: Any = None,
        retrieval_cache: RetrievalCache | None = None,
        authorize: Authorizer | None = None,
        tenant: str | None = None,
        tenant_key: str = DEFAULT_TENANT_KEY,
        ttl: int | str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        """Wrap ``retriever``; ``store`` is what ``promptcache.artifacts.open_store`` accepts."""
        super().__init__(
            callback_manager=retriever.callback_manager,
            object_map=getattr(retriever, "object_map", None),
            verbose=getattr(retriever, "_verbose", False),
        )
        self.inner = retriever
        self.cache = cache
        self.retrieval_cache = retrieval_cache or RetrievalCache(
            open_store(store), cache.policy, authorize=authorize
        )
        self.spec = RetrieverSpec(
            name=name or type(retriever).__name__,
            config=config if config is not None else _config_of(retriever),
            index_version=index_version,
            ttl=ttl,
        )
        self.tenant = tenant
        self.tenant_key = tenant_key

    def _emit(self, tenant: str, served: Served[list[dict[str, Any]]]) -> None:
        lk = served.lookup
        dispatcher.event(
            RetrievalCacheEvent(
                cache_id=str(id(self.cache)),
                call_id=uuid.uuid4().hex,
                tenant=tenant,
                retriever=self.spec.name,
                hit=lk.hit,
                reason=lk.reason,
                tier=lk.tier,
                why=lk.why,
                stored=lk.stored,
                dropped=lk.dropped,
                documents=len(served.value),
            )
        )

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        tenant = resolve_tenant(self.cache, self.tenant, self.tenant_key)

        def fetch(query: str) -> list[dict[str, Any]]:
            return [document_of(n) for n in self.inner.retrieve(query_bundle)]

        served = self.retrieval_cache.retrieve(
            query_bundle.query_str, fetch, tenant=tenant, retriever=self.spec
        )
        self._emit(tenant, served)
        return [node_of(d) for d in served.value]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        tenant = resolve_tenant(self.cache, self.tenant, self.tenant_key)

        async def fetch(query: str) -> list[dict[str, Any]]:
            return [document_of(n) for n in await self.inner.aretrieve(query_bundle)]

        served = await self.retrieval_cache.aretrieve(
            query_bundle.query_str, fetch, tenant=tenant, retriever=self.spec
        )
        self._emit(tenant, served)
        return [node_of(d) for d in served.value]
