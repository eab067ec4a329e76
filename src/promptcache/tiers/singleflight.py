"""``SingleFlight``: N concurrent identical misses compute once, as a read-through store wrapper.

Design rule (DESIGN.md, "Failure behaviour": *a cache outage raises latency and
cost*; the cache must not multiply them): the first caller to fill a key leads
and computes; callers that arrive while it runs wait and share its
:class:`~promptcache.tiers.readthrough.Result` (stored or not), or its failure.
Threads share one flight per (tenant, key); asyncio tasks share one per event
loop. Lookups are not shared: only computations are.

The rule is written once, for asyncio (``_async/singleflight.py``); the sync
methods are generated from it (``_sync/singleflight.py``, scripts/gen_sync.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from promptcache.tiers._async.singleflight import AsyncSingleFlight
from promptcache.tiers._sync.singleflight import SyncSingleFlight
from promptcache.tiers.concurrency import Flights
from promptcache.tiers.readthrough import Result

__all__ = ["SingleFlight"]


class SingleFlight(SyncSingleFlight, AsyncSingleFlight):
    """Wrap ``inner`` (a :class:`~promptcache.tiers.readthrough.ReadThrough`) so that fills are shared."""

    def __init__(self, inner: Any, *, count: Callable[[str], None]) -> None:
        """``count(name)`` adds to ``single_flight_leaders``/``single_flight_waiters``."""
        self.inner = inner
        self._count = count
        self.flights: Flights[Result] = Flights()
