"""The router's operations, written once.

``tiers/_async/`` holds the source; ``tiers/_sync/`` is generated from it (scripts/gen_sync.py).
:class:`promptcache.tiers.router.TieredStore` joins both forms and holds what they share: the
tiers, tenancy checks, promotion into L1, tag generations and the bus (see its module).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from promptcache.invalidation import (
    GenerationCache,
    Generations,
    InvalidationBus,
    InvalidationEvent,
    normalize_tags,
)
from promptcache.tagnames import TagNamer
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
        policy: str | None = None,
    ) -> Entry: ...
    def _store(self, entry: Entry, shared: bool = True) -> None: ...
    def _adopt_epoch(self, epoch: str | None) -> None: ...
    async def _atag_namer(self) -> tuple[TagNamer, bool]: ...
    async def _anames(self, tags: Iterable[str], tenant: str) -> tuple[tuple[str, ...], bool]: ...
    async def _apublish(self, event: InvalidationEvent) -> None: ...
    async def _agenerations(self, tags: Sequence[str], refresh: bool) -> Generations: ...
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

    async def _agenerations(self: _Router, tags: Sequence[str], refresh: bool) -> Generations:
        if not tags:
            return Generations(epoch=self.generations.epoch)
        if not refresh:
            max_age = None if self.bus.healthy() else self.max_staleness_s
            known = self.generations.fresh(tags, max_age)
            if known is not None:
                return Generations(known, epoch=self.generations.epoch)
        if self.below is not None:
            try:
                current = await self.below.atag_generations(list(tags))
            except TierSkipped:
                pass
            else:
                # the store's epoch comes with its generations: a reset store is never compared
                self._adopt_epoch(getattr(current, "epoch", None))
                self.generations.observe(current)
                return Generations(current, epoch=self.generations.epoch)
        return Generations({t: self.generations.known(t) for t in tags}, epoch=self.generations.epoch)

    async def _anames(self: _Router, tags: Iterable[str], tenant: str) -> tuple[tuple[str, ...], bool]:
        """The stored names of ``tenant``'s ``tags`` and whether they are shared with other processes."""
        plain = normalize_tags(tags)
        if not plain:
            return (), True
        namer, shared = await self._atag_namer()
        return namer.entry_names(plain, tenant), shared

    async def acurrent_generations(
        self: _Router, tags: Sequence[str], *, tenant: str, refresh: bool = False
    ) -> Generations:
        """Generations to stamp on a value of ``tenant`` computed now, by stored tag name, with the
        store's epoch.

        From this process's cache when it can vouch for it (bus healthy, or
        learned within ``max_staleness_s``), else read from L2 (always, with
        ``refresh``). An out-of-date stamp can only make the entry miss later,
        never serve it stale.
        """
        names, _ = await self._anames(tags, tenant)
        return await self._agenerations(names, refresh)

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
        policy: str | None = None,
    ) -> Entry:
        """Cache ``payload``: into L1 now, into L2/L3 in the background.

        Pass ``tag_generations`` captured *before* computing the value (see
        ``current_generations``, same ``tenant``) so that an invalidation racing with the
        computation makes the new entry stale rather than the old data fresh. ``tags`` are
        scoped to ``tenant`` unless written ``public:<tag>`` (see :mod:`promptcache.tagnames`).
        ``policy`` is the identity of the policy that admitted the value.
        """
        names, shared = await self._anames(tags, tenant)
        if tag_generations is not None:
            gens = {t: tag_generations.get(t, 0) for t in names}
        else:
            gens = await self._agenerations(names, False)
        entry = self._build(key, payload, tenant, entry_type, gens, ttl_s, policy)
        self._store(entry, shared)
        return entry

    async def adelete(self: _Router, key: str) -> None:
        """Remove ``key`` from every tier, now (not queued), and tell other processes."""
        self.l1.delete(key)
        if self.below is None:
            return
        with contextlib.suppress(TierSkipped):
            await self.below.adelete(key)
        await self._apublish(InvalidationEvent(kind="key", key=key))

    async def ainvalidate(self: _Router, tag: str, *, tenant: str | None = None) -> int:
        """Make ``tenant``'s entries tagged ``tag`` unreadable, everywhere; returns the new generation.

        ``tenant=None`` is the operator's form: the tag is dropped for every tenant. A tag
        written ``public:<tag>`` is shared: any tenant's invalidation drops every entry
        declared with it. When this returns, this process will not serve such an entry
        from any tier; other processes drop theirs on the bus message, or within the
        staleness bound without it. Raises :class:`InvalidationFailed` if the shared tier
        could not record it.
        """
        (plain,) = normalize_tags([tag])
        namer, shared = await self._atag_namer()
        tag = namer.target(plain, tenant)  # the stored name: no tag value reaches a store
        if self.below is None:
            return self.generations.bump_local(tag)
        if not shared:
            self._tier_counters["l2"].add("errors")
            # As below: this process at least stops serving what the invalidation meant to drop
            # (its entries were stored under the same local names).
            self.generations.bump_local(tag)
            raise InvalidationFailed("could not invalidate a tag: the shared tier's tag key cannot be read")
        try:
            gen = await self.below.ainvalidate_tag(tag)
        except Exception as exc:
            self._tier_counters["l2"].add("errors")
            # This process, at least, stops serving what the invalidation meant to drop (its L1
            # checks generations on every read); other processes cannot be told: hence the error.
            self.generations.bump_local(tag)
            raise InvalidationFailed(f"could not invalidate a tag: {type(exc).__name__}") from exc
        # Read the tag back with the store's epoch: if the store was reset since this process
        # last looked, the new generation may be lower than one it knows, and everything it
        # holds must go before this returns (issue 19, item 4: reset stores).
        await self._agenerations([tag], True)
        self.generations.observe({tag: gen})
        await self._apublish(InvalidationEvent(kind="tag", tag=tag, gen=gen, epoch=self.generations.epoch))
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
        tag_generations: dict[str, int] | None = None,
    ) -> Result:
        """Compute ``fn()`` now (no lookup, no single-flight) and store it when it is storable.

        ``fn`` returns the bytes to store, or a :class:`Produced` that may say
        "computed, don't store" (``payload=None``). ``tag_generations`` are the
        generations read before the computation (``current_generations``); when
        not given they are read here, from L2.
        """
        names, shared = await self._anames(tags, tenant)
        # generations are read before computing: an invalidation during fn() wins
        if tag_generations is None:
            gens: dict[str, int] = await self._agenerations(names, True)
        else:
            gens = {t: tag_generations.get(t, 0) for t in names}
        produced = produced_of(await fn())
        if produced.storable:
            ttl = produced.ttl_s if produced.ttl_s is not None else ttl_s
            payload = produced.payload or b""
            entry = self._build(key, payload, tenant, entry_type, gens, ttl, produced.policy)
            self._store(entry, shared)
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
