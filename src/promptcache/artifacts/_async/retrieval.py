"""The retrieval cache's calls, written once.

``artifacts/_async/`` holds the source; ``artifacts/_sync/`` is generated from it
(scripts/gen_sync.py). :class:`promptcache.artifacts.retrieval.RetrievalCache` joins both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from promptcache.artifacts._async.flow import arun
from promptcache.artifacts._common import LookupResult, Served
from promptcache.artifacts._flow import AsyncFn, Call, aresolve
from promptcache.figures import LookupReason
from promptcache.tiers.entry import key_digest

if TYPE_CHECKING:
    from promptcache.artifacts.retrieval import RetrieverSpec

__all__ = ["AsyncRetrievalCalls"]

Docs = list[dict[str, Any]]


class _Cache(Protocol):
    def _plan(
        self,
        query: str,
        *,
        tenant: str,
        scope: str,
        retriever: RetrieverSpec,
        filters: Mapping[str, Any] | None,
        index_version: str | None,
    ) -> Call[Docs] | LookupResult: ...

    def _reauthorize(
        self, tenant: str, docs: Docs, lookup: LookupResult
    ) -> tuple[Docs, LookupResult] | None: ...


class AsyncRetrievalCalls:
    """The retrieval cache's call, in one form: sync or asyncio."""

    async def aretrieve(
        self: _Cache,
        query: str,
        fn: AsyncFn[[str], Sequence[Mapping[str, Any]]],
        *,
        tenant: str,
        retriever: RetrieverSpec,
        scope: str = "tenant",
        filters: Mapping[str, Any] | None = None,
        index_version: str | None = None,
    ) -> Served[Docs]:
        """Documents for ``query``: cached (re-authorized) or from ``fn(query)``.

        ``fn`` is called with the query exactly as given; it returns documents
        as plain dicts ``{id, text, metadata, score}``. In the asyncio form ``fn``
        may be a coroutine function or a plain one (the authorizer is called synchronously).
        """

        async def compute() -> Docs:
            return [dict(d) for d in await aresolve(fn(query))]

        plan = self._plan(
            query,
            tenant=tenant,
            scope=scope,
            retriever=retriever,
            filters=filters,
            index_version=index_version,
        )
        if isinstance(plan, LookupResult):
            return Served(await compute(), plan)
        docs, lookup = await arun(plan, compute)
        checked = self._reauthorize(tenant, docs, lookup)
        if checked is None:
            # DESIGN.md: a policy that cannot be evaluated denies private-scope reads.
            unauthorized = LookupResult(
                hit=False,
                reason=LookupReason.POLICY_DENIED,
                detail="authorizer failed: cached result not used",
                key_digest=key_digest(plan.key),
            )
            return Served(await compute(), unauthorized)
        return Served(*checked)
