"""The tool-output cache's calls, written once.

``artifacts/_async/`` holds the source; ``artifacts/_sync/`` is generated from it
(scripts/gen_sync.py). :class:`promptcache.artifacts.tools.ToolOutputCache` joins both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from promptcache.artifacts._async.flow import arun
from promptcache.artifacts._common import LookupResult, Served
from promptcache.artifacts._flow import AsyncFn, Call, aresolve
from promptcache.tiers.router import TieredStore

if TYPE_CHECKING:
    from promptcache.artifacts.tools import ToolSpec

__all__ = ["AsyncToolCalls"]

log = logging.getLogger("promptcache.artifacts")

T = TypeVar("T")

#: What a write's invalidations did: tags invalidated, tags that failed, the reason to report.
Invalidated = tuple[tuple[str, ...], tuple[str, ...], str]


class _Cache(Protocol):
    store: TieredStore

    def _plan(
        self,
        spec: ToolSpec,
        args: Mapping[str, Any],
        tenant: str,
        scope: str,
        storable: Callable[[Any], Any] | None = None,
    ) -> Call[Any] | LookupResult: ...

    def _invalidation_targets(
        self, spec: ToolSpec, args: Mapping[str, Any]
    ) -> tuple[tuple[str, ...], str | None]: ...

    def _invalidation_tenant(self, tenant: str, scope: str) -> str: ...

    def _count_invalidations(
        self, spec: ToolSpec, done: list[str], failed: list[str], err: str | None
    ) -> Invalidated: ...

    def _wrote(
        self, spec: ToolSpec, plan: LookupResult, done: tuple[str, ...], failed: tuple[str, ...], why: str
    ) -> LookupResult: ...

    async def arun(
        self,
        spec: ToolSpec,
        args: Mapping[str, Any],
        compute: AsyncFn[[], T],
        *,
        tenant: str,
        scope: str = "tenant",
        storable: Callable[[T], Any] | None = None,
    ) -> Served[Any]: ...

    async def _aafter_write(
        self, spec: ToolSpec, args: Mapping[str, Any], tenant: str, scope: str
    ) -> Invalidated: ...


class AsyncToolCalls:
    """The tool-output cache's calls (``call``, ``run``), in one form: sync or asyncio."""

    async def _aafter_write(
        self: _Cache, spec: ToolSpec, args: Mapping[str, Any], tenant: str, scope: str
    ) -> Invalidated:
        # A write invalidates its tags for the tenant that made it (and public tags for all):
        # one tenant's write never evicts another tenant's entries.
        tags, err = self._invalidation_targets(spec, args)
        owner = self._invalidation_tenant(tenant, scope)
        done: list[str] = []
        failed: list[str] = list(spec.invalidates) if err else []
        for t in tags:
            try:
                await self.store.ainvalidate(t, tenant=owner)
                done.append(t)
            except Exception as exc:  # InvalidationFailed, or anything else: the write already happened
                failed.append(t)
                log.warning("tool %s: an invalidation failed (%s)", spec.name, type(exc).__name__)
        return self._count_invalidations(spec, done, failed, err)

    async def acall(
        self: _Cache,
        spec: ToolSpec,
        args: Mapping[str, Any],
        fn: AsyncFn[..., T],
        *,
        tenant: str,
        scope: str = "tenant",
    ) -> Served[T]:
        """Run ``fn(**args)`` or serve its cached output; returns the output and how it was answered.

        A write's result is returned even if invalidating its tags fails (the
        failure is counted and listed in ``lookup.invalidation_failed``). In the
        asyncio form ``fn`` may be a coroutine function or a plain one.
        """
        served: Served[T] = await self.arun(spec, args, lambda: fn(**args), tenant=tenant, scope=scope)
        return served

    async def arun(
        self: _Cache,
        spec: ToolSpec,
        args: Mapping[str, Any],
        compute: AsyncFn[[], T],
        *,
        tenant: str,
        scope: str = "tenant",
        storable: Callable[[T], Any] | None = None,
    ) -> Served[Any]:
        """Like :meth:`call` (:meth:`acall`), for a caller that computes the result itself (``compute()``).

        ``args`` only key the call. ``storable(result)`` gives the JSON form to
        store, or an :class:`Uncacheable` for a result that must not be stored
        (an error result): it is then returned as computed, with
        ``lookup.reason`` ``uncacheable``. A hit (``lookup.hit``) returns the
        stored form, a computed call the result itself. In the asyncio form
        ``compute`` may be a coroutine function or a plain one.
        """

        async def computed() -> T:
            return await aresolve(compute())

        plan = self._plan(spec, args, tenant, scope, storable)
        if isinstance(plan, Call):
            value, lookup = await arun(plan, computed)
            return Served(value, lookup)
        out = await computed()
        if spec.invalidates and not spec.cacheable:
            plan = self._wrote(spec, plan, *await self._aafter_write(spec, args, tenant, scope))
        return Served(out, plan)
