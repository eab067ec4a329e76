"""``SingleFlight``: N concurrent identical misses compute once.

Design rule (DESIGN.md, "Failure behaviour": *a cache outage raises latency and
cost*; the cache must not multiply them): the first caller of a key leads and
computes; callers that arrive while it runs wait and share its
:class:`~promptcache.tiers.outcome.Produced`, stored or not, or its failure.
Threads share one flight per (tenant, key); asyncio tasks share one per event
loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from promptcache.tiers.outcome import Produced

__all__ = ["SingleFlight"]


@dataclass(slots=True)
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    produced: Produced | None = None
    error: BaseException | None = None


class SingleFlight:
    """Flights in progress, by (tenant, key)."""

    def __init__(self, count: Callable[[str], None]) -> None:
        """``count(name)`` adds to ``single_flight_leaders``/``single_flight_waiters``."""
        self._count = count
        self._lock = threading.Lock()
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._aflights: dict[tuple[int, str, str], asyncio.Future[Produced]] = {}

    def run(self, tenant: str, key: str, lead: Callable[[], Produced]) -> tuple[Produced, bool]:
        """``lead()``'s result, run by this thread (True) or by the flight it joined (False)."""
        fk = (tenant, key)
        with self._lock:
            flight = self._flights.get(fk)
            leader = flight is None
            if flight is None:
                flight = self._flights[fk] = _Flight()
        if not leader:
            self._count("single_flight_waiters")
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.produced is not None  # set by the leader before done
            return flight.produced, False
        self._count("single_flight_leaders")
        try:
            flight.produced = lead()
            return flight.produced, True
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(fk, None)
            flight.done.set()

    async def arun(
        self, tenant: str, key: str, lead: Callable[[], Awaitable[Produced]]
    ) -> tuple[Produced, bool]:
        """See :meth:`run` (one flight per event loop)."""
        loop = asyncio.get_running_loop()
        fk = (id(loop), tenant, key)
        fut = self._aflights.get(fk)
        if fut is not None:
            self._count("single_flight_waiters")
            return await asyncio.shield(fut), False
        fut = loop.create_future()
        self._aflights[fk] = fut
        self._count("single_flight_leaders")
        try:
            produced = await lead()
            fut.set_result(produced)
            return produced, True
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: there may be no waiter
            raise
        finally:
            self._aflights.pop(fk, None)
