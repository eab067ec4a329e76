"""The response cache's calls, written once.

``artifacts/_async/`` holds the source; ``artifacts/_sync/`` is generated from it
(scripts/gen_sync.py). :class:`promptcache.artifacts.responses.ResponseCache` joins both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from promptcache.artifacts._async.flow import arun
from promptcache.artifacts._common import LookupResult, Served
from promptcache.artifacts._flow import AsyncFn, Call, aresolve

__all__ = ["AsyncResponseCalls"]

T = TypeVar("T")


class _Cache(Protocol):
    def _plan(self, request: Mapping[str, Any], tenant: str, ttl: int | None) -> Call[Any] | LookupResult: ...


class AsyncResponseCalls:
    """The response cache's call, in one form: sync or asyncio."""

    async def acall(
        self: _Cache,
        request: Mapping[str, Any],
        fn: AsyncFn[[Mapping[str, Any]], T],
        *,
        tenant: str,
        ttl: int | None = None,
    ) -> Served[T]:
        """The cached response to ``request``, or ``fn(request)``'s (stored when eligible).

        ``lookup.reason`` says why a request was not eligible (``lookup.detail``: which rule). The
        response must be JSON-like (a dict, e.g. ``response.model_dump()``) to be
        stored. In the asyncio form ``fn`` may be a coroutine function or a plain one.
        """

        async def compute() -> T:
            return await aresolve(fn(request))

        plan = self._plan(request, tenant, ttl)
        if isinstance(plan, LookupResult):
            return Served(await compute(), plan, trust="model")
        value, lookup = await arun(plan, compute)
        return Served(value, lookup, trust="model")
