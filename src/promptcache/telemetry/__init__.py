"""Telemetry: events, OpenTelemetry spans and metrics, Prometheus, persisted stats.

The hook point is :func:`emit` / :func:`span` (zero cost while nothing listens). The quickest
way in is :func:`instrument`, which wraps a ``PromptCache`` without touching the core:

>>> from promptcache import PromptCache
>>> from promptcache import telemetry
>>> cache = telemetry.instrument(PromptCache())
>>> agg = telemetry.add_observer(telemetry.StatsAggregator())
>>> body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
>>> _ = cache.prepare_request(body, format="openai-chat", tenant="acme")
>>> from promptcache.pseudonym import tenant_label  # events name tenants by keyed hash
>>> [(r.tenant == tenant_label("acme"), r.entry_type, r.calls) for r in agg.snapshot().rows]
[(True, 'prompt_prefix', 1)]
>>> telemetry.remove_observer(agg)

Exporters: :func:`enable_otel` (extra ``otel``), :class:`PrometheusExporter` /
:func:`start_http_server` (extra ``prometheus``), :func:`publish` into the store for
``promptcache stats``. Nothing exported carries prompt text unless
``configure(capture_content=True)``.
"""

from __future__ import annotations

from typing import Any

from promptcache.telemetry.aggregate import PersistedStats, StatsAggregator, StatsRecord, publish, read_stats
from promptcache.telemetry.events import (
    Event,
    LookupEvent,
    PrepareEvent,
    ProviderCallEvent,
    UsageEvent,
    WriteEvent,
)
from promptcache.telemetry.hooks import (
    Observer,
    add_observer,
    capture_content,
    configure,
    current_agent,
    emit,
    enabled,
    labels,
    remove_observer,
    span,
)
from promptcache.telemetry.instrumentation import (
    ProviderCall,
    instrument,
    is_instrumented,
    provider_call,
    uninstrument,
)

__all__ = [
    "Event",
    "LookupEvent",
    "Observer",
    "PersistedStats",
    "PrepareEvent",
    "ProviderCall",
    "ProviderCallEvent",
    "StatsAggregator",
    "StatsRecord",
    "UsageEvent",
    "WriteEvent",
    "add_observer",
    "capture_content",
    "configure",
    "current_agent",
    "disable_otel",
    "emit",
    "enable_otel",
    "enabled",
    "instrument",
    "is_instrumented",
    "labels",
    "provider_call",
    "publish",
    "read_stats",
    "remove_observer",
    "span",
    "uninstrument",
]


def enable_otel(*, tracer_provider: Any = None, meter_provider: Any = None, metrics: bool = True) -> None:
    """Export spans and metrics through OpenTelemetry (see :func:`promptcache.telemetry.otel.enable`)."""
    from promptcache.telemetry.otel import enable

    enable(tracer_provider=tracer_provider, meter_provider=meter_provider, metrics=metrics)


def disable_otel() -> None:
    """Stop exporting through OpenTelemetry."""
    from promptcache.telemetry.otel import disable

    disable()
