"""The one read-or-compute path the artifact caches share, sync and asyncio.

It rides on :meth:`TieredStore.get_or_compute` for single-flight (N concurrent
identical misses compute once), and adds what the router does not know about:

* the computed value is checked *before* anything is written: a value holding a
  secret, or one the policy refuses, is returned to the caller but never reaches
  any tier (the router's compute callback raises instead of returning bytes);
* PII classes shorten the TTL: the value is then written by us, with the tag
  generations captured *before* the computation, so an invalidation racing with
  it still wins;
* the caller gets the original Python object on a miss, not a JSON round trip;
* any fault of the cache machinery runs the call uncached and is counted; an
  exception raised by the user's function propagates unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from promptcache.artifacts._common import (
    Counters,
    EnvelopeError,
    LookupResult,
    decode_envelope,
)
from promptcache.tiers.entry import key_digest
from promptcache.tiers.router import TieredStore

log = logging.getLogger("promptcache.artifacts")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Prepared:
    """What to do with a computed value: store ``payload`` for ``ttl_s``, or not (``payload`` None)."""

    payload: bytes | None
    ttl_s: int
    why: str
    counter: str | None = None  # counted when the value is not stored


class _UserError(Exception):
    """Wraps an exception of the user's function so it is never mistaken for a cache fault."""

    def __init__(self, original: BaseException) -> None:
        super().__init__("the wrapped function raised")
        self.original = original


class _NotStored(Exception):
    """Raised in the router's callback: the value was computed but must not be cached."""

    def __init__(self, value: Any, prepared: Prepared, gens: dict[str, int]) -> None:
        super().__init__(prepared.why)  # the reason only: never the value
        self.value = value
        self.prepared = prepared
        self.gens = gens


@dataclass(slots=True)
class _Box(Generic[T]):
    computed: bool = False
    value: Any = None


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One artifact read-or-compute, described for :func:`run`/:func:`arun`."""

    store: TieredStore
    counters: Counters
    kind: str  # envelope kind and entry type
    key: str
    tenant: str
    tags: Sequence[str]
    planned_ttl_s: int
    prepare: Callable[[T], Prepared]
    decode: Callable[[Any], T]


def _result(call: Call[Any], **kw: Any) -> LookupResult:
    return LookupResult(key_digest=key_digest(call.key), **kw)


def _served(call: Call[T], payload: bytes, tier: str | None, stale: bool) -> tuple[T, LookupResult] | None:
    try:
        value = call.decode(decode_envelope(call.kind, payload))
    except (EnvelopeError, ValueError, TypeError):
        call.counters.add("corrupt")
        log.warning("unreadable %s entry %s: recomputing uncached", call.kind, key_digest(call.key))
        return None
    call.counters.add("hits")
    return value, _result(call, hit=True, tier=tier, stale=stale, why=f"hit in {tier}")


def _not_stored(call: Call[T], exc: _NotStored, leader: bool) -> tuple[T, LookupResult]:
    p = exc.prepared
    if leader:
        call.counters.add("misses")
        if p.counter is not None:
            call.counters.add(p.counter)
        return exc.value, _result(call, hit=False, why=p.why)
    # a concurrent identical call computed it; the value is shared, never stored
    call.counters.add("hits")
    return exc.value, _result(call, hit=True, tier="flight", why=p.why)


def _produce_sync(call: Call[T], compute: Callable[[], T], box: _Box[T]) -> Callable[[], bytes]:
    def produce() -> bytes:
        # captured before computing: an invalidation during compute() makes our entry stale
        gens = call.store.current_generations(list(call.tags))
        try:
            value = compute()
        except BaseException as exc:
            raise _UserError(exc) from exc
        box.computed, box.value = True, value
        p = call.prepare(value)
        if p.payload is None or p.ttl_s != call.planned_ttl_s:
            raise _NotStored(value, p, gens)
        return p.payload

    return produce


def run(call: Call[T], compute: Callable[[], T]) -> tuple[T, LookupResult]:
    """Serve ``call`` from the store, or compute it (once across concurrent callers) and maybe store it."""
    box: _Box[T] = _Box()
    try:
        res = call.store.get_or_compute(
            call.key,
            _produce_sync(call, compute, box),
            tenant=call.tenant,
            entry_type=call.kind,
            tags=call.tags,
            ttl_s=call.planned_ttl_s,
        )
    except _UserError as exc:
        raise exc.original from None
    except _NotStored as exc:
        if box.computed and exc.prepared.payload is not None:
            return _store_shorter(call, exc)
        return _not_stored(call, exc, box.computed)
    except Exception as exc:
        return _fault(call, exc, box, compute)
    if res.computed:
        call.counters.add("misses")
        call.counters.add("stored")
        return box.value, _result(
            call,
            hit=False,
            stored=True,
            ttl_seconds=call.planned_ttl_s,
            why=f"miss: stored for {call.planned_ttl_s}s",
        )
    served = _served(call, res.payload, res.tier, res.stale)
    if served is not None:
        return served
    return _overwrite(call, compute)


def _overwrite(call: Call[T], compute: Callable[[], T]) -> tuple[T, LookupResult]:
    """An unreadable entry (corrupt, foreign, old schema): recompute and write over it.

    Leaving it in place would make every call miss until its TTL ran out.
    """
    try:
        gens = call.store.current_generations(list(call.tags))
    except Exception:
        call.counters.add("misses")
        return compute(), _result(call, hit=False, why="unreadable entry: computed uncached")
    value = compute()
    p = call.prepare(value)
    if p.payload is None:
        call.counters.add("misses")
        return value, _result(call, hit=False, why=f"unreadable entry; {p.why}")
    return _store_shorter(call, _NotStored(value, p, gens))


def _store_shorter(call: Call[T], exc: _NotStored) -> tuple[T, LookupResult]:
    p = exc.prepared
    assert p.payload is not None
    call.counters.add("misses")
    try:
        call.store.put(
            call.key,
            p.payload,
            tenant=call.tenant,
            entry_type=call.kind,
            tags=call.tags,
            ttl_s=p.ttl_s,
            tag_generations=exc.gens,
        )
    except Exception as err:
        call.counters.add("cache_errors")
        log.warning("storing %s failed (%s): served uncached", key_digest(call.key), type(err).__name__)
        return exc.value, _result(call, hit=False, why=f"{p.why}; store failed")
    call.counters.add("stored")
    return exc.value, _result(call, hit=False, stored=True, ttl_seconds=p.ttl_s, why=p.why)


def _fault(call: Call[T], exc: Exception, box: _Box[T], compute: Callable[[], T]) -> tuple[T, LookupResult]:
    call.counters.add("cache_errors")
    log.warning("cache fault on %s (%s): running uncached", key_digest(call.key), type(exc).__name__)
    why = f"cache fault ({type(exc).__name__}): uncached"
    if box.computed:
        return box.value, _result(call, hit=False, why=why)
    return compute(), _result(call, hit=False, why=why)


async def arun(call: Call[T], compute: Callable[[], Awaitable[T]]) -> tuple[T, LookupResult]:
    """The asyncio twin of :func:`run` (single-flight per event loop)."""
    box: _Box[T] = _Box()

    async def produce() -> bytes:
        gens = await call.store.acurrent_generations(list(call.tags))
        try:
            value = await compute()
        except BaseException as exc:
            raise _UserError(exc) from exc
        box.computed, box.value = True, value
        p = call.prepare(value)
        if p.payload is None or p.ttl_s != call.planned_ttl_s:
            raise _NotStored(value, p, gens)
        return p.payload

    try:
        res = await call.store.aget_or_compute(
            call.key,
            produce,
            tenant=call.tenant,
            entry_type=call.kind,
            tags=call.tags,
            ttl_s=call.planned_ttl_s,
        )
    except _UserError as exc:
        raise exc.original from None
    except _NotStored as exc:
        if box.computed and exc.prepared.payload is not None:
            return await _astore_shorter(call, exc)
        return _not_stored(call, exc, box.computed)
    except Exception as exc:
        call.counters.add("cache_errors")
        log.warning("cache fault on %s (%s): running uncached", key_digest(call.key), type(exc).__name__)
        why = f"cache fault ({type(exc).__name__}): uncached"
        if box.computed:
            return box.value, _result(call, hit=False, why=why)
        return await compute(), _result(call, hit=False, why=why)
    if res.computed:
        call.counters.add("misses")
        call.counters.add("stored")
        return box.value, _result(
            call,
            hit=False,
            stored=True,
            ttl_seconds=call.planned_ttl_s,
            why=f"miss: stored for {call.planned_ttl_s}s",
        )
    served = _served(call, res.payload, res.tier, res.stale)
    if served is not None:
        return served
    return await _aoverwrite(call, compute)


async def _aoverwrite(call: Call[T], compute: Callable[[], Awaitable[T]]) -> tuple[T, LookupResult]:
    """The asyncio twin of :func:`_overwrite`."""
    try:
        gens = await call.store.acurrent_generations(list(call.tags))
    except Exception:
        call.counters.add("misses")
        return await compute(), _result(call, hit=False, why="unreadable entry: computed uncached")
    value = await compute()
    p = call.prepare(value)
    if p.payload is None:
        call.counters.add("misses")
        return value, _result(call, hit=False, why=f"unreadable entry; {p.why}")
    return await _astore_shorter(call, _NotStored(value, p, gens))


async def _astore_shorter(call: Call[T], exc: _NotStored) -> tuple[T, LookupResult]:
    p = exc.prepared
    assert p.payload is not None
    call.counters.add("misses")
    try:
        await call.store.aput(
            call.key,
            p.payload,
            tenant=call.tenant,
            entry_type=call.kind,
            tags=call.tags,
            ttl_s=p.ttl_s,
            tag_generations=exc.gens,
        )
    except Exception as err:
        call.counters.add("cache_errors")
        log.warning("storing %s failed (%s): served uncached", key_digest(call.key), type(err).__name__)
        return exc.value, _result(call, hit=False, why=f"{p.why}; store failed")
    call.counters.add("stored")
    return exc.value, _result(call, hit=False, stored=True, ttl_seconds=p.ttl_s, why=p.why)
