"""``CircuitBreaker``: a store wrapper that skips a tier which failed, for a cooldown.

Design rule (DESIGN.md, "Failure behaviour"): *L1/L2/L3 unavailable → skip the
tier, go on to the next or to the uncached call; count ``tier_skipped``.* A
call that raises or (asyncio) outlasts ``timeout_s`` is skipped and opens the
circuit for ``cooldown_s``, so that the next calls do not wait on the same dead
tier again; while open, calls are skipped at once. Either way the caller gets
:class:`TierSkipped` and carries on without the tier.

This wrapper is also the one place where sync and asyncio differ for a tier:
``a<method>`` uses the tier's native coroutine when it has one (Redis) and runs
the blocking method in a thread otherwise (SQLite, files), so the wrappers above
it never ask which kind of tier they hold.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Generic, TypeVar

from promptcache.tiers._async.breaker import AsyncGuardedStore
from promptcache.tiers._sync.breaker import SyncGuardedStore
from promptcache.tiers.base import LocationUnusable, StatsCounter, TierError
from promptcache.tiers.entry import Entry

__all__ = ["CircuitBreaker", "Outage", "TierSkipped"]

log = logging.getLogger("promptcache.tiers")

S = TypeVar("S")


class TierSkipped(TierError):
    """The tier was skipped: it just failed or timed out, or its circuit is open."""


class Outage:
    """Which tiers of one store are failing now, so that an outage is warned about once.

    A tier that stays down (an unusable cache directory, a Redis that is gone) would otherwise
    log once per cooldown for as long as the process runs, and the L2 and L3 of one cache
    directory would each log the same fault. The breakers of one store share one ``Outage``:
    the first failure warns, later ones are logged at debug level until every tier works again.
    """

    #: The same fault of the same tier is warned about again only after this many seconds, even
    #: if a call in between succeeded (a call that needs nothing of the broken part, such as a
    #: generation read answered from memory, does not mean the outage is over).
    REWARN_S = 300.0

    def __init__(self) -> None:
        """Start with no tier failing."""
        self._lock = threading.Lock()
        self._failing: set[str] = set()
        self._warned: dict[tuple[str, str], float] = {}

    def failed(self, tier: str, what: str, cooldown_s: float) -> None:
        """``tier`` failed with ``what`` (an exception's type, or an unusable location's own words)."""
        now = time.monotonic()
        with self._lock:
            last = self._warned.get((tier, what))
            first = not self._failing and (last is None or now - last >= self.REWARN_S)
            self._failing.add(tier)
            if first:
                self._warned[(tier, what)] = now
                if len(self._warned) > 64:
                    self._warned.pop(next(iter(self._warned)))
        if first:
            log.warning("tier %s skipped after %s (retried every %.1fs)", tier, what, cooldown_s)
        else:
            log.debug("tier %s skipped again for %.1fs after %s", tier, cooldown_s, what)

    def recovered(self, tier: str) -> None:
        """``tier`` answered again."""
        if tier not in self._failing:  # the hot path: one set lookup, no lock
            return
        with self._lock:
            self._failing.discard(tier)
        log.info("tier %s works again", tier)


class CircuitBreaker(SyncGuardedStore, AsyncGuardedStore, Generic[S]):
    """Guard every call into ``inner`` (a :class:`~promptcache.tiers.base.Store` or a blob store)."""

    def __init__(
        self,
        inner: S,
        *,
        name: str,
        counters: StatsCounter,
        cooldown_s: float = 1.0,
        timeout_s: float = 0.5,
        outage: Outage | None = None,
    ) -> None:
        """Count skips in ``counters`` (the tier's) under the tier ``name`` (``l2``, ``l3``).

        ``outage``: shared by the breakers of one store, so that one fault is warned about once.
        """
        self.inner = inner
        self.name = name
        self.counters = counters
        self.cooldown_s = cooldown_s
        self.timeout_s = timeout_s
        self.outage = outage if outage is not None else Outage()
        self._open_until = 0.0

    def _check(self) -> None:
        if time.monotonic() < self._open_until:
            self.counters.add("tier_skipped")
            raise TierSkipped(f"{self.name} circuit open")

    def _trip(self, exc: BaseException) -> TierSkipped:
        self.counters.add("tier_skipped")
        self._open_until = time.monotonic() + self.cooldown_s
        # Said in the exception's type only, except for an unusable location, whose own words
        # (a directory and the fix) are written to be logged.
        what = str(exc) if isinstance(exc, LocationUnusable) else type(exc).__name__
        self.outage.failed(self.name, what, self.cooldown_s)
        return TierSkipped(f"{self.name} skipped after {type(exc).__name__}")

    def call(self, method: str, *args: Any) -> Any:
        """``inner.<method>(*args)``, or :class:`TierSkipped`."""
        self._check()
        try:
            out = getattr(self.inner, method)(*args)
        except Exception as exc:
            raise self._trip(exc) from exc
        self.outage.recovered(self.name)
        return out

    async def acall(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        """``await inner.a<method>(*args)`` (or the sync method in a thread), bounded in time."""
        self._check()
        native = getattr(self.inner, f"a{method}", None)
        aw = native(*args) if native is not None else asyncio.to_thread(getattr(self.inner, method), *args)
        try:
            out = await asyncio.wait_for(aw, self.timeout_s if timeout_s is None else timeout_s)
        except Exception as exc:
            raise self._trip(exc) from exc
        self.outage.recovered(self.name)
        return out

    # the store interface, guarded --------------------------------------------------------------

    def put(self, entry: Entry) -> None:
        """See :meth:`Store.put` (the other store methods: ``_async/breaker.py``, generated sync form)."""
        self.call("put", entry)

    # An invalidation is never skipped: it reaches the tier or fails loudly (InvalidationFailed),
    # because a skipped invalidation would leave other processes serving what it meant to drop.

    def invalidate_tag(self, tag: str) -> int:
        """See :meth:`Store.invalidate_tag` (not guarded: see above)."""
        gen: int = getattr(self.inner, "invalidate_tag")(tag)  # noqa: B009 - S is not a Store for blobs
        return gen

    async def ainvalidate_tag(self, tag: str) -> int:
        """See :meth:`Store.invalidate_tag`; bounded by four tier timeouts, not guarded."""
        native = getattr(self.inner, "ainvalidate_tag", None)
        if native is None:
            gen: int = await asyncio.to_thread(getattr(self.inner, "invalidate_tag"), tag)  # noqa: B009
            return gen
        out: int = await asyncio.wait_for(native(tag), self.timeout_s * 4)
        return out
