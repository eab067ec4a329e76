"""The router's operations, written once.

``tiers/_async/`` holds the source; ``tiers/_sync/`` is generated from it (scripts/gen_sync.py).
:class:`promptcache.tiers.router.TieredStore` joins both forms and holds what they share: the
tiers, tenancy checks, promotion into L1, tag generations and the bus (see its module).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from promptcache.invalidation import GenerationCache, InvalidationBus, InvalidationEvent, normalize_tags
from promptcache.tiers.base import InvalidationFailed, StatsCounter
from promptcache.tiers.breaker import TierSkipped
from promptcache.tiers.entry import Entry
from promptcache.tiers.memory import MemoryStore
from promptcache.tiers.readthrough import AsyncCompute, Lookup, ReadThrough, Result, produced_of
from promptcache.tiers.writeback import WriteBack

__all__ = ["AsyncRouterOps"]


class _Router(Protocol):
    """What the operations below need of the store that holds them."""

    l1: MemoryStore
    below: WriteBack | None
    generations: GenerationCache
    bus: InvalidationBus
    max_staleness_s: float
    _tier_counters: dict[str, StatsCounter]

    @property
    def reads(self) -> ReadThrough: ...

    def _l1_lookup(self, key: str, tenant: str, allow_stale: bool) -> tuple[Lookup | None, str]: ...
    def _promote(self, found: Entry, tenant: str, allow_stale: bool) -> Lookup | None: ...
    def _build(
        self,
        key: str,
        payload: bytes,
        tenant: str,
        entry_type: str,
        gens: dict[str, int],
        ttl_s: float | None,
    ) -> Entry: ...
    def _store(self, entry: Entry) -> None: ...
    async def _apublish(self, event: InvalidationEvent) -> None: ...
    async def _agenerations(self, tags: Sequence[str], refresh: bool) -> dict[str, int]: ...
    async def alookup(self, key: str, *, tenant: str, allow_stale: bool = False) -> Lookup | None: ...


class AsyncRouterOps:
    """Reads, writes, invalidations and fills over L1 and the chain below it."""

    # reads -------------------------------------------------------------------

    async def alookup(self: _Router, key: str, *, tenant: str, allow_stale: bool = False) -> Lookup | None:
        """Find ``key`` for ``tenant`` in L1, then L2/L3; promote hits into L1."""
        hit, why = self._l1_lookup(key, tenant, allow_stale)
        if hit is not None or self.below is None or why == "refused":
            return hit
        try:
            found = await self.below.aget(key)
        except TierSkipped:
            return None
        if found is None:
            if why == "unvouched":
                self.l1.delete(key)
            return None
        return self._promote(found, tenant, allow_stale)

    async def aget(self: _Router, key: str, *, tenant: str) -> Entry | None:
        """The fresh entry for ``key`` and ``tenant``, or ``None``."""
        hit = await self.alookup(key, tenant=tenant)
        return None if hit is None else hit.entry

    async def aget_many(self: _Router, keys: Sequence[str], *, tenant: str) -> dict[str, Entry]:
        """Fresh entries among ``keys``: L1 first, the rest from L2 in one round trip."""
        out: dict[str, Entry] = {}
        rest: list[str] = []
        for k in dict.fromkeys(keys):
            hit, _ = self._l1_lookup(k, tenant, False)
            if hit is not None:
                out[k] = hit.entry
            else:
                rest.append(k)
        if not rest or self.below is None:
            return out
        try:
            found = await self.below.aget_many(rest)
        except TierSkipped:
            return out
        for k, entry in found.items():
            promoted = self._promote(entry, tenant, False)
            if promoted is not None:
                out[k] = promoted.entry
        return out

    # writes ------------------------------------------------------------------

    async def _agenerations(self: _Router, tags: Sequence[str], refresh: bool) -> dict[str, int]:
        if not tags:
            return {}
        if not refresh:
            max_age = None if self.bus.healthy() else self.max_staleness_s
            known = self.generations.fresh(tags, max_age)
            if known is not None:
                return known
        if self.below is not None:
            try:
                current = await self.below.atag_generations(list(tags))
            except TierSkipped:
                pass
            else:
                self.generations.observe(current, authoritative=True)
                return current
        return {t: self.generations.known(t) for t in tags}

    async def acurrent_generations(
        self: _Router, tags: Sequence[str], *, refresh: bool = False
    ) -> dict[str, int]:
        """Generations to stamp on a value computed now.

        From this process's cache when it can vouch for it (bus healthy, or
        learned within ``max_staleness_s``), else read from L2. An out-of-date
        stamp can only make the entry miss later, never serve it stale.
        """
        return await self._agenerations(tags, refresh)

    async def aput(
        self: _Router,
        key: str,
        payload: bytes,
        *,
        tenant: str,
        entry_type: str,
        tags: Iterable[str] = (),
        ttl_s: float | None = None,
        tag_generations: dict[str, int] | None = None,
    ) -> Entry:
        """Cache ``payload``: into L1 now, into L2/L3 in the background.

        Pass ``tag_generations`` captured *before* computing the value (see
        ``current_generations``) so that an invalidation racing with the
        computation makes the new entry stale rather than the old data fresh.
        """
        names = normalize_tags(tags)
        if tag_generations is not None:
            gens = {t: tag_generations.get(t, 0) for t in names}
        else:
            gens = await self._agenerations(names, False)
        entry = self._build(key, payload, tenant, entry_type, gens, ttl_s)
        self._store(entry)
        return entry

    async def adelete(self: _Router, key: str) -> None:
        """Remove ``key`` from every tier, now (not queued), and tell other processes."""
        self.l1.delete(key)
        if self.below is None:
            return
        with contextlib.suppress(TierSkipped):
            await self.below.adelete(key)
        await self._apublish(InvalidationEvent(kind="key", key=key))

    async def ainvalidate(self: _Router, tag: str) -> int:
        """Make every entry tagged ``tag`` unreadable, everywhere; returns the new generation.

        When this returns, this process will not serve such an entry from any
        tier; other processes drop theirs on the bus message, or within the
        staleness bound without it. Raises :class:`InvalidationFailed` if the
        shared tier could not record it.
        """
        (tag,) = normalize_tags([tag])  # the stored form (a tag holding a secret is a digest)
        if self.below is None:
            return self.generations.bump_local(tag)
        try:
            gen = await self.below.ainvalidate_tag(tag)
        except Exception as exc:
            self._tier_counters["l2"].add("errors")
            # This process, at least, stops serving what the invalidation meant to drop (its L1
            # checks generations on every read); other processes cannot be told: hence the error.
            self.generations.bump_local(tag)
            raise InvalidationFailed(f"could not invalidate a tag: {type(exc).__name__}") from exc
        self.generations.observe({tag: gen})
        await self._apublish(InvalidationEvent(kind="tag", tag=tag, gen=gen))
        return gen

    # read or compute ---------------------------------------------------------

    async def afill(
        self: _Router,
        key: str,
        fn: AsyncCompute,
        *,
        tenant: str,
        entry_type: str,
        tags: Iterable[str] = (),
        ttl_s: float | None = None,
    ) -> Result:
        """Compute ``fn()`` now (no lookup, no single-flight) and store it when it is storable.

        ``fn`` returns the bytes to store, or a :class:`Produced` that may say
        "computed, don't store" (``payload=None``).
        """
        # generations are read before computing: an invalidation during fn() wins
        gens = await self._agenerations(normalize_tags(tags), True)
        produced = produced_of(await fn())
        if produced.storable:
            ttl = produced.ttl_s if produced.ttl_s is not None else ttl_s
            self._store(self._build(key, produced.payload or b"", tenant, entry_type, gens, ttl))
        return Result(produced.payload or b"", None, computed=True, produced=produced)

    async def aget_or_compute(
        self: _Router,
        key: str,
        fn: AsyncCompute,
        *,
        tenant: str,
        entry_type: str,
        tags: Iterable[str] = (),
        ttl_s: float | None = None,
    ) -> Result:
        """The cached payload, or ``fn()``'s, computed once however many callers miss at once.

        ``fn`` returns the bytes to store, or a :class:`Produced` that may say
        "computed, don't store" (``payload=None``): the value is then shared with
        the concurrent identical callers and written nowhere. This is the read
        path built by ``read_through`` (stale-while-revalidate, single-flight);
        threads share a flight, asyncio tasks share one per event loop.
        """
        return await self.reads.aget_or_compute(
            key, fn, tenant=tenant, entry_type=entry_type, tags=tags, ttl_s=ttl_s
        )
