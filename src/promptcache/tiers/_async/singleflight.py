"""The single-flight rule, written once.

``tiers/_async/`` holds the source; ``tiers/_sync/`` is generated from it (scripts/gen_sync.py).

See :class:`promptcache.tiers.singleflight.SingleFlight`, which joins both forms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from promptcache.tiers.concurrency import Flights
from promptcache.tiers.readthrough import AsyncCompute, Lookup, Result, served

__all__ = ["AsyncSingleFlight"]


class AsyncSingleFlight:
    """A fill runs once per (tenant, key) however many callers miss at once; the rest is ``inner``'s."""

    inner: Any
    flights: Flights[Result]
    _count: Callable[[str], None]

    async def alookup(self, key: str, *, tenant: str, allow_stale: bool = False) -> Lookup | None:
        """``inner``'s lookup (reads are not shared: only computations are)."""
        out: Lookup | None = await self.inner.alookup(key, tenant=tenant, allow_stale=allow_stale)
        return out

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
        """``inner``'s fill, led by the first caller of the key; the others share its result or error.

        Callers share a flight only if they read the same tag generations (and store epoch)
        before joining: a call that starts after ``invalidate()`` returned reads the new
        generation and so never joins a computation that started under the old one. The
        leader stamps its entry with exactly the generations its flight is keyed on.
        """
        names = tuple(tags)
        if tag_generations is None:
            tag_generations = await self.inner.acurrent_generations(names, tenant=tenant, refresh=True)
        fk = (tenant, key, getattr(tag_generations, "epoch", None), frozenset(tag_generations.items()))
        flight, leader = self.flights.ajoin(fk)
        if not leader:
            self._count("single_flight_waiters")
            shared = await flight.wait()
            return Result(shared.payload, "flight", produced=shared.produced)
        self._count("single_flight_leaders")
        result: Result | None = None
        error: BaseException | None = None
        try:
            result = await self.inner.afill(
                key,
                fn,
                tenant=tenant,
                entry_type=entry_type,
                tags=names,
                ttl_s=ttl_s,
                tag_generations=tag_generations,
            )
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            # forget the flight first: a caller arriving after this starts afresh (and finds the entry)
            self.flights.aland(fk)
            flight.finish(result, error)

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
        """The stored payload, or a fill's."""
        hit = await self.alookup(key, tenant=tenant)
        if hit is not None:
            return served(hit)
        return await self.afill(key, fn, tenant=tenant, entry_type=entry_type, tags=tags, ttl_s=ttl_s)
