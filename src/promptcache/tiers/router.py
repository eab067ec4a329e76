"""``TieredStore``: L1 → L2 → L3 reads, background write-back, single-flight, SWR, encryption.

Reads go L1, then L2 (whose entry may point into L3); a hit below L1 is
decrypted, integrity-checked and promoted into L1. Writes go into L1 on the
caller's thread and are queued for L2/L3 on a bounded background queue: a
full queue drops the write and counts it, a failing write is dropped and
counted, nothing is retried on the hot path. A tier that raises or times out
is skipped (``tier_skipped``), its circuit opens for ``breaker_cooldown_s`` so
that the next calls do not wait on it again, and the call carries on.

Tenancy: every read names the tenant, and an entry of another tenant is never
returned (``tenant_mismatch``), whatever the key.

Stale-while-revalidate applies only to entry types listed in ``swr_types``:
for those, ``get_or_compute`` may return an entry up to ``swr_window_s`` past
its TTL while one background refresh runs. Invalidated entries are never
served, stale window or not. See :mod:`promptcache.invalidation` for the
invalidation model and the L1 staleness bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from promptcache.invalidation import (
    DEFAULT_MAX_STALENESS_S,
    GenerationCache,
    InvalidationBus,
    InvalidationEvent,
    LocalBus,
    normalize_tags,
)
from promptcache.tiers.base import AsyncStore, StatsCounter, Store, TierError, TierStats
from promptcache.tiers.blob import BlobStore, FileBlobStore
from promptcache.tiers.crypto import KeyRing
from promptcache.tiers.entry import Entry, key_digest
from promptcache.tiers.memory import MemoryStore
from promptcache.tiers.outcome import Produced

__all__ = ["InvalidationFailed", "Lookup", "Result", "RouterStats", "TieredStore"]

log = logging.getLogger("promptcache.tiers")

T = TypeVar("T")


class InvalidationFailed(TierError):
    """The shared tier could not record an invalidation: tagged entries may still be served."""


class _Skipped(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Lookup:
    """A read that found something: the (plaintext) entry, the tier it came from, and staleness."""

    entry: Entry
    tier: str
    stale: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """What :meth:`TieredStore.get_or_compute` returns.

    ``tier`` is the tier that served it, ``"flight"`` if another caller computed
    it concurrently, ``None`` if this call computed it. ``produced`` is what the
    compute callback returned (this call's or the flight leader's), ``None`` on
    a tier hit; ``payload`` is empty when nothing was stored.
    """

    payload: bytes
    tier: str | None
    stale: bool = False
    computed: bool = False
    produced: Produced | None = None


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


_ROUTER_COUNTERS = (
    "writeback_queued",
    "writeback_dropped",
    "writeback_failed",
    "single_flight_leaders",
    "single_flight_waiters",
    "swr_served",
    "tenant_mismatch",
    "publish_failed",
)


@dataclass(slots=True)
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    produced: Produced | None = None
    error: BaseException | None = None


class _Counters:
    __slots__ = ("_lock", "v")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.v = dict.fromkeys(_ROUTER_COUNTERS, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.v[name] += n


class TieredStore:
    """The tiered cache the artifact caches are built on (see the module docstring)."""

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
    ) -> None:
        """Assemble the tiers; the write-back thread starts here when there is an L2."""
        self._clock = clock
        self.l1 = l1 if l1 is not None else MemoryStore(clock=clock)
        self.generations: GenerationCache = self.l1.generations
        self.l2 = l2
        self.l3 = l3
        # with no shared tier, this process is alone and its own bus is the whole fleet
        self.bus: InvalidationBus = bus if bus is not None else LocalBus(fleet_wide=l2 is None)
        self.keyring = keyring
        self.blob_threshold = blob_threshold
        self.swr_types = frozenset(swr_types)
        self.swr_window_s = swr_window_s
        self.max_staleness_s = max_staleness_s
        self.breaker_cooldown_s = breaker_cooldown_s
        self.tier_timeout_s = tier_timeout_s
        self._counters = _Counters()
        self._tier_counters = {"l1": StatsCounter(), "l2": StatsCounter(), "l3": StatsCounter()}
        self._open_until = {"l2": 0.0, "l3": 0.0}
        self._sf_lock = threading.Lock()
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._aflights: dict[tuple[int, str, str], asyncio.Future[Produced]] = {}
        self._refreshing: set[tuple[str, str]] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._bg_tasks: set[asyncio.Task[None]] = set()
        self.bus.subscribe(self._on_event)
        self.bus.on_reset(self._on_bus_reset)
        # write-back state
        self._wb_queue: queue.Queue[tuple[str, Any, int] | None] = queue.Queue(writeback_queue_size)
        self._wb_cond = threading.Condition()
        self._wb_pending = 0
        self._seq = 0
        self._deleted: dict[str, int] = {}
        self._closed = False
        self._wb_thread: threading.Thread | None = None
        if l2 is not None:
            self._wb_thread = threading.Thread(target=self._wb_run, name="promptcache-writeback", daemon=True)
            self._wb_thread.start()

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

    # tier guard --------------------------------------------------------------

    def _guard(self, tier: str, fn: Callable[..., T], *args: Any) -> T:
        if time.monotonic() < self._open_until[tier]:
            self._tier_counters[tier].add("tier_skipped")
            raise _Skipped
        try:
            return fn(*args)
        except Exception as exc:
            self._trip(tier, exc)
            raise _Skipped from exc

    async def _aguard(self, tier: str, aw: Callable[[], Awaitable[T]]) -> T:
        if time.monotonic() < self._open_until[tier]:
            self._tier_counters[tier].add("tier_skipped")
            raise _Skipped
        try:
            return await asyncio.wait_for(aw(), self.tier_timeout_s)
        except Exception as exc:
            self._trip(tier, exc)
            raise _Skipped from exc

    def _trip(self, tier: str, exc: BaseException) -> None:
        self._tier_counters[tier].add("tier_skipped")
        self._open_until[tier] = time.monotonic() + self.breaker_cooldown_s
        log.warning("tier %s skipped for %.1fs after %s", tier, self.breaker_cooldown_s, type(exc).__name__)

    # bus ---------------------------------------------------------------------

    def _on_event(self, event: InvalidationEvent) -> None:
        if event.kind == "tag" and event.tag is not None and event.gen is not None:
            self.generations.observe({event.tag: event.gen})
        elif event.kind == "key" and event.key is not None:
            self.l1.delete(event.key)
        elif event.kind == "clear":
            self.l1.clear()

    def _on_bus_reset(self) -> None:
        # invalidations may have been published while we were deaf: trust nothing local
        self.generations.reset()
        self.l1.clear()

    def _l1_vouched(self, stored_at: float) -> bool:
        if self.l2 is None or self.bus.healthy():
            return True
        return self._clock() - stored_at < self.max_staleness_s

    def _publish(self, event: InvalidationEvent) -> None:
        try:
            self.bus.publish(event)
        except Exception as exc:
            self._counters.add("publish_failed")
            log.warning("invalidation publish failed (%s)", type(exc).__name__)

    # entries below L1 -------------------------------------------------------

    def _seal(self, entry: Entry) -> Entry:
        """The form an entry takes in L2 (encrypted, maybe moved to L3); runs off the hot path."""
        payload = entry.payload or b""
        key_id = None
        if self.keyring is not None:
            key_id, payload = self.keyring.seal(entry)
        if self.l3 is not None and len(payload) >= self.blob_threshold:
            digest = self._guard("l3", self.l3.put_blob, payload)
            return entry.model_copy(
                update={"payload": None, "blob": digest, "size": len(payload), "key_id": key_id}
            )
        return entry.model_copy(update={"payload": payload, "size": len(payload), "key_id": key_id})

    def _unseal(self, entry: Entry, blob: bytes | None) -> Entry | None:
        """Plaintext entry from an L2 entry (and its blob bytes), or None if it fails its checks."""
        stored = entry.payload if entry.blob is None else blob
        if stored is None:
            return None
        if entry.key_id is not None:
            plain = None if self.keyring is None else self.keyring.open(entry, stored)
        else:
            plain = stored
        out = entry.model_copy(
            update={"payload": plain, "blob": None, "key_id": None, "size": len(plain or b"")}
        )
        if plain is None or not out.verify():
            self._tier_counters["l2"].add("corrupt")
            log.warning("entry %s failed decryption or integrity check", key_digest(entry.key))
            return None
        return out

    def _from_l2(self, entry: Entry) -> tuple[Entry, str] | None:
        blob = None
        tier = "l2"
        if entry.blob is not None:
            if self.l3 is None:
                return None
            try:
                blob = self._guard("l3", self.l3.get_blob, entry.blob)
            except _Skipped:
                return None
            if blob is None:
                return None
            tier = "l3"
        plain = self._unseal(entry, blob)
        return None if plain is None else (plain, tier)

    async def _afrom_l2(self, entry: Entry) -> tuple[Entry, str] | None:
        if entry.blob is not None and self.l3 is not None:
            l3 = self.l3
            digest = entry.blob
            try:
                blob = await self._aguard("l3", lambda: asyncio.to_thread(l3.get_blob, digest))
            except _Skipped:
                return None
            if blob is None:
                return None
            plain = self._unseal(entry, blob)
            return None if plain is None else (plain, "l3")
        return self._from_l2(entry)

    # reads -------------------------------------------------------------------

    def _servable(self, entry: Entry, tier: str, allow_stale: bool) -> Lookup | None:
        now = self._clock()
        if entry.fresh_at(now):
            return Lookup(entry, tier)
        if allow_stale and entry.entry_type in self.swr_types and not entry.dead_at(now):
            return Lookup(entry, tier, stale=True)
        return None

    def _check_tenant(self, entry: Entry, tenant: str) -> bool:
        if entry.tenant == tenant:
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

    def _promote(self, found: tuple[Entry, str] | None, tenant: str) -> Entry | None:
        if found is None:
            return None
        entry, _ = found
        if not self._check_tenant(entry, tenant):
            return None
        known = self.generations.known
        if any(g < known(t) for t, g in entry.tags.items()):
            # An invalidation this process has heard of that L2 has not applied (a Redis read is
            # a plain GET and trusts the writes and invalidations to have kept the tag invariant;
            # this in-process check is the part of a read-time check that costs no round trip).
            self._tier_counters["l2"].add("stale")
            return None
        self.generations.observe(entry.tags)
        self.l1.put(entry)
        return entry

    def lookup(self, key: str, *, tenant: str, allow_stale: bool = False) -> Lookup | None:
        """Find ``key`` for ``tenant`` in L1, then L2/L3; promote hits into L1."""
        hit, why = self._l1_lookup(key, tenant, allow_stale)
        if hit is not None or self.l2 is None or why == "refused":
            return hit
        try:
            raw = self._guard("l2", self.l2.get, key)
        except _Skipped:
            return None
        if raw is None:
            if why == "unvouched":
                self.l1.delete(key)
            return None
        found = self._from_l2(raw)
        entry = self._promote(found, tenant)
        if entry is None or found is None:
            return None
        return self._servable(entry, found[1], allow_stale)

    async def alookup(self, key: str, *, tenant: str, allow_stale: bool = False) -> Lookup | None:
        """The asyncio twin of :meth:`lookup`."""
        hit, why = self._l1_lookup(key, tenant, allow_stale)
        if hit is not None or self.l2 is None or why == "refused":
            return hit
        l2 = self.l2
        try:
            if isinstance(l2, AsyncStore):
                raw = await self._aguard("l2", lambda: l2.aget(key))
            else:
                raw = await self._aguard("l2", lambda: asyncio.to_thread(l2.get, key))
        except _Skipped:
            return None
        if raw is None:
            if why == "unvouched":
                self.l1.delete(key)
            return None
        found = await self._afrom_l2(raw)
        entry = self._promote(found, tenant)
        if entry is None or found is None:
            return None
        return self._servable(entry, found[1], allow_stale)

    def get(self, key: str, *, tenant: str) -> Entry | None:
        """The fresh entry for ``key`` and ``tenant``, or ``None``."""
        hit = self.lookup(key, tenant=tenant)
        return None if hit is None else hit.entry

    async def aget(self, key: str, *, tenant: str) -> Entry | None:
        """The asyncio twin of :meth:`get`."""
        hit = await self.alookup(key, tenant=tenant)
        return None if hit is None else hit.entry

    def get_many(self, keys: Sequence[str], *, tenant: str) -> dict[str, Entry]:
        """Fresh entries among ``keys``: L1 first, the rest from L2 in one round trip."""
        out: dict[str, Entry] = {}
        rest: list[str] = []
        for k in dict.fromkeys(keys):
            hit, _ = self._l1_lookup(k, tenant, False)
            if hit is not None:
                out[k] = hit.entry
            else:
                rest.append(k)
        if rest and self.l2 is not None:
            try:
                raws = self._guard("l2", self.l2.get_many, rest)
            except _Skipped:
                return out
            for k, raw in raws.items():
                found = self._from_l2(raw)
                entry = self._promote(found, tenant)
                if entry is not None and found is not None:
                    hit = self._servable(entry, found[1], False)
                    if hit is not None:
                        out[k] = hit.entry
        return out

    async def aget_many(self, keys: Sequence[str], *, tenant: str) -> dict[str, Entry]:
        """The asyncio twin of :meth:`get_many`."""
        out: dict[str, Entry] = {}
        rest: list[str] = []
        for k in dict.fromkeys(keys):
            hit, _ = self._l1_lookup(k, tenant, False)
            if hit is not None:
                out[k] = hit.entry
            else:
                rest.append(k)
        if rest and self.l2 is not None:
            l2 = self.l2
            try:
                if isinstance(l2, AsyncStore):
                    raws = await self._aguard("l2", lambda: l2.aget_many(rest))
                else:
                    raws = await self._aguard("l2", lambda: asyncio.to_thread(l2.get_many, rest))
            except _Skipped:
                return out
            for k, raw in raws.items():
                found = await self._afrom_l2(raw)
                entry = self._promote(found, tenant)
                if entry is not None and found is not None:
                    hit = self._servable(entry, found[1], False)
                    if hit is not None:
                        out[k] = hit.entry
        return out

    # writes ------------------------------------------------------------------

    def current_generations(self, tags: Sequence[str], *, refresh: bool = False) -> dict[str, int]:
        """Generations to stamp on a value computed now.

        From this process's cache when it can vouch for it (bus healthy, or
        learned within ``max_staleness_s``), else read from L2. An out-of-date
        stamp can only make the entry miss later, never serve it stale.
        """
        if not tags:
            return {}
        if not refresh:
            max_age = None if self.bus.healthy() else self.max_staleness_s
            known = self.generations.fresh(tags, max_age)
            if known is not None:
                return known
        if self.l2 is not None:
            try:
                current = self._guard("l2", self.l2.tag_generations, list(tags))
                self.generations.observe(current, authoritative=True)
                return current
            except _Skipped:
                pass
        return {t: self.generations.known(t) for t in tags}

    async def acurrent_generations(self, tags: Sequence[str], *, refresh: bool = False) -> dict[str, int]:
        """The asyncio twin of :meth:`current_generations`."""
        if not tags:
            return {}
        if not refresh:
            max_age = None if self.bus.healthy() else self.max_staleness_s
            known = self.generations.fresh(tags, max_age)
            if known is not None:
                return known
        l2 = self.l2
        if l2 is not None:
            try:
                if isinstance(l2, AsyncStore):
                    current = await self._aguard("l2", lambda: l2.atag_generations(list(tags)))
                else:
                    current = await self._aguard(
                        "l2", lambda: asyncio.to_thread(l2.tag_generations, list(tags))
                    )
                self.generations.observe(current, authoritative=True)
                return current
            except _Skipped:
                pass
        return {t: self.generations.known(t) for t in tags}

    def _build(
        self,
        key: str,
        payload: bytes,
        tenant: str,
        entry_type: str,
        gens: dict[str, int],
        ttl_s: float | None,
    ) -> Entry:
        now = self._clock()
        entry = Entry.new(
            key,
            payload,
            tenant=tenant,
            entry_type=entry_type,
            created_at=now,
            ttl_s=ttl_s,
            tags=gens,
        )
        if entry.expires_at is not None and entry_type in self.swr_types:
            entry = entry.model_copy(update={"stale_until": entry.expires_at + self.swr_window_s})
        return entry

    def _store(self, entry: Entry) -> None:
        self.l1.put(entry)
        if self.l2 is None:
            return
        with self._wb_cond:
            self._seq += 1
            seq = self._seq
            self._wb_pending += 1
        try:
            self._wb_queue.put_nowait(("put", entry, seq))
            self._counters.add("writeback_queued")
        except queue.Full:
            self._wb_done()
            self._counters.add("writeback_dropped")
            self._tier_counters["l2"].add("dropped")

    def put(
        self,
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
        :meth:`current_generations`) so that an invalidation racing with the
        computation makes the new entry stale rather than the old data fresh.
        """
        names = normalize_tags(tags)
        gens = (
            {t: tag_generations.get(t, 0) for t in names}
            if tag_generations is not None
            else self.current_generations(names)
        )
        entry = self._build(key, payload, tenant, entry_type, gens, ttl_s)
        self._store(entry)
        return entry

    async def aput(
        self,
        key: str,
        payload: bytes,
        *,
        tenant: str,
        entry_type: str,
        tags: Iterable[str] = (),
        ttl_s: float | None = None,
        tag_generations: dict[str, int] | None = None,
    ) -> Entry:
        """The asyncio twin of :meth:`put`."""
        names = normalize_tags(tags)
        gens = (
            {t: tag_generations.get(t, 0) for t in names}
            if tag_generations is not None
            else await self.acurrent_generations(names)
        )
        entry = self._build(key, payload, tenant, entry_type, gens, ttl_s)
        self._store(entry)
        return entry

    def _mark_deleted(self, key: str) -> None:
        with self._wb_cond:
            # queued puts of this key older than now must not resurrect it
            self._deleted[key] = self._seq

    def delete(self, key: str) -> None:
        """Remove ``key`` from every tier, now (not queued), and tell other processes."""
        self.l1.delete(key)
        if self.l2 is not None:
            self._mark_deleted(key)
            with contextlib.suppress(_Skipped):
                self._guard("l2", self.l2.delete, key)
            self._publish(InvalidationEvent(kind="key", key=key))

    async def adelete(self, key: str) -> None:
        """The asyncio twin of :meth:`delete`."""
        self.l1.delete(key)
        l2 = self.l2
        if l2 is not None:
            self._mark_deleted(key)
            try:
                if isinstance(l2, AsyncStore):
                    await self._aguard("l2", lambda: l2.adelete(key))
                else:
                    await self._aguard("l2", lambda: asyncio.to_thread(l2.delete, key))
            except _Skipped:
                pass
            await asyncio.to_thread(self._publish, InvalidationEvent(kind="key", key=key))

    def invalidate(self, tag: str) -> int:
        """Make every entry tagged ``tag`` unreadable, everywhere; returns the new generation.

        When this returns, this process will not serve such an entry from any
        tier; other processes drop theirs on the bus message, or within the
        staleness bound without it. Raises :class:`InvalidationFailed` if the
        shared tier could not record it.
        """
        (tag,) = normalize_tags([tag])  # the stored form (a tag holding a secret is a digest)
        if self.l2 is None:
            return self.generations.bump_local(tag)
        try:
            gen = self.l2.invalidate_tag(tag)
        except Exception as exc:
            self._tier_counters["l2"].add("errors")
            raise InvalidationFailed(f"could not invalidate a tag: {type(exc).__name__}") from exc
        self.generations.observe({tag: gen})
        self._publish(InvalidationEvent(kind="tag", tag=tag, gen=gen))
        return gen

    async def ainvalidate(self, tag: str) -> int:
        """The asyncio twin of :meth:`invalidate`."""
        (tag,) = normalize_tags([tag])  # the stored form (a tag holding a secret is a digest)
        l2 = self.l2
        if l2 is None:
            return self.generations.bump_local(tag)
        try:
            if isinstance(l2, AsyncStore):
                gen = await asyncio.wait_for(l2.ainvalidate_tag(tag), self.tier_timeout_s * 4)
            else:
                gen = await asyncio.to_thread(l2.invalidate_tag, tag)
        except Exception as exc:
            self._tier_counters["l2"].add("errors")
            raise InvalidationFailed(f"could not invalidate a tag: {type(exc).__name__}") from exc
        self.generations.observe({tag: gen})
        await asyncio.to_thread(self._publish, InvalidationEvent(kind="tag", tag=tag, gen=gen))
        return gen

    # single-flight -----------------------------------------------------------

    def get_or_compute(
        self,
        key: str,
        fn: Callable[[], bytes | Produced],
        *,
        tenant: str,
        entry_type: str,
        tags: Iterable[str] = (),
        ttl_s: float | None = None,
    ) -> Result:
        """The cached payload, or ``fn()``'s, computed once however many threads miss at once.

        ``fn`` returns the bytes to store, or a :class:`Produced` that may say
        "computed, don't store" (``payload=None``): the value is then shared with
        the concurrent identical callers and written nowhere.
        """
        names = normalize_tags(tags)
        hit = self.lookup(key, tenant=tenant, allow_stale=entry_type in self.swr_types)
        if hit is not None:
            if hit.stale:
                self._counters.add("swr_served")
                self._refresh_later(key, fn, tenant, entry_type, names, ttl_s)
            return Result(hit.entry.payload or b"", hit.tier, stale=hit.stale)
        fk = (tenant, key)
        with self._sf_lock:
            flight = self._flights.get(fk)
            leader = flight is None
            if flight is None:
                flight = self._flights[fk] = _Flight()
        if not leader:
            self._counters.add("single_flight_waiters")
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return _shared(flight.produced)
        self._counters.add("single_flight_leaders")
        try:
            produced = self._compute_and_store(key, fn, tenant, entry_type, names, ttl_s)
            flight.produced = produced
            return Result(produced.payload or b"", None, computed=True, produced=produced)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._sf_lock:
                self._flights.pop(fk, None)
            flight.done.set()

    def _compute_and_store(
        self,
        key: str,
        fn: Callable[[], bytes | Produced],
        tenant: str,
        entry_type: str,
        names: tuple[str, ...],
        ttl_s: float | None,
    ) -> Produced:
        # generations are read before computing: an invalidation during fn() wins
        gens = self.current_generations(names, refresh=True)
        return self._keep(key, _produced(fn()), tenant, entry_type, gens, ttl_s)

    def _keep(
        self,
        key: str,
        produced: Produced,
        tenant: str,
        entry_type: str,
        gens: dict[str, int],
        ttl_s: float | None,
    ) -> Produced:
        if produced.storable:
            ttl = produced.ttl_s if produced.ttl_s is not None else ttl_s
            self._store(self._build(key, produced.payload or b"", tenant, entry_type, gens, ttl))
        return produced

    def _refresh_later(
        self,
        key: str,
        fn: Callable[[], bytes | Produced],
        tenant: str,
        entry_type: str,
        names: tuple[str, ...],
        ttl_s: float | None,
    ) -> None:
        fk = (tenant, key)
        with self._sf_lock:
            if fk in self._refreshing:
                return
            self._refreshing.add(fk)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(2, thread_name_prefix="promptcache-swr")
            pool = self._pool

        def run() -> None:
            try:
                _log_refresh_error(key, self._compute_and_store(key, fn, tenant, entry_type, names, ttl_s))
            except Exception:
                log.warning("background refresh of %s failed", key_digest(key), exc_info=True)
            finally:
                with self._sf_lock:
                    self._refreshing.discard(fk)

        pool.submit(run)

    async def aget_or_compute(
        self,
        key: str,
        fn: Callable[[], Awaitable[bytes | Produced]],
        *,
        tenant: str,
        entry_type: str,
        tags: Iterable[str] = (),
        ttl_s: float | None = None,
    ) -> Result:
        """The asyncio twin of :meth:`get_or_compute` (single-flight per event loop)."""
        names = normalize_tags(tags)
        hit = await self.alookup(key, tenant=tenant, allow_stale=entry_type in self.swr_types)
        if hit is not None:
            if hit.stale:
                self._counters.add("swr_served")
                self._arefresh_later(key, fn, tenant, entry_type, names, ttl_s)
            return Result(hit.entry.payload or b"", hit.tier, stale=hit.stale)
        loop = asyncio.get_running_loop()
        fk = (id(loop), tenant, key)
        fut = self._aflights.get(fk)
        if fut is not None:
            self._counters.add("single_flight_waiters")
            return _shared(await asyncio.shield(fut))
        fut = loop.create_future()
        self._aflights[fk] = fut
        self._counters.add("single_flight_leaders")
        try:
            produced = await self._acompute_and_store(key, fn, tenant, entry_type, names, ttl_s)
            fut.set_result(produced)
            return Result(produced.payload or b"", None, computed=True, produced=produced)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters may be none
            raise
        finally:
            self._aflights.pop(fk, None)

    async def _acompute_and_store(
        self,
        key: str,
        fn: Callable[[], Awaitable[bytes | Produced]],
        tenant: str,
        entry_type: str,
        names: tuple[str, ...],
        ttl_s: float | None,
    ) -> Produced:
        gens = await self.acurrent_generations(names, refresh=True)
        return self._keep(key, _produced(await fn()), tenant, entry_type, gens, ttl_s)

    def _arefresh_later(
        self,
        key: str,
        fn: Callable[[], Awaitable[bytes | Produced]],
        tenant: str,
        entry_type: str,
        names: tuple[str, ...],
        ttl_s: float | None,
    ) -> None:
        fk = (tenant, key)
        if fk in self._refreshing:
            return
        self._refreshing.add(fk)

        async def run() -> None:
            try:
                produced = await self._acompute_and_store(key, fn, tenant, entry_type, names, ttl_s)
                _log_refresh_error(key, produced)
            except Exception:
                log.warning("background refresh of %s failed", key_digest(key), exc_info=True)
            finally:
                self._refreshing.discard(fk)

        task = asyncio.get_running_loop().create_task(run())
        self._bg_tasks.add(task)
        task.add_done_callback(self._bg_tasks.discard)

    # write-back --------------------------------------------------------------

    def _wb_done(self) -> None:
        with self._wb_cond:
            self._wb_pending -= 1
            if self._wb_pending == 0:
                self._deleted.clear()
                self._wb_cond.notify_all()

    def _wb_run(self) -> None:
        l2 = self.l2
        assert l2 is not None
        while True:
            op = self._wb_queue.get()
            if op is None:
                return
            _, entry, seq = op
            try:
                with self._wb_cond:
                    cut = self._deleted.get(entry.key)
                if cut is None or seq > cut:
                    sealed = self._seal(entry)
                    self._guard("l2", l2.put, sealed)
            except _Skipped:
                self._counters.add("writeback_failed")
                self._tier_counters["l2"].add("dropped")
            except Exception:
                self._counters.add("writeback_failed")
                self._tier_counters["l2"].add("dropped")
                log.exception("write-back of %s failed", key_digest(entry.key))
            finally:
                self._wb_done()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued write-back has been attempted; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._wb_cond:
            while self._wb_pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wb_cond.wait(left)
        return True

    # housekeeping ------------------------------------------------------------

    def stats(self) -> RouterStats:
        """Counters of the router and each tier (tier counters include the router's skips)."""
        tiers: dict[str, TierStats] = {}
        stores: dict[str, Any] = {"l1": self.l1, "l2": self.l2, "l3": self.l3}
        for name, store in stores.items():
            own = store.stats() if store is not None else TierStats()
            extra = self._tier_counters[name].snapshot()
            merged = {f: getattr(own, f) + getattr(extra, f) for f in TierStats.model_fields}
            tiers[name] = TierStats(**merged)
        with self._counters._lock:
            values = dict(self._counters.v)
        return RouterStats(tiers=tiers, **values)

    def close(self, timeout: float = 5.0) -> None:
        """Flush (bounded), stop the background threads and close every tier and the bus."""
        if self._closed:
            return
        self._closed = True
        if self._wb_thread is not None:
            self.flush(timeout)
            try:
                self._wb_queue.put(None, timeout=timeout)
            except queue.Full:
                log.warning("write-back queue still full at close")
            self._wb_thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
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
        if isinstance(l2, AsyncStore):
            try:
                await l2.aclose()
            except Exception:
                log.debug("closing the asyncio tier failed", exc_info=True)

    def __enter__(self) -> TieredStore:
        """Use as a context manager; closes on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close."""
        self.close()


def _produced(out: bytes | Produced) -> Produced:
    return out if isinstance(out, Produced) else Produced(payload=out)


def _shared(produced: Produced | None) -> Result:
    """A flight waiter's result: the leader's, whether it was stored or not."""
    assert produced is not None  # set by the leader before its flight is marked done
    return Result(produced.payload or b"", "flight", produced=produced)


def _log_refresh_error(key: str, produced: Produced) -> None:
    if produced.error is not None:
        log.warning("background refresh of %s failed (%s)", key_digest(key), type(produced.error).__name__)
