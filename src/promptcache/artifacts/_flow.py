"""The one read-or-compute path the artifact caches share, sync and asyncio.

It rides on :meth:`TieredStore.get_or_compute` for single-flight (N concurrent
identical misses compute once), and adds what the router does not know about:

* the computed value is checked *before* anything is written: a value holding a
  secret, or one the policy refuses, is returned to the caller but never reaches
  any tier (the compute callback returns a :class:`Produced` without payload);
* PII classes shorten the TTL (the callback says for how long to store);
* the caller gets the original Python object on a miss, not a JSON round trip;
* any fault of the cache machinery runs the call uncached and is counted; an
  exception raised by the user's function propagates unchanged.

No exception is used for control flow: the callback's result says what to do.
The flow is written once, as :func:`steps`, a generator that yields the I/O it
needs (the store's read-or-compute, the user's function, a write) and receives
the answers; ``run`` and ``arun`` only perform that I/O, sync or awaited. They
too are written once: ``_async/flow.py`` is the source of ``arun`` and ``run``
is generated from it (scripts/gen_sync.py). The user's own exception is raised
by them, at the edge, unchanged.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, ParamSpec, TypeVar

from promptcache.artifacts._common import (
    Counters,
    EnvelopeError,
    LookupResult,
    Uncacheable,
    decode_envelope,
)
from promptcache.figures import LookupReason
from promptcache.tiers.entry import key_digest
from promptcache.tiers.outcome import Produced
from promptcache.tiers.router import Result, TieredStore

__all__ = ["AsyncFn", "AsyncThunk", "Call", "SyncFn", "SyncThunk", "aresolve", "keep", "refuse", "resolve"]

log = logging.getLogger("promptcache.artifacts")

T = TypeVar("T")
P = ParamSpec("P")

#: The user's function as a sync method takes it.
SyncFn = Callable[P, T]
#: The user's function as an asyncio method takes it: a coroutine function or a plain one.
AsyncFn = Callable[P, Awaitable[T]] | Callable[P, T]
#: The flow's compute callback, sync.
SyncThunk = Callable[[], T]
#: The flow's compute callback, asyncio.
AsyncThunk = Callable[[], Awaitable[T]]


def resolve(out: T) -> T:
    """What a sync user function returned (the sync form of :func:`aresolve`)."""
    return out


async def aresolve(out: Awaitable[T] | T) -> T:
    """What a user function returned, awaited when it returned an awaitable."""
    if inspect.isawaitable(out):
        return await out
    return out


# The artifact counter a refusal adds to (besides ``misses``).
_COUNTER = {
    LookupReason.SECRET: "refused_secret",
    LookupReason.PII: "refused_policy",
    LookupReason.POLICY_DENIED: "refused_policy",
    LookupReason.UNSERIALIZABLE: "unserializable",
}


def keep(payload: bytes, ttl_s: int, why: str) -> Produced:
    """Store ``payload`` for ``ttl_s`` seconds; ``why`` is the decision's specifics in words."""
    return Produced(payload=payload, ttl_s=ttl_s, why=why)


def refuse(reason: LookupReason, why: str = "") -> Produced:
    """Return the value to the caller but write it nowhere, for ``reason`` (``why``: its specifics)."""
    return Produced(reason=reason, why=why)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One artifact read-or-compute, described for :func:`run`/:func:`arun`.

    ``storable`` gives the form of a computed result to store and to share with
    concurrent identical calls (default: the result itself), or an
    :class:`Uncacheable`; ``prepare`` decides what to store for that form
    (:func:`keep` or :func:`refuse`); ``decode`` turns a stored envelope's value
    back into ``T``. ``policy`` is the identity of the cache's policy
    (:attr:`promptcache.policy.Policy.identity`): what this call stores carries it, and
    an entry or a concurrent call's result under another policy is not taken as a hit.
    """

    store: TieredStore
    counters: Counters
    kind: str  # envelope kind and entry type
    key: str
    tenant: str
    tags: Sequence[str]
    planned_ttl_s: int
    prepare: Callable[[T], Produced]
    decode: Callable[[Any], T]
    storable: Callable[[T], Any] | None = None
    policy: str | None = None


class _Next(Enum):
    """What :func:`_settle` cannot finish without calling the user's function again."""

    OVERWRITE = "overwrite"  # the entry found was unreadable: compute and write over it
    OWN = "own"  # the flight leader's result was its own (uncacheable): compute ours, uncached
    READMIT = "readmit"  # admitted by another policy: compute, and write over it if ours admits it


@dataclass(slots=True)
class Box:
    """What one call computed, kept across the steps."""

    produced: Produced | None = None  # set once this call has computed
    value: Any = None  # what this call computed (a stored or shared form may differ)


def _result(call: Call[Any], **kw: Any) -> LookupResult:
    return LookupResult(key_digest=key_digest(call.key), **kw)


def produce(call: Call[T], value: T) -> Produced:
    """What to store of ``value``; the ``value`` it carries is the form shared with other callers."""
    form = value if call.storable is None else call.storable(value)
    if isinstance(form, Uncacheable):
        return Produced(reason=LookupReason.UNCACHEABLE, why=form.why, policy=call.policy)
    return dataclasses.replace(call.prepare(form), value=form, policy=call.policy)


def _settle(call: Call[T], res: Result, box: Box) -> tuple[T, LookupResult] | _Next:
    """The caller's value and how it was answered, from what the store returned."""
    p = res.produced
    if p is None:  # a tier hit
        return _decoded(call, res.payload, res.tier, res.stale, res.policy)
    assert p.error is None  # the user's own exception was raised at the edge (raise_users_error)
    if box.produced is None:  # a concurrent identical call computed it
        if p.policy != call.policy:  # decided by another policy (two caches on one store)
            return _Next.READMIT
        if p.storable:
            return _decoded(call, p.payload or b"", "flight", False)
        if p.reason is LookupReason.UNCACHEABLE:
            return _Next.OWN
        call.counters.add("hits")  # shared, never stored: the detail says why it was not stored
        detail = _not_stored(p)
        return p.value, _result(call, hit=True, tier="flight", reason=LookupReason.SHARED, detail=detail)
    return _computed(call, box.value, p)


def _computed(call: Call[T], value: T, p: Produced) -> tuple[T, LookupResult]:
    call.counters.add("misses")
    if not p.storable:
        if p.reason in _COUNTER:
            call.counters.add(_COUNTER[p.reason])
        return value, _result(call, hit=False, reason=_reason(p), detail=p.why)
    call.counters.add("stored")
    ttl = p.ttl_s if p.ttl_s is not None else call.planned_ttl_s
    detail = p.why if ttl != call.planned_ttl_s else ""  # only a TTL the policy changed needs saying
    return value, _result(
        call, hit=False, stored=True, ttl_seconds=int(ttl), reason=LookupReason.STORED, detail=detail
    )


def _reason(p: Produced) -> LookupReason:
    # A value is refused through refuse() or Uncacheable, both of which name the reason.
    assert p.reason is not None, "a computed value was neither stored nor given a reason"
    return p.reason


def _not_stored(p: Produced) -> str:
    """Why a shared value was not stored, in words (for the waiters' ``detail``)."""
    return f"not stored: {_reason(p).text}" + (f" ({p.why})" if p.why else "")


def _decoded(
    call: Call[T], payload: bytes, tier: str | None, stale: bool, policy: str | None = None
) -> tuple[T, LookupResult] | _Next:
    try:
        value = call.decode(decode_envelope(call.kind, payload))
    except (EnvelopeError, ValueError, TypeError):
        call.counters.add("corrupt")
        log.warning("unreadable %s entry %s: recomputing", call.kind, key_digest(call.key))
        return _Next.OVERWRITE
    if tier != "flight" and policy != call.policy:
        # Issue 19, item 5: an entry carries the identity of the policy that admitted it, and
        # is served only under that policy; another policy's entry is a miss, recomputed here.
        return _Next.READMIT
    call.counters.add("hits")
    return value, _result(call, hit=True, tier=tier, stale=stale, reason=LookupReason.HIT)


def _fault(call: Call[Any], exc: Exception) -> str:
    """Count a fault of the cache machinery; its detail (the exception's type, never its text)."""
    call.counters.add("cache_errors")
    log.warning("cache fault on %s (%s): running uncached", key_digest(call.key), type(exc).__name__)
    return type(exc).__name__


def _uncached(call: Call[T], value: T, reason: LookupReason, detail: str) -> tuple[T, LookupResult]:
    return value, _result(call, hit=False, reason=reason, detail=detail)


def _readmitted(call: Call[T], value: T, p: Produced, err: Exception | None) -> tuple[T, LookupResult]:
    """After an entry (or a concurrent result) of another policy was recomputed under this one."""
    call.counters.add("misses")
    call.counters.add("policy_mismatch")
    reason = LookupReason.POLICY_MISMATCH
    if not p.storable:
        if p.reason in _COUNTER:
            call.counters.add(_COUNTER[p.reason])
        return value, _result(call, hit=False, reason=reason, detail=_not_stored(p))
    if err is not None:
        detail = _fault(call, err)
        return value, _result(call, hit=False, reason=LookupReason.STORE_FAILED, detail=detail)
    call.counters.add("stored")
    ttl = int(p.ttl_s if p.ttl_s is not None else call.planned_ttl_s)
    detail = "stored under this policy"
    return value, _result(call, hit=False, stored=True, ttl_seconds=ttl, reason=reason, detail=detail)


def _overwritten(call: Call[T], value: T, p: Produced, err: Exception | None) -> tuple[T, LookupResult]:
    """After an unreadable entry was recomputed: written over (``err`` None) or not."""
    if not p.storable:
        call.counters.add("misses")
        detail = _not_stored(p)
        return value, _result(call, hit=False, reason=LookupReason.UNREADABLE, detail=detail)
    if err is not None:
        call.counters.add("misses")
        detail = _fault(call, err)
        return value, _result(call, hit=False, reason=LookupReason.STORE_FAILED, detail=detail)
    return _computed(call, value, p)


# one implementation, two I/O edges ---------------------------------------------------------------

#: The I/O a step of the flow needs: ``("get_or_compute",)``, ``("compute",)`` (the user's function),
#: ``("current_generations",)`` or ``("put", produced, generations)``.
Op = tuple[Any, ...]


def steps(call: Call[T], box: Box) -> Generator[Op, Any, tuple[T, LookupResult]]:
    """The flow, written once: yields the I/O it needs, receives the answer (or a cache fault)."""
    try:
        res = yield ("get_or_compute",)
    except Exception as exc:
        detail = _fault(call, exc)
        if box.produced is not None and box.produced.error is None:
            return _uncached(call, box.value, LookupReason.CACHE_FAULT, detail)
        return _uncached(call, (yield ("compute",)), LookupReason.CACHE_FAULT, detail)
    settled = _settle(call, res, box)
    if settled is _Next.OWN:
        call.counters.add("misses")
        detail = "a concurrent call's result was its own: computed here"
        return _uncached(call, (yield ("compute",)), LookupReason.UNCACHEABLE, detail)
    if settled is _Next.OVERWRITE or settled is _Next.READMIT:
        # An unreadable entry (corrupt, foreign, old schema), or one another policy admitted:
        # recompute and write over it; leaving it in place would make every call miss until
        # its TTL ran out.
        try:
            gens = yield ("current_generations",)
        except Exception:
            call.counters.add("misses")
            value = yield ("compute",)
            detail = "after an unreadable entry, the tags' generations could not be read"
            return _uncached(call, value, LookupReason.CACHE_FAULT, detail)
        value = yield ("compute",)
        p = produce(call, value)
        err: Exception | None = None
        if p.storable:
            try:
                yield ("put", p, gens)
            except Exception as exc:
                err = exc
        if settled is _Next.READMIT:
            return _readmitted(call, value, p, err)
        return _overwritten(call, value, p, err)
    return settled


def raise_users_error(out: Any) -> None:
    """Raise the user's own exception (ours, or the flight leader's) to the user, unchanged.

    Raised here, at the edge, never inside the steps: a generator would turn a
    ``StopIteration`` into a ``RuntimeError``, and the steps would take it for a cache fault.
    """
    if isinstance(out, Result) and out.produced is not None and out.produced.error is not None:
        raise out.produced.error


def where(call: Call[Any]) -> dict[str, Any]:
    """The store arguments naming the entry (tenant, type, tags)."""
    return {"tenant": call.tenant, "entry_type": call.kind, "tags": call.tags}


def put_args(op: Op) -> dict[str, Any]:
    """The store arguments of a ``("put", produced, generations)`` step."""
    return {"ttl_s": op[1].ttl_s, "tag_generations": op[2], "policy": op[1].policy}
