"""The stale-while-revalidate rule, written once.

``tiers/_async/`` holds the source; ``tiers/_sync/`` is generated from it (scripts/gen_sync.py).

See :class:`promptcache.tiers.swr.StaleWhileRevalidate`, which joins both forms.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from promptcache.tiers.concurrency import Background
from promptcache.tiers.entry import key_digest
from promptcache.tiers.readthrough import AsyncCompute, Lookup, Result, served

__all__ = ["AsyncStaleWhileRevalidate"]

log = logging.getLogger("promptcache.tiers")


class AsyncStaleWhileRevalidate:
    """Serve an entry of ``types`` past its TTL while one background fill replaces it."""

    inner: Any
    types: frozenset[str]
    background: Background
    _count: Callable[[str], None]

    async def alookup(self, key: str, *, tenant: str, allow_stale: bool = False) -> Lookup | None:
        """``inner``'s lookup; a stale entry only of the types listed."""
        hit: Lookup | None = await self.inner.alookup(key, tenant=tenant, allow_stale=allow_stale)
        if hit is not None and hit.stale and hit.entry.entry_type not in self.types:
            return None
        return hit

    async def afill(
        self,
        key: str,
        fn: AsyncCompute,
        *,
        tenant: str,
        entry_type: str,
        tags: Iterable[str] = (),
        ttl_s: float | None = None,
        tag_generations: dict[str, int] | None = None,
    ) -> Result:
        """``inner``'s fill."""
        out: Result = await self.inner.afill(
            key,
            fn,
            tenant=tenant,
            entry_type=entry_type,
            tags=tags,
            ttl_s=ttl_s,
            tag_generations=tag_generations,
        )
        return out

    async def aget_or_compute(
        self,
        key: str,
        fn: AsyncCompute,
        *,
        tenant: str,
        entry_type: str,
        tags: Iterable[str] = (),
        ttl_s: float | None = None,
    ) -> Result:
        """The stored payload, stale if its type allows (then refreshed in the background), or a fill's."""
        names = tuple(tags)
        hit = await self.alookup(key, tenant=tenant, allow_stale=entry_type in self.types)
        if hit is None:
            return await self.afill(key, fn, tenant=tenant, entry_type=entry_type, tags=names, ttl_s=ttl_s)
        if hit.stale:
            self._count("swr_served")
            refresh = partial(
                self._arefresh, key, fn, tenant=tenant, entry_type=entry_type, tags=names, ttl_s=ttl_s
            )
            self.background.aspawn((tenant, key), refresh)
        return served(hit)

    async def _arefresh(
        self,
        key: str,
        fn: AsyncCompute,
        *,
        tenant: str,
        entry_type: str,
        tags: tuple[str, ...],
        ttl_s: float | None,
    ) -> None:
        # DESIGN.md: a failed refresh is dropped and logged, never retried on the hot path
        try:
            result = await self.afill(key, fn, tenant=tenant, entry_type=entry_type, tags=tags, ttl_s=ttl_s)
        except Exception:
            log.warning("background refresh of %s failed", key_digest(key), exc_info=True)
            return
        error = None if result.produced is None else result.produced.error
        if error is not None:
            log.warning("background refresh of %s failed (%s)", key_digest(key), type(error).__name__)
