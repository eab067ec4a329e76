"""The call context of one model call under promptcache, and what is done with it.

Integrations set a :class:`CallContext` around the framework call; the seams into the SDKs
rewrite the request while it is current and read the provider's usage back into it:
:mod:`promptcache.transport` (an httpx transport: ``openai``, ``anthropic``, ``google-genai``),
:mod:`promptcache.botocore_events` (botocore's event system: boto3 ``bedrock-runtime``) and
:mod:`promptcache.anthropic_middleware` (the anthropic SDK's client middleware: its Bedrock and
Vertex clients).

This module is framework-agnostic (it imports no agent framework):

* :class:`CallContext` / :func:`use_call` — one model call under promptcache, set in a context
  variable around the framework call (and around each step of a stream);
* :data:`HINT_REJECTIONS` — how many requests the seams resent without caching hints;
* :func:`plan_summary` / :func:`record_call` — what was done (no prompt text) and the usage fed to
  the cache's shared stats (``promptcache.stats.recorder_for``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from promptcache.engine import PromptCache
from promptcache.formats import WireFormat
from promptcache.metrics import CallFigures, figures_from_usage
from promptcache.plan import Plan
from promptcache.stats import recorder_for
from promptcache.telemetry import hooks
from promptcache.telemetry.events import ProviderCallEvent
from promptcache.usage import CacheUsage

__all__ = [
    "HINT_REJECTIONS",
    "CallContext",
    "current_call",
    "mark_first_chunk",
    "new_call_id",
    "plan_summary",
    "record_call",
    "to_plain",
    "use_call",
]

HINT_REJECTIONS: Counter[str] = Counter()
"""Process-wide counts of absorbed faults, by :class:`promptcache.figures.Degradation` value:
requests resent without caching hints (``hint_rejected``), and requests promptcache failed to
prepare and sent as built (``request_unchanged``)."""


def new_call_id() -> str:
    """A fresh call id: 32 random hex digits, like ``uuid4().hex`` at a fraction of its cost (it is
    made on every model call)."""
    return os.urandom(16).hex()


@dataclass(slots=True)
class CallContext:
    """One model call under promptcache: who it runs for, what was sent, what the provider said."""

    cache: PromptCache
    tenant: str
    format: WireFormat | None = None
    """A forced wire format (None: the seam tells it from the endpoint)."""
    call_id: str = field(default_factory=new_call_id)
    plan: Plan | None = None
    """The plan of the request as sent (None: not rewritten)."""
    body: dict[str, Any] | None = None
    """The rewritten body, kept only until the provider answered: a hint rejection needs it.

    Dropped then (by the seam, once the answer is in) rather than with the context: freed right
    after the SDK serialized it, its objects are still in the CPU's cache; freed after the
    answer was parsed and described, they cost several times as much (measured: ~130k cycles
    a 16k-token request on a cold path, ~40k right after the call)."""
    format_used: WireFormat | None = None
    model: str | None = None
    usage: CacheUsage | None = None
    requests: int = 0
    stream_events: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hints_off: bool = False
    """Set once the provider rejected a caching hint: every later send of this call carries none."""
    started: float = field(default_factory=time.perf_counter)
    first_chunk_at: float | None = None
    """When the first streamed chunk arrived (None: not streamed); for time to first token."""


def mark_first_chunk(ctx: CallContext) -> None:
    """Note the first streamed chunk of ``ctx`` (later calls change nothing)."""
    if ctx.first_chunk_at is None:
        ctx.first_chunk_at = time.perf_counter()


current_call: ContextVar[CallContext | None] = ContextVar("promptcache_llm_call", default=None)
"""The call being made; set only around a framework call or one step of its stream."""


@contextmanager
def use_call(ctx: CallContext) -> Iterator[CallContext]:
    """Make ``ctx`` the current call for the duration of the block."""
    token = current_call.set(ctx)
    try:
        yield ctx
    finally:
        current_call.reset(token)


def to_plain(obj: Any) -> Any:
    """An SDK response or event as plain JSON data (dicts pass through)."""
    if isinstance(obj, Mapping):
        return dict(obj)
    for name in ("to_dict", "model_dump"):
        fn = getattr(obj, name, None)
        if callable(fn):
            try:
                return fn(mode="json") if name == "model_dump" else fn()
            except TypeError:
                return fn()
    return obj


def plan_summary(ctx: CallContext) -> dict[str, Any]:
    """What promptcache did to the call and what the provider reported: no prompt text."""
    out: dict[str, Any] = {"tenant": ctx.tenant, "mode": ctx.cache.mode, "call_id": ctx.call_id}
    fmt = ctx.format_used
    if fmt is not None:
        # ``_value_`` is ``.value`` without Enum's Python-level descriptor (a call per read).
        out["format"] = fmt._value_
    plan = ctx.plan
    if plan is not None:
        out.update(
            prefix_key=plan.prefix_key,
            routing_key=plan.routing_key,
            hints=[{"kind": h.kind, "where": h.where, "ttl": h.ttl} for h in plan.hints],
            relocated_values=len(plan.fragments),
            explain=plan.explain_text(),
        )
        reason = plan.provider_reason
        if reason is not None:
            out["provider_miss_reason"] = reason.value
    u = ctx.usage
    if u is not None:
        out.update(
            model=u.model,
            input_tokens=u.input_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            output_tokens=u.output_tokens,
        )
    if ctx.hints_off:
        out["hint_rejected"] = True
    if ctx.notes:
        out["notes"] = list(ctx.notes)
    return out


def record_call(ctx: CallContext) -> CallFigures | None:
    """Feed the call's provider usage to the cache's shared stats; its priced figures, or None.

    Also reports the provider call to telemetry (duration, and time to first token on
    streamed calls, split by whether the provider read the prompt from its cache).
    """
    if hooks.enabled():
        _emit_provider_call(ctx)
    usage = ctx.usage
    if usage is None:
        return None
    plan = ctx.plan
    reason = plan.provider_reason if plan is not None else None
    figures = figures_from_usage(usage, call_id=ctx.call_id, tenant=ctx.tenant, provider_miss_reason=reason)
    recorder_for(ctx.cache).record(ctx.tenant, usage, figures=figures)
    return figures


def _emit_provider_call(ctx: CallContext) -> None:
    # Called only when something listens (hooks.enabled()).
    fmt = ctx.format_used or ctx.format
    u = ctx.usage
    provider = fmt.provider if fmt is not None else "unknown"
    model = ctx.model or (u.model if u is not None and u.model else "unknown")
    now = time.perf_counter()
    # The provider request as a client span: its end is only known now (a stream may
    # just have finished), so it is recorded with its real start and end times.
    end_ns = time.time_ns()
    start_ns = end_ns - int((now - ctx.started) * 1e9)
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "promptcache.tenant": ctx.tenant,
        "promptcache.streaming": ctx.first_chunk_at is not None,
    }
    if u is not None:
        attrs.update(
            {
                "gen_ai.usage.input_tokens": u.input_tokens,
                "gen_ai.usage.output_tokens": u.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": u.cache_read_tokens,
                "gen_ai.usage.cache_creation.input_tokens": u.cache_write_tokens,
            }
        )
    if ctx.first_chunk_at is not None:
        attrs["promptcache.ttft_s"] = ctx.first_chunk_at - ctx.started
    hooks.record_span(f"chat {model}", start_ns, end_ns, attrs, kind="client")
    hooks.emit(
        ProviderCallEvent(
            tenant=ctx.tenant,
            provider=provider,
            model=model,
            streaming=ctx.first_chunk_at is not None,
            duration_s=now - ctx.started,
            ttft_s=None if ctx.first_chunk_at is None else ctx.first_chunk_at - ctx.started,
            provider_cache_hit=bool(u is not None and u.cache_read_tokens > 0),
            agent=hooks.current_agent(),
            provider_miss_reason=ctx.plan.provider_reason if ctx.plan is not None else None,
        )
    )
