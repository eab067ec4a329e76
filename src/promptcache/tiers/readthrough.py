"""The read path's interface: what the router and its read wrappers all offer.

A read-through store answers three calls, each in a sync and an asyncio form:

* ``lookup(key, tenant=, allow_stale=)``: what a tier holds, or ``None``;
* ``fill(key, fn, ..., tag_generations=)``: compute ``fn()`` now and store what it
  produced (no lookup), stamped with the tag generations read before computing;
* ``get_or_compute(key, fn, ...)``: ``lookup``, then ``fill`` on a miss.

:class:`~promptcache.tiers.router.TieredStore` implements ``lookup`` and ``fill``
over the tiers; :class:`~promptcache.tiers.singleflight.SingleFlight` and
:class:`~promptcache.tiers.swr.StaleWhileRevalidate` take such a store and are
one (the way LangGraph's ``serde/encrypted.py`` wraps a serializer), each
overriding the call its rule is about. The router composes them in one place,
:func:`~promptcache.tiers.router.read_through`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from promptcache.tiers.entry import Entry
from promptcache.tiers.outcome import Produced

__all__ = ["AsyncCompute", "Lookup", "ReadThrough", "Result", "SyncCompute", "produced_of", "served"]

#: A compute callback: the bytes to store, or a :class:`Produced` that may say "don't store".
SyncCompute = Callable[[], bytes | Produced]
#: The asyncio form of :data:`SyncCompute` (the name the generated sync code maps it to).
AsyncCompute = Callable[[], Awaitable[bytes | Produced]]


@dataclass(frozen=True, slots=True)
class Lookup:
    """A read that found something: the (plaintext) entry, the tier it came from, and staleness."""

    entry: Entry
    tier: str
    stale: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """What ``get_or_compute`` returns.

    ``tier`` is the tier that served it, ``"flight"`` if another caller computed
    it concurrently, ``None`` if this call computed it. ``produced`` is what the
    compute callback returned (this call's or the flight leader's), ``None`` on
    a tier hit; ``payload`` is empty when nothing was stored. ``policy`` is, on a
    tier hit, the identity of the policy that admitted the entry served.
    """

    payload: bytes
    tier: str | None
    stale: bool = False
    computed: bool = False
    produced: Produced | None = None
    policy: str | None = None


def produced_of(out: bytes | Produced) -> Produced:
    """What a compute callback returned, as a :class:`Produced` (bare bytes: store them)."""
    return out if isinstance(out, Produced) else Produced(payload=out)


def served(hit: Lookup) -> Result:
    """The :class:`Result` of a read answered by ``hit``."""
    return Result(hit.entry.payload or b"", hit.tier, stale=hit.stale, policy=hit.entry.policy)


class ReadThrough(Protocol):
    """The read path's store interface (see the module docstring)."""

    def lookup(self, key: str, *, tenant: str, allow_stale: bool = False) -> Lookup | None:
        """What a tier holds for ``key`` and ``tenant``; stale only if ``allow_stale``."""
        ...

    async def alookup(self, key: str, *, tenant: str, allow_stale: bool = False) -> Lookup | None:
        """See :meth:`lookup`."""
        ...

    def fill(
        self,
        key: str,
        fn: SyncCompute,
        *,
        tenant: str,
        entry_type: str,
        tags: Iterable[str] = (),
        ttl_s: float | None = None,
        tag_generations: dict[str, int] | None = None,
    ) -> Result:
        """Compute ``fn()`` now and store what it produced when storable.

        ``tag_generations``: the tags' generations read before the computation
        (``current_generations``), which the entry is stamped with; read now if not given.
        """
        ...

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
        """See :meth:`fill`."""
        ...

    def get_or_compute(
        self,
        key: str,
        fn: SyncCompute,
        *,
        tenant: str,
        entry_type: str,
        tags: Iterable[str] = (),
        ttl_s: float | None = None,
    ) -> Result:
        """The stored payload, or ``fill``'s."""
        ...

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
        """See :meth:`get_or_compute`."""
        ...
