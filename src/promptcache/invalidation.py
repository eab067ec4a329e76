"""Tag invalidation: tags, tag generations and the invalidation bus.

How it works
------------
Every entry records, for each of its tags, the *generation* the tag had when
the value was computed (``Entry.tags``: ``{"reservation:ABC123": 4}``).
``invalidate(tag)`` moves the tag to a new generation in the shared tier
(L2: SQLite or Redis), so every entry written before is refused by every
reader from then on. SQLite reads the current generations of the entry's
tags on the same connection, after the entry, and compares. Redis keeps its
reads a plain ``GET`` and enforces the same on the other side: a write is
refused if a tag moved on since its value was computed, and an invalidation
deletes the tag's entries before it returns (see :mod:`promptcache.tiers.redis`).

L1 copies live in each process and are not re-checked against L2 on every
hit (that would cost the round trip L1 exists to save). Instead each process
keeps a :class:`GenerationCache`:

* the invalidating process raises its own cache synchronously, before
  ``invalidate()`` returns, so it never serves a stale L1 entry afterwards;
* other processes learn of it through the :class:`InvalidationBus`
  (:class:`RedisBus`: Redis pub/sub), typically within a millisecond;
* if the bus is down, silent or absent (SQLite shared by several processes,
  or Redis unreachable), a tagged L1 entry is served only if it was validated
  against L2 less than ``max_staleness_s`` ago (default 1 s); older ones are
  re-read from L2. A bus counts as *healthy* only while a heartbeat PING sent
  on its subscription connection came back within ``max_staleness_s``; pub/sub
  preserves order on a connection, so a returned PONG proves every earlier
  invalidation message was delivered.

The bound: in another process, an L1 entry may be served at most
``max_staleness_s`` after an invalidation that process could not hear about;
with a healthy bus, only for the pub/sub delivery delay. The invalidating
process itself never serves a stale entry once ``invalidate()`` has returned.
We chose a time bound over checking L2 on every L1 hit because it keeps L1
hits in-process (microseconds) and makes the worst case explicit and tunable
(``max_staleness_s=0`` turns tagged L1 hits into L2 round trips).

Store epochs
------------
Generations are counters kept in the shared tier, and a shared tier can lose them:
``FLUSHDB``, a Redis restart without persistence, a SQLite file deleted or replaced.
The counters then start again from 0, and a number this process has seen may come
back meaning something else. So every shared tier keeps an *epoch*, a random id
written on first use and written anew when it is found missing, and returns it with
every generation read (:class:`Generations`); the invalidation bus carries it too.
When a process sees an epoch other than the one it knows, it forgets every
generation it has learned and drops its L1 (:meth:`GenerationCache.adopt_epoch`):
what it held was admitted under counters that no longer exist, so it is treated as
invalid, never compared with the new numbers. Generations thus never appear to go
backwards to a running process.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import orjson
from pydantic import BaseModel, ValidationError

__all__ = [
    "DEFAULT_MAX_STALENESS_S",
    "GenerationCache",
    "Generations",
    "InvalidationBus",
    "InvalidationEvent",
    "LocalBus",
    "RedisBus",
    "normalize_tags",
    "tag",
]

log = logging.getLogger("promptcache.tiers")

DEFAULT_MAX_STALENESS_S = 1.0
"""How long another process's L1 may serve a tagged entry without hearing from the bus."""

DEFAULT_MAX_TAGS = 50_000
"""How many tag generations a process remembers (least recently used beyond: see :class:`GenerationCache`)."""


def tag(kind: str, *parts: str | int) -> str:
    """Build a tag such as ``tag("tool", "search", "v3") == "tool:search:v3"``."""
    text = ":".join([kind, *(str(p) for p in parts)])
    normalize_tags([text])
    return text


def normalize_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Deduplicate and sort tags as declared (the stores see digests: :mod:`promptcache.tagnames`).

    Refuses empty tags and ones with newline or NUL.
    """
    out = set()
    for t in tags:
        if not isinstance(t, str) or not t or "\n" in t or "\x00" in t or len(t) > 512:
            raise ValueError("a tag is 1-512 characters without newline or NUL")
        out.add(t)
    return tuple(sorted(out))


class Generations(dict[str, int]):
    """Tag generations read together, and the epoch of the store they were read from.

    A plain ``dict`` of tag to generation everywhere a dict is expected; ``epoch`` is
    the shared tier's epoch at the time of the read (``None`` where there is no shared
    tier, or where the generations come from this process's own cache without one).
    Numbers of different epochs are never compared (see the module docstring).
    """

    __slots__ = ("epoch",)

    def __init__(self, gens: Mapping[str, int] | None = None, *, epoch: str | None = None) -> None:
        """``gens`` with ``epoch``."""
        super().__init__(gens or {})
        self.epoch = epoch


def new_epoch() -> str:
    """A fresh, random store epoch (what a shared tier writes when it finds none)."""
    return uuid.uuid4().hex


#: How many replaced store epochs a :class:`GenerationCache` remembers, to ignore late news of them.
_RETIRED_EPOCHS = 16


class GenerationCache:
    """This process's view of tag generations (a lower bound of the truth in L2).

    ``known(tag)`` never goes down except on :meth:`reset` (bus reconnect) or
    when the shared tier's epoch changes (:meth:`adopt_epoch`), so an L1 entry
    whose recorded generation is below it is certainly stale.

    Bounded: at most ``max_tags`` tags are remembered (default
    :data:`DEFAULT_MAX_TAGS`: 16 MB measured at the bound), the least recently learned
    first out. For L1 a forgotten tag reads as the highest generation ever forgotten
    (the *floor*): an L1 entry stamped below it is dropped and read again from L2,
    which checks it. Forgetting can cost a miss, never serve a stale entry. ``fresh``
    does not vouch for a forgotten tag, so its generation is read again from L2.
    """

    def __init__(self, clock: Callable[[], float] = time.time, *, max_tags: int = DEFAULT_MAX_TAGS) -> None:
        """Create an empty cache of at most ``max_tags`` tags; ``clock`` stamps when each was learned."""
        if max_tags < 1:
            raise ValueError("max_tags must be positive")
        self._clock = clock
        self.max_tags = max_tags
        self._lock = threading.Lock()
        self._gens: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._floor = 0
        self._listeners: list[Callable[[str, int], None]] = []
        self.epoch: str | None = None
        """The shared tier's epoch these generations belong to (``None``: none seen yet)."""
        # Epochs replaced since: random tokens never written again, so a read or a bus event
        # carrying one is late news from the reset store (kept few: a reset is rare).
        self._retired: OrderedDict[str, None] = OrderedDict()

    def adopt_epoch(self, epoch: str | None) -> bool:
        """Take ``epoch`` as the shared tier's; True if it replaced another one.

        On a change every generation learned so far is forgotten: they were counted
        in a store that has since been reset, and must not be compared with the new
        store's numbers. The caller drops what it admitted under them (its L1).
        ``None`` (a read that carries no epoch) changes nothing.
        """
        if epoch is None:
            return False
        with self._lock:
            if self.epoch == epoch or epoch in self._retired:
                return False
            changed = self.epoch is not None
            if self.epoch is not None:
                self._retired[self.epoch] = None
                if len(self._retired) > _RETIRED_EPOCHS:
                    self._retired.popitem(last=False)
            self.epoch = epoch
            if changed:
                self._gens.clear()
                self._floor = 0  # a number forgotten in the old store means nothing in the new one
        return changed

    def retired(self, epoch: str | None) -> bool:
        """Whether ``epoch`` is one this cache has seen replaced: what carries it (a bus event
        published before the reset and delivered after it) speaks of the reset store.

        >>> g = GenerationCache()
        >>> g.adopt_epoch("e1"), g.adopt_epoch("e2"), g.adopt_epoch("e1"), g.retired("e1"), g.epoch
        (False, True, False, True, 'e2')
        """
        with self._lock:
            return epoch is not None and epoch in self._retired

    def __len__(self) -> int:
        """How many tags are remembered (at most ``max_tags``)."""
        return len(self._gens)

    def known(self, tag: str) -> int:
        """The highest generation seen for ``tag`` (the floor if it was forgotten, 0 if none)."""
        item = self._gens.get(tag)
        return self._floor if item is None else item[0]

    def heard(self, tag: str) -> int:
        """The generation this process learned for ``tag`` and still remembers (0 if none).

        For an entry L2 has just checked: only an invalidation L2 has not applied yet matters.
        """
        item = self._gens.get(tag)
        return 0 if item is None else item[0]

    def _set(self, tag: str, gen: int, now: float) -> None:
        """Remember ``tag`` at ``gen`` (caller holds the lock), forgetting the oldest beyond the bound."""
        gens = self._gens
        gens[tag] = (gen, now)
        gens.move_to_end(tag)
        while len(gens) > self.max_tags:
            _, (old, _) = gens.popitem(last=False)
            if old > self._floor:
                self._floor = old

    def fresh(self, tags: Sequence[str], max_age_s: float | None) -> dict[str, int] | None:
        """Generations of ``tags`` if all were learned within ``max_age_s`` (None = any age)."""
        now = self._clock()
        out: dict[str, int] = {}
        for t in tags:
            item = self._gens.get(t)
            if item is None or (max_age_s is not None and now - item[1] >= max_age_s):
                return None
            out[t] = item[0]
        return out

    def observe(self, gens: Mapping[str, int]) -> None:
        """Record generations read from L2 or the bus.

        A generation only moves up. A read of L2 that raced with an invalidation
        may come back with the number from before it; taking that would let the
        invalidated L1 copies be served again. A store that lost its counters is
        told apart by its epoch instead (:meth:`adopt_epoch`), which forgets them all.
        """
        now = self._clock()
        raised: list[tuple[str, int]] = []
        with self._lock:
            for t, g in gens.items():
                old = self._gens.get(t)
                if old is None or g >= old[0]:
                    self._set(t, g, now)
                    if old is not None and g > old[0]:
                        raised.append((t, g))
        for t, g in raised:
            self._notify(t, g)

    def bump_local(self, tag: str) -> int:
        """Advance ``tag`` by one without any shared tier (single-process use)."""
        with self._lock:
            gen = self.known(tag) + 1
            self._set(tag, gen, self._clock())
        self._notify(tag, gen)
        return gen

    def add_listener(self, fn: Callable[[str, int], None]) -> None:
        """Call ``fn(tag, gen)`` whenever a tag's known generation goes up."""
        self._listeners.append(fn)

    def reset(self) -> None:
        """Forget every generation (after a bus outage we may have missed invalidations).

        The store epoch is kept: a bus outage is not a reset of the store, and a reset is
        still told by the next generation read.
        """
        with self._lock:
            self._gens.clear()

    def _notify(self, tag: str, gen: int) -> None:
        for fn in list(self._listeners):
            try:
                fn(tag, gen)
            except Exception:
                log.exception("generation listener failed")


class InvalidationEvent(BaseModel):
    """A message on the bus: a tag moved to ``gen``, or ``key`` was deleted.

    ``epoch`` is the shared tier's epoch the sender read with ``gen``: a receiver that
    knows another epoch learns from it that the store was reset.
    """

    kind: Literal["tag", "key", "clear"]
    tag: str | None = None
    gen: int | None = None
    key: str | None = None
    origin: str = ""
    epoch: str | None = None


Handler = Callable[[InvalidationEvent], None]


@runtime_checkable
class InvalidationBus(Protocol):
    """Carries invalidations to every process that shares the L2 tier."""

    def publish(self, event: InvalidationEvent) -> None:
        """Send ``event`` to all subscribers (other processes included, where supported)."""
        ...

    def subscribe(self, handler: Handler) -> None:
        """Call ``handler`` for every event (from any process)."""
        ...

    def on_reset(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` after an outage, when events may have been missed."""
        ...

    def healthy(self) -> bool:
        """True if every event published elsewhere up to ``max_staleness_s`` ago has arrived."""
        ...

    def close(self) -> None:
        """Stop delivering and release connections."""
        ...


class LocalBus:
    """An in-process bus: delivers synchronously to this process's subscribers only.

    It reaches no other process, so it never reports :meth:`healthy` unless
    told that this process is alone (``fleet_wide=True``: no shared tier or a
    private one), in which case L1 needs no staleness bound.
    """

    def __init__(self, *, fleet_wide: bool = False) -> None:
        """Create a bus; ``fleet_wide`` declares that no other process shares the L2."""
        self._handlers: list[Handler] = []
        self._fleet_wide = fleet_wide
        self.origin = uuid.uuid4().hex

    def publish(self, event: InvalidationEvent) -> None:
        """Deliver ``event`` to every local handler, now, on this thread."""
        for h in list(self._handlers):
            try:
                h(event)
            except Exception:
                log.exception("invalidation handler failed")

    def subscribe(self, handler: Handler) -> None:
        """Register ``handler``."""
        self._handlers.append(handler)

    def on_reset(self, fn: Callable[[], None]) -> None:
        """A local bus never misses events; ``fn`` is never called."""

    def healthy(self) -> bool:
        """True only when this process is declared to be alone."""
        return self._fleet_wide

    def close(self) -> None:
        """Drop the handlers."""
        self._handlers.clear()


class RedisBus:
    """Redis pub/sub bus with a heartbeat that proves delivery is live.

    A background thread holds the subscription, PINGs on the subscription
    connection every ``heartbeat_s`` and records when each PONG comes back;
    :meth:`healthy` is true while the last PONG is younger than
    ``max_staleness_s``. On a connection error it reconnects with backoff and,
    once subscribed again, calls the ``on_reset`` callbacks (events published
    while it was away are lost, so L1 must drop what it cannot vouch for).
    ``client`` is a sync ``redis.Redis`` or ``redis.cluster.RedisCluster``.
    """

    def __init__(
        self,
        client: Any,
        *,
        channel: str = "promptcache:inv",
        heartbeat_s: float = 0.2,
        max_staleness_s: float = DEFAULT_MAX_STALENESS_S,
    ) -> None:
        """Subscribe to ``channel`` in a daemon thread (started here)."""
        if heartbeat_s >= max_staleness_s:
            raise ValueError("heartbeat_s must be shorter than max_staleness_s")
        self._client = client
        self.channel = channel
        self.heartbeat_s = heartbeat_s
        self.max_staleness_s = max_staleness_s
        self.origin = uuid.uuid4().hex
        self._handlers: list[Handler] = []
        self._reset_fns: list[Callable[[], None]] = []
        self._confirmed = float("-inf")
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self.received = 0
        self._thread = threading.Thread(target=self._run, name="promptcache-bus", daemon=True)
        self._thread.start()

    def wait_subscribed(self, timeout: float = 5.0) -> bool:
        """Block until the subscription is live (or ``timeout``); for startup and tests."""
        return self._subscribed.wait(timeout)

    def publish(self, event: InvalidationEvent) -> None:
        """PUBLISH ``event`` (raises the client's error if Redis is unreachable)."""
        if not event.origin:
            event = event.model_copy(update={"origin": self.origin})
        self._client.publish(self.channel, orjson.dumps(event.model_dump(exclude_none=True)))

    def subscribe(self, handler: Handler) -> None:
        """Register ``handler`` for events from every process, this one included."""
        self._handlers.append(handler)

    def on_reset(self, fn: Callable[[], None]) -> None:
        """Register ``fn`` to run after every reconnect."""
        self._reset_fns.append(fn)

    def healthy(self) -> bool:
        """True while the last heartbeat round trip completed within ``max_staleness_s``."""
        return time.monotonic() - self._confirmed < self.max_staleness_s

    def close(self) -> None:
        """Stop the thread (bounded wait) and drop handlers."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._handlers.clear()

    def _dispatch(self, data: bytes) -> None:
        try:
            event = InvalidationEvent.model_validate(orjson.loads(data))
        except (orjson.JSONDecodeError, ValidationError):
            log.warning("ignoring a malformed invalidation message (%d bytes)", len(data))
            return
        self.received += 1
        for h in list(self._handlers):
            try:
                h(event)
            except Exception:
                log.exception("invalidation handler failed")

    def _run(self) -> None:
        backoff = 0.05
        first = True
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                last_ping = 0.0
                while not self._stop.is_set():
                    now = time.monotonic()
                    if now - last_ping >= self.heartbeat_s:
                        pubsub.ping(repr(now))
                        last_ping = now
                    msg = pubsub.get_message(timeout=min(0.05, self.heartbeat_s))
                    if msg is None:
                        continue
                    if msg["type"] == "pong":
                        sent = float(msg["data"] or 0.0)
                        # events published before the PING was sent have all arrived
                        self._confirmed = max(self._confirmed, sent)
                        if not self._subscribed.is_set():
                            if not first:
                                self._reset()
                            first = False
                            self._subscribed.set()
                        backoff = 0.05
                    elif msg["type"] == "message":
                        self._dispatch(msg["data"])
            except Exception as exc:
                if self._stop.is_set():
                    break
                self._subscribed.clear()
                log.warning("invalidation bus disconnected (%s); retrying", type(exc).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        log.debug("closing pubsub failed", exc_info=True)

    def _reset(self) -> None:
        for fn in list(self._reset_fns):
            try:
                fn()
            except Exception:
                log.exception("bus reset callback failed")
