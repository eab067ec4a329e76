"""``TieredStore``: the tier chain L1 → L2 → L3, composed of one store per concern.

What sits below L1 is built by :func:`below_l1`, in one place, outermost first::

    WriteBack            writes queued on a background thread, dropped on failure
      Sealed             encryption and integrity; unreadable entries are counted misses
        BlobOffload      large payloads live in L3 (behind its own CircuitBreaker)
          CircuitBreaker a failing L2 is skipped for a cooldown (``tier_skipped``)
            L2           SQLite or Redis

Around that chain :class:`TieredStore` routes between the tiers and keeps what
needs the whole picture: the L1 (in memory, on the caller's thread), tenancy (an
entry of another tenant is never returned, whatever the key: ``tenant_mismatch``),
tag generations and the invalidation bus (see :mod:`promptcache.invalidation` for
the model and the L1 staleness bound).

Above it, the read path is built by :func:`read_through`, in one place, outermost
first; each wrapper is a :class:`~promptcache.tiers.readthrough.ReadThrough` over
the next, and :meth:`TieredStore.get_or_compute` is the outermost one's::

    StaleWhileRevalidate a just-expired entry of the listed types is served while one refresh runs
      SingleFlight       concurrent identical fills compute once
        TieredStore      lookup (L1, then below) and fill (compute, then store)

Sync and asyncio share one implementation: each operation (lookup, get_many,
put, delete, invalidate, fill, ...) is written once, for asyncio, in
``_async/router.py``, and the sync form is generated from it with unasync
(``_sync/router.py``, scripts/gen_sync.py); the chain's wrappers are written the
same way, so an operation reads as plain code in both forms.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from promptcache.invalidation import (
    DEFAULT_MAX_STALENESS_S,
    GenerationCache,
    InvalidationBus,
    InvalidationEvent,
    LocalBus,
)
from promptcache.pseudonym import tenant_label
from promptcache.tagnames import TAG_KEY_ENV, TagKeys, TagNamer
from promptcache.tiers._async.router import AsyncRouterOps
from promptcache.tiers._sync.router import SyncRouterOps
from promptcache.tiers.base import InvalidationFailed, StatsCounter, Store, TierStats
from promptcache.tiers.blob import BlobStore, FileBlobStore
from promptcache.tiers.breaker import CircuitBreaker, Outage, TierSkipped
from promptcache.tiers.crypto import KeyRing
from promptcache.tiers.entry import Entry, key_digest
from promptcache.tiers.memory import MemoryStore
from promptcache.tiers.offload import BlobOffload
from promptcache.tiers.readthrough import Lookup, Result
from promptcache.tiers.sealed import Sealed
from promptcache.tiers.singleflight import SingleFlight
from promptcache.tiers.swr import StaleWhileRevalidate
from promptcache.tiers.writeback import WriteBack

__all__ = ["InvalidationFailed", "Lookup", "Result", "RouterStats", "TieredStore", "below_l1", "read_through"]

log = logging.getLogger("promptcache.tiers")


class RouterStats(BaseModel):
    """Counters of the router and of each tier it drives."""

    tiers: dict[str, TierStats]
    writeback_queued: int = 0
    writeback_dropped: int = 0
    writeback_failed: int = 0
    single_flight_leaders: int = 0
    single_flight_waiters: int = 0
    swr_served: int = 0
    tenant_mismatch: int = 0
    publish_failed: int = 0
    epoch_changes: int = 0
    """Times the shared tier was found reset (a new store epoch): L1 and known generations dropped."""


_ROUTER_COUNTERS = tuple(f for f in RouterStats.model_fields if f != "tiers")


def below_l1(
    l2: Store,
    l3: BlobStore | None,
    *,
    counters: dict[str, StatsCounter],
    count: Callable[[str], None],
    keyring: KeyRing | None = None,
    blob_threshold: int = 256 * 1024,
    writeback_queue_size: int = 10_000,
    breaker_cooldown_s: float = 1.0,
    tier_timeout_s: float = 0.5,
    outage: Outage | None = None,
) -> WriteBack:
    """The chain below L1 (see the module docstring); ``counters`` are the tiers', by name.
    ``outage``: shared with the store's other guards, so one fault is warned about once."""

    if outage is None:
        outage = Outage()

    def breaker(inner: Any, name: str) -> CircuitBreaker[Any]:
        return CircuitBreaker(
            inner,
            name=name,
            counters=counters[name],
            cooldown_s=breaker_cooldown_s,
            timeout_s=tier_timeout_s,
            outage=outage,
        )

    blobs = breaker(l3, "l3") if l3 is not None else None
    return WriteBack(
        Sealed(
            BlobOffload(breaker(l2, "l2"), blobs=blobs, threshold=blob_threshold),
            keyring=keyring,
            counters=counters["l2"],
        ),
        count=count,
        tier_counters=counters["l2"],
        queue_size=writeback_queue_size,
    )


def read_through(
    inner: Any, *, count: Callable[[str], None], swr_types: Iterable[str] = (), swr_window_s: float = 60.0
) -> StaleWhileRevalidate:
    """The read path over ``inner``'s lookup and fill (see the module docstring), counting with ``count``."""
    flights = SingleFlight(inner, count=count)
    return StaleWhileRevalidate(flights, count=count, types=swr_types, window_s=swr_window_s)


class TieredStore(SyncRouterOps, AsyncRouterOps):
    """The tiered cache the artifact caches are built on (see the module docstring).

    Its operations are written once (``_async/router.py``, :class:`AsyncRouterOps`) and the
    sync ones generated from them (:class:`SyncRouterOps`, scripts/gen_sync.py); this class
    holds what both share: the tiers, tenancy, promotion into L1, generations and the bus.
    """

    def __init__(
        self,
        *,
        l1: MemoryStore | None = None,
        l2: Store | None = None,
        l3: BlobStore | None = None,
        bus: InvalidationBus | None = None,
        keyring: KeyRing | None = None,
        blob_threshold: int = 256 * 1024,
        writeback_queue_size: int = 10_000,
        swr_types: Iterable[str] = (),
        swr_window_s: float = 60.0,
        max_staleness_s: float = DEFAULT_MAX_STALENESS_S,
        breaker_cooldown_s: float = 1.0,
        tier_timeout_s: float = 0.5,
        clock: Callable[[], float] = time.time,
        tag_key: str | bytes | None = None,
    ) -> None:
        """Assemble the tiers; the write-back thread starts here when there is an L2.

        ``tag_key`` keys the digests tags are stored as (see :mod:`promptcache.tagnames`):
        default ``$PROMPTCACHE_TAG_KEY``, else a random key the L2 creates and keeps.
        """
        self._clock = clock
        self.l1 = l1 if l1 is not None else MemoryStore(clock=clock)
        self.generations: GenerationCache = self.l1.generations
        self.l2 = l2
        self.l3 = l3
        # with no shared tier, this process is alone and its own bus is the whole fleet
        self.bus: InvalidationBus = bus if bus is not None else LocalBus(fleet_wide=l2 is None)
        self.keyring = keyring
        self.max_staleness_s = max_staleness_s
        #: How long a failing tier is skipped before it is tried again.
        self.breaker_cooldown_s = breaker_cooldown_s
        self._counters = StatsCounter(_ROUTER_COUNTERS)
        self._tier_counters = {"l1": StatsCounter(), "l2": StatsCounter(), "l3": StatsCounter()}
        self.below: WriteBack | None = None
        # One fault of the store is warned about once, whichever tier or guard meets it.
        outage = Outage()
        if l2 is not None:
            self.below = below_l1(
                l2,
                l3,
                counters=self._tier_counters,
                count=self._counters.add,
                keyring=keyring,
                blob_threshold=blob_threshold,
                writeback_queue_size=writeback_queue_size,
                breaker_cooldown_s=breaker_cooldown_s,
                tier_timeout_s=tier_timeout_s,
                outage=outage,
            )
        self.reads = read_through(
            self, count=self._counters.add, swr_types=swr_types, swr_window_s=swr_window_s
        )
        self._key_guard: CircuitBreaker[Any] | None = None
        if l2 is not None and callable(getattr(l2, "tag_key", None)):
            self._key_guard = CircuitBreaker(
                l2,
                name="l2",
                counters=self._tier_counters["l2"],
                cooldown_s=breaker_cooldown_s,
                timeout_s=tier_timeout_s,
                outage=outage,
            )
        elif l2 is not None and tag_key is None and not os.environ.get(TAG_KEY_ENV):
            log.warning(
                "L2 %s keeps no tag key: tag digests use a fixed key; pass tag_key= or set %s",
                type(l2).__name__,
                TAG_KEY_ENV,
            )
            tag_key = b"promptcache: this L2 keeps no tag key"
        self._tag_keys = TagKeys(tag_key, from_store=self._key_guard is not None)
        self._closed = False
        self.bus.subscribe(self._on_event)
        self.bus.on_reset(self._on_bus_reset)

    # construction ------------------------------------------------------------

    @classmethod
    def default(cls, cache_dir: str | Path | None = None, **kwargs: Any) -> TieredStore:
        """L1 + the embedded SQLite L2 + a file L3 under ``cache_dir`` (default: see sqlite)."""
        from promptcache.tiers.sqlite import SQLiteStore, default_cache_dir

        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        clock = kwargs.get("clock", time.time)
        return cls(
            l2=SQLiteStore(root / "promptcache.sqlite3", clock=clock),
            l3=FileBlobStore(root / "blobs"),
            **kwargs,
        )

    @classmethod
    def from_redis(
        cls,
        url: str,
        *,
        blob_dir: str | Path | None = None,
        cluster: bool = False,
        namespace: str = "pc",
        **kwargs: Any,
    ) -> TieredStore:
        """L1 + Redis L2 (+ a file L3 if ``blob_dir``) with the Redis pub/sub bus."""
        from promptcache.invalidation import RedisBus
        from promptcache.tiers.redis import RedisStore

        clock = kwargs.get("clock", time.time)
        l2 = RedisStore(url, cluster=cluster, namespace=namespace, clock=clock)
        bus = RedisBus(
            l2.client,
            channel=f"{namespace}:inv",
            max_staleness_s=kwargs.get("max_staleness_s", DEFAULT_MAX_STALENESS_S),
            heartbeat_s=min(0.2, kwargs.get("max_staleness_s", DEFAULT_MAX_STALENESS_S) / 4),
        )
        l3 = FileBlobStore(blob_dir) if blob_dir is not None else None
        return cls(l2=l2, l3=l3, bus=bus, **kwargs)

    @property
    def swr_types(self) -> frozenset[str]:
        """Entry types that may be served stale (see :class:`StaleWhileRevalidate`)."""
        return self.reads.types

    # bus ---------------------------------------------------------------------

    def _on_event(self, event: InvalidationEvent) -> None:
        if self.generations.retired(event.epoch):
            # Published before a reset we already adopted, delivered after it: its generation
            # counts in the reset store, and taking its epoch back would flip to that store.
            return
        # the sender read another store epoch with its generation: the store was reset
        self._adopt_epoch(event.epoch)
        if event.kind == "tag" and event.tag is not None and event.gen is not None:
            self.generations.observe({event.tag: event.gen})
        elif event.kind == "key" and event.key is not None:
            self.l1.delete(event.key)
        elif event.kind == "clear":
            self.l1.clear()

    def _adopt_epoch(self, epoch: str | None) -> None:
        """Take the shared tier's epoch, read with its generations (see :mod:`promptcache.invalidation`)."""
        if self.generations.adopt_epoch(epoch):
            self._store_was_reset()

    def _store_was_reset(self) -> None:
        # Generation numbers restart in a reset store: whatever L1 holds was admitted under
        # the old ones and could match a new number by chance, so none of it is served again
        # (the generations themselves were forgotten by whoever noticed the new epoch).
        self.l1.clear()
        self._counters.add("epoch_changes")
        log.warning("the shared cache tier was reset (new store epoch): in-process copies dropped")

    def _on_bus_reset(self) -> None:
        # invalidations may have been published while we were deaf: trust nothing local
        self.generations.reset()
        self.l1.clear()

    def _l1_vouched(self, stored_at: float) -> bool:
        if self.below is None or self.bus.healthy():
            return True
        return self._clock() - stored_at < self.max_staleness_s

    def _publish(self, event: InvalidationEvent) -> None:
        try:
            self.bus.publish(event)
        except Exception as exc:
            self._counters.add("publish_failed")
            log.warning("invalidation publish failed (%s)", type(exc).__name__)

    async def _apublish(self, event: InvalidationEvent) -> None:
        # the bus clients are sync (a Redis pub/sub connection of their own): off the event loop
        await asyncio.to_thread(self._publish, event)

    # reads -------------------------------------------------------------------

    def _servable(self, entry: Entry, tier: str, allow_stale: bool) -> Lookup | None:
        now = self._clock()
        if entry.fresh_at(now):
            return Lookup(entry, tier)
        # only an entry stamped with a stale window (StaleWhileRevalidate.stamp) outlives its TTL
        if allow_stale and not entry.dead_at(now):
            return Lookup(entry, tier, stale=True)
        return None

    def _check_tenant(self, entry: Entry, tenant: str) -> bool:
        if entry.tenant == tenant_label(tenant):
            return True
        self._counters.add("tenant_mismatch")
        log.warning("refused entry %s: tenant mismatch", key_digest(entry.key))
        return False

    def _l1_lookup(self, key: str, tenant: str, allow_stale: bool) -> tuple[Lookup | None, str]:
        """(hit, why not): "miss", "unvouched" (L2 must confirm) or "refused" (other tenant)."""
        rec = self.l1.get_record(key)
        if rec is None:
            return None, "miss"
        entry, stored_at = rec
        if not self._check_tenant(entry, tenant):
            return None, "refused"
        if entry.tags and not self._l1_vouched(stored_at):
            return None, "unvouched"
        return self._servable(entry, "l1", allow_stale), "miss"

    def _promote(self, found: Entry, tenant: str, allow_stale: bool) -> Lookup | None:
        """A plaintext entry from below L1, checked and copied into L1 when servable."""
        # BlobOffload leaves the digest on an entry it read from L3: that names the tier
        tier = "l2" if found.blob is None else "l3"
        entry = found if found.blob is None else found.model_copy(update={"blob": None})
        if not self._check_tenant(entry, tenant):
            return None
        heard = self.generations.heard
        if any(g < heard(t) for t, g in entry.tags.items()):
            # An invalidation this process has heard of that L2 has not applied (a Redis read is
            # a plain GET and trusts the writes and invalidations to have kept the tag invariant;
            # this in-process check is the part of a read-time check that costs no round trip).
            self._tier_counters["l2"].add("stale")
            return None
        self.generations.observe(entry.tags)
        self.l1.put(entry)
        return self._servable(entry, tier, allow_stale)

    # writes ------------------------------------------------------------------

    def _build(
        self,
        key: str,
        payload: bytes,
        tenant: str,
        entry_type: str,
        gens: dict[str, int],
        ttl_s: float | None,
        policy: str | None = None,
    ) -> Entry:
        entry = Entry.new(
            key,
            payload,
            # The header names the tenant by its keyed hash: an app that passes a secret (or an
            # e-mail address) as its tenant must not find it in SQLite, Redis or a blob.
            tenant=tenant_label(tenant),
            entry_type=entry_type,
            created_at=self._clock(),
            ttl_s=ttl_s,
            tags=gens,
            policy=policy,
        )
        return self.reads.stamp(entry)

    def _store(self, entry: Entry, shared: bool = True) -> None:
        """L1 now, the chain below in the background (the one write point of every write).

        An entry whose tags are named under this process's own key (``shared`` False: the
        store's key could not be read yet) stays in L1: other processes could not invalidate it.
        """
        self.l1.put(entry)
        if self.below is None:
            return
        if shared or not entry.tags:
            self.below.put(entry)
        else:
            self._tier_counters["l2"].add("tier_skipped")

    # tag names ---------------------------------------------------------------

    def _key_read(self, key: bytes) -> None:
        if self._tag_keys.learned(key):
            # The store was recreated with a new key: names this process used before match
            # nothing any more, so nothing local can be vouched for (as after a bus outage).
            log.warning("the shared tier's tag key changed (store recreated): L1 dropped")
            self._on_bus_reset()

    def _tag_namer(self) -> tuple[TagNamer, bool]:
        """The namer of stored tag names, and whether its names are shared (see :class:`TagKeys`)."""
        if self._key_guard is not None and self._tag_keys.due():
            try:
                key = self._key_guard.call("tag_key")
            except TierSkipped:
                self._tag_keys.failed()
            else:
                self._key_read(key)
        return self._tag_keys.namer()

    def tag_name(self, tag: str, *, tenant: str | None = None) -> str:
        """The stored name an invalidation of ``tag`` for ``tenant`` moves (diagnostics and tests).

        ``tenant=None`` gives the fleet-wide name every entry with ``tag`` carries.
        """
        namer, _ = self._tag_namer()
        return namer.target(tag, tenant)

    async def _atag_namer(self) -> tuple[TagNamer, bool]:
        """The asyncio form of :meth:`_tag_namer`."""
        if self._key_guard is not None and self._tag_keys.due():
            try:
                key = await self._key_guard.acall("tag_key")
            except TierSkipped:
                self._tag_keys.failed()
            else:
                self._key_read(key)
        return self._tag_keys.namer()

    # housekeeping ------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued write-back has been attempted; False on timeout."""
        return True if self.below is None else self.below.flush(timeout)

    def stats(self) -> RouterStats:
        """Counters of the router and each tier (tier counters include the router's skips)."""
        tiers: dict[str, TierStats] = {}
        stores: dict[str, Any] = {"l1": self.l1, "l2": self.l2, "l3": self.l3}
        for name, store in stores.items():
            own = store.stats() if store is not None else TierStats()
            extra = self._tier_counters[name].snapshot()
            merged = {f: getattr(own, f) + getattr(extra, f) for f in TierStats.model_fields}
            tiers[name] = TierStats(**merged)
        return RouterStats(tiers=tiers, **self._counters.values())

    def close(self, timeout: float = 5.0) -> None:
        """Flush (bounded), stop the background threads and close every tier and the bus."""
        if self._closed:
            return
        self._closed = True
        if self.below is not None:
            self.below.stop(timeout)
        self.reads.close()
        self.bus.close()
        for store in (self.l2, self.l3):
            if store is not None:
                try:
                    store.close()
                except Exception:
                    log.debug("closing a tier failed", exc_info=True)
        self.l1.close()

    async def aclose(self, timeout: float = 5.0) -> None:
        """Close, awaiting the asyncio clients of this loop too."""
        l2 = self.l2
        await asyncio.to_thread(self.close, timeout)
        aclose = getattr(l2, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                log.debug("closing the asyncio tier failed", exc_info=True)

    def __enter__(self) -> TieredStore:
        """Use as a context manager; closes on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close."""
        self.close()
