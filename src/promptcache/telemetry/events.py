"""The events promptcache reports to its observers: plain, frozen records of what happened.

Events carry hashes, sizes, counts, labels and low-cardinality reasons, never prompt text:
an observer may ship them to a third-party backend. ``content`` fields are filled only when the
user opted in (``telemetry.configure(capture_content=True)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from promptcache.figures import LookupReason, PrefixMissReason, ProviderMissReason

__all__ = [
    "Event",
    "LookupEvent",
    "PrepareEvent",
    "ProviderCallEvent",
    "UsageEvent",
    "WriteEvent",
    "reason_label",
]

_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|\d+(?:\.\d+)?")


def reason_label(why: str) -> str:
    """A reason with its values blanked, so it can be a metric label (bounded cardinality).

    >>> reason_label("tag needs argument 'reservation_id': not cached")
    'tag needs argument #: not cached'
    """
    return _VALUES.sub("#", why)[:80]


@dataclass(frozen=True, slots=True)
class PrepareEvent:
    """One ``prepare_request``: prompt assembly and canonicalization.

    ``prefix_key`` is the tenant-scoped SHA-256 key of the stable prefix (a hash, safe to
    export); ``miss_causes`` say why the prefix differs from the family's previous request
    (empty when it is unchanged): what metrics and aggregates count. ``miss_reasons`` add the
    block to each cause (``"tools key_order"``), for spans and logs.
    """

    tenant: str
    model: str
    format: str
    mode: str
    prefix_key: str
    family: str
    blocks: int
    prefix_blocks: int
    relocated: int
    hints: tuple[str, ...]
    prefix_changed: bool
    miss_reasons: tuple[str, ...]
    decisions: tuple[str, ...]
    duration_s: float
    agent: str = ""
    miss_causes: tuple[PrefixMissReason, ...] = ()


@dataclass(frozen=True, slots=True)
class LookupEvent:
    """One artifact-cache call (tool output, retrieval, response), answered from cache or not.

    ``reason`` is how it was answered (:class:`~promptcache.figures.LookupReason`, the label
    metrics use); ``denied`` is ``reason.denied``: the policy kept the call out of the cache
    (side-effecting tool, ineligible response, secret in the value). ``detail`` is the lookup's
    own words with values blanked (:func:`reason_label`), for spans.
    """

    entry_type: str
    tenant: str
    hit: bool
    tier: str | None
    stale: bool
    stored: bool
    denied: bool
    reason: LookupReason
    key_digest: str | None
    duration_s: float
    agent: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class WriteEvent:
    """One write-back into the tiers (L1 now, L2/L3 queued): how long the caller waited."""

    entry_type: str
    tenant: str
    bytes: int
    duration_s: float
    ok: bool
    agent: str = ""


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One provider call's usage as recorded by ``record_usage``, priced."""

    tenant: str
    provider: str
    model: str
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    cost_usd: float
    cost_avoided_usd: float
    priced: bool
    agent: str = ""


@dataclass(frozen=True, slots=True)
class ProviderCallEvent:
    """One request to the provider: duration and, on streaming calls, time to first chunk.

    ``provider_cache_hit`` is true when the provider reported prompt tokens read from its
    cache, so time to first token can be compared with and without a cache hit.
    """

    tenant: str
    provider: str
    model: str
    streaming: bool
    duration_s: float
    ttft_s: float | None
    provider_cache_hit: bool
    error: str | None = None
    agent: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    #: The provider's own verdict on the call's miss (Anthropic cache diagnostics), if it gave one.
    provider_miss_reason: ProviderMissReason | None = None


Event = PrepareEvent | LookupEvent | WriteEvent | UsageEvent | ProviderCallEvent
