"""What a compute callback hands the store, and why a computed value was not stored.

The store's read-or-compute path used to learn "computed, but don't store it"
from exceptions raised inside the callback. It now learns it from the value the
callback returns: a :class:`Produced` with ``payload=None`` is shared with
concurrent identical callers and returned, never written. A user function's
own exception travels the same way (``error``) and is raised once, at the edge,
by the artifact flow, so the store never has to tell it from a cache fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from promptcache.figures import LookupReason

__all__ = ["Outcome", "Produced"]


class Outcome(StrEnum):
    """What happened to one read-or-compute call."""

    HIT = "hit"  # served from a tier, or from a concurrent identical call that stored it
    STORED = "stored"  # computed by this call and written
    NOT_STORED = "not_stored"  # computed (here or by a concurrent call) and not written: see LookupReason


@dataclass(frozen=True, slots=True)
class Produced:
    """The result of a compute callback.

    ``payload`` is what to store (``None``: don't, for ``reason``), for
    ``ttl_s`` seconds when given (else the caller's planned TTL). ``value`` is
    the caller's object, shared with concurrent identical callers when it is
    not stored. ``error`` is the user function's exception: nothing is stored
    and every caller of the flight re-raises it. ``policy`` is the identity of
    the policy that decided (:attr:`promptcache.policy.Policy.identity`): the
    stored entry carries it, and a caller under another policy does not take
    the value as its own.
    """

    value: Any = None
    payload: bytes | None = None
    ttl_s: float | None = None
    reason: LookupReason | None = None
    why: str = ""
    error: Exception | None = None
    policy: str | None = None

    @property
    def storable(self) -> bool:
        """Whether the store should write ``payload``."""
        return self.payload is not None and self.error is None
