"""The retrieval cache: retrieved documents, keyed by everything that decides them.

The key covers the tenant, the security scope, the normalized query
(canonical text, whitespace runs folded to one space, case preserved: case can
matter to a retriever), the retriever's identity and configuration, the filters
and the index version. Documents stay untrusted when served from cache.

Access can change after a result was cached, so the authorizer hook is asked
again on *every* hit: documents the caller may no longer read are withheld and
counted. If the authorizer fails, the cached result is not used at all (fail
closed) and the retriever runs.

>>> from promptcache.tiers import TieredStore
>>> from promptcache.policy import Policy
>>> rc = RetrievalCache(TieredStore(), Policy(), authorize=lambda tenant, ids: [i for i in ids if i != "d2"])
>>> r = RetrieverSpec(name="kb", index_version="42")
>>> docs = [{"id": "d1", "text": "a"}, {"id": "d2", "text": "b"}]
>>> len(rc.retrieve("refund  policy", lambda q: docs, tenant="acme", retriever=r).value)
2
>>> again = rc.retrieve("refund policy", lambda q: docs, tenant="acme", retriever=r)
>>> [d["id"] for d in again.value], again.lookup.dropped
(['d1'], 1)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from promptcache.artifacts._async.retrieval import AsyncRetrievalCalls
from promptcache.artifacts._common import (
    ArtifactStats,
    Counters,
    LookupResult,
    contract_for,
    encode_scanned,
    entry_tenant,
    key_for,
    key_refusal,
    refusal,
)
from promptcache.artifacts._flow import Call, keep, refuse
from promptcache.artifacts._sync.retrieval import SyncRetrievalCalls
from promptcache.canonical import CanonicalizationError, canonical_text
from promptcache.figures import LookupReason
from promptcache.policy import EntryType as PolicyEntry
from promptcache.policy import Policy, Seconds
from promptcache.tiers.entry import EntryType
from promptcache.tiers.outcome import Produced
from promptcache.tiers.router import TieredStore

__all__ = ["Authorizer", "Document", "RetrievalCache", "RetrieverSpec", "normalize_query"]

log = logging.getLogger("promptcache.artifacts")

#: ``authorize(tenant, doc_ids) -> the ids the tenant may read now``
Authorizer = Callable[[str, list[str]], Iterable[str]]

Docs = list[dict[str, Any]]


class Document(BaseModel):
    """A retrieved document in the plain form the cache stores: ``{id, text, metadata, score}``."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    score: float | None = None


_DOCS = TypeAdapter(list[Document])


class RetrieverSpec(BaseModel):
    """Identity of a retriever: name, configuration (k, reranker, ...), index version, freshness.

    Entries are tagged ``retriever:<name>`` and, with an index version,
    ``index:<name>@<version>``, plus ``tags`` (literal): invalidate any of them
    to drop the results.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    config: dict[str, Any] = Field(default_factory=dict)
    index_version: str | None = None
    ttl: Seconds | None = None
    tags: tuple[str, ...] = ()

    def entry_tags(self, index_version: str | None) -> tuple[str, ...]:
        """Tags of a result retrieved with ``index_version``."""
        out = {f"retriever:{self.name}", *self.tags}
        if index_version is not None:
            out.add(f"index:{self.name}@{index_version}")
        return tuple(sorted(out))


def normalize_query(query: str) -> str:
    """Canonical text with whitespace runs folded to one space and the ends stripped; case kept."""
    return " ".join(canonical_text(query).split())


def _as_docs(value: Any) -> Docs:
    return [d.model_dump() for d in _DOCS.validate_python(value)]


class RetrievalCache(SyncRetrievalCalls, AsyncRetrievalCalls):
    """Caches retrieval results per tenant and scope; re-authorizes documents on every hit.

    ``retrieve`` and ``aretrieve`` are written once (``_async/retrieval.py``) and the sync one generated.
    """

    def __init__(
        self, store: TieredStore, policy: Policy | None = None, *, authorize: Authorizer | None = None
    ) -> None:
        """Use ``store`` under ``policy``; ``authorize`` is asked on every hit (None: no re-check)."""
        self.store = store
        self.policy = policy if policy is not None else Policy()
        self.authorize = authorize
        self._counters = Counters()

    def stats(self) -> ArtifactStats:
        """Counters of this cache."""
        return self._counters.snapshot()

    def _plan(
        self,
        query: str,
        *,
        tenant: str,
        scope: str,
        retriever: RetrieverSpec,
        filters: Mapping[str, Any] | None,
        index_version: str | None,
    ) -> Call[Docs] | LookupResult:
        planned = self.policy.decide(PolicyEntry.RETRIEVAL_RESULT, ttl=retriever.ttl)
        if not planned.allowed:
            self._counters.add("refused_policy")
            return LookupResult(hit=False, reason=LookupReason.POLICY_DENIED, detail=planned.reason)
        version = index_version if index_version is not None else retriever.index_version
        content = {
            "query": normalize_query(query),
            "retriever": retriever.name,
            "config": retriever.config,
            "filters": dict(filters or {}),
        }
        try:
            contract = contract_for(
                self.policy, tenant, scope, f"retriever:{retriever.name}", retrieval_index_version=version
            )
            key = key_for(contract, EntryType.RETRIEVAL, content, where="retriever config or filters")
        except CanonicalizationError as exc:
            self._counters.add("unkeyable")
            return LookupResult(hit=False, reason=LookupReason.UNKEYABLE, detail=str(exc).split(";")[0])
        except ValueError as exc:
            self._counters.add("unkeyable")
            return LookupResult(hit=False, reason=key_refusal(exc), detail=str(exc))
        return Call(
            store=self.store,
            counters=self._counters,
            kind=EntryType.RETRIEVAL,
            key=key,
            tenant=entry_tenant(tenant, scope),
            tags=retriever.entry_tags(version),
            planned_ttl_s=planned.ttl_seconds,
            prepare=lambda docs: self._prepare(retriever, docs),
            decode=_as_docs,
            policy=self.policy.identity,
        )

    def _prepare(self, retriever: RetrieverSpec, docs: Docs) -> Produced:
        try:
            plain = _as_docs(docs)
            payload, classes = encode_scanned(EntryType.RETRIEVAL, plain)
        except (ValueError, TypeError):
            return refuse(LookupReason.UNSERIALIZABLE, "documents are not {id, text, metadata, score} JSON")
        d = self.policy.decide(PolicyEntry.RETRIEVAL_RESULT, data_classes=classes, ttl=retriever.ttl)
        if not d.allowed:
            return refuse(refusal(classes), d.reason)
        return keep(payload, d.ttl_seconds, d.reason)

    def _reauthorize(self, tenant: str, docs: Docs, lookup: LookupResult) -> tuple[Docs, LookupResult] | None:
        """Withhold documents the tenant may no longer read; None when the authorizer fails."""
        if self.authorize is None or not lookup.hit:
            return docs, lookup
        try:
            allowed = set(self.authorize(tenant, [d["id"] for d in docs]))
        except Exception as exc:
            self._counters.add("auth_errors")
            log.warning(
                "authorizer failed on %s (%s): cached result not used", lookup.key_digest, type(exc).__name__
            )
            return None
        kept = [d for d in docs if d["id"] in allowed]
        dropped = len(docs) - len(kept)
        if dropped:
            self._counters.add("auth_dropped", dropped)
            lookup = lookup.model_copy(update={"dropped": dropped})
        return kept, lookup

    def invalidate(self, tag: str, *, tenant: str | None = None) -> int:
        """Invalidate ``tag`` (e.g. ``index:kb@42``) for ``tenant`` (``None``: every tenant) in the store."""
        gen = self.store.invalidate(tag, tenant=tenant)
        self._counters.add("invalidations")
        return gen
