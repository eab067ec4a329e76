"""OpenTelemetry export: span attributes and metric instruments (optional extra ``otel``).

Names follow the OpenTelemetry GenAI semantic conventions where they define one
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans and
https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics; the same names ship as
constants in ``opentelemetry-semantic-conventions`` 0.66b2,
``opentelemetry.semconv._incubating.attributes.gen_ai_attributes``). All GenAI names are at
*Development* stability there, so they are spelled out here rather than imported:

================================================  =================================================
``gen_ai.operation.name``                         ``chat`` on provider-call spans
``gen_ai.provider.name``                          ``openai``, ``anthropic``, ``aws.bedrock``, ...
``gen_ai.request.model``                          the model requested
``gen_ai.usage.input_tokens``                     every prompt token (cached ones included, as
                                                  the spec says they SHOULD be)
``gen_ai.usage.output_tokens``                    billed output tokens
``gen_ai.usage.cache_read.input_tokens``          prompt tokens served from the provider cache
``gen_ai.usage.cache_creation.input_tokens``      prompt tokens written to the provider cache
``gen_ai.client.token.usage`` (histogram)         tokens per call, ``gen_ai.token.type`` =
                                                  ``input`` / ``output``
``gen_ai.client.operation.duration`` (histogram)  provider-call duration, seconds
``gen_ai.client.operation.time_to_first_chunk``   streaming time to first chunk, seconds
================================================  =================================================

Everything else is in the ``promptcache.*`` namespace (see :data:`PROMPTCACHE_ATTRIBUTES` and
:data:`PROMPTCACHE_METRICS`). No attribute carries prompt text unless
``configure(capture_content=True)``; then only ``promptcache.content.*`` attributes do.
"""

from __future__ import annotations

from typing import Any

from promptcache.telemetry import hooks
from promptcache.telemetry.events import (
    Event,
    LookupEvent,
    PrepareEvent,
    ProviderCallEvent,
    UsageEvent,
    WriteEvent,
)

__all__ = [
    "GEN_AI",
    "PROMPTCACHE_ATTRIBUTES",
    "PROMPTCACHE_METRICS",
    "SPAN_NAMES",
    "OTelMetrics",
    "disable",
    "enable",
    "lookup_attributes",
    "prepare_attributes",
    "provider_name",
    "usage_attributes",
]

#: The GenAI semantic-convention names used (see the module docstring for the source).
GEN_AI = {
    "operation": "gen_ai.operation.name",
    "provider": "gen_ai.provider.name",
    "request_model": "gen_ai.request.model",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "cache_read": "gen_ai.usage.cache_read.input_tokens",
    "cache_creation": "gen_ai.usage.cache_creation.input_tokens",
    "token_type": "gen_ai.token.type",
    "token_usage_metric": "gen_ai.client.token.usage",
    "duration_metric": "gen_ai.client.operation.duration",
    "ttfc_metric": "gen_ai.client.operation.time_to_first_chunk",
}

#: Span names: assembly + canonicalization, artifact calls, tier lookup, write-back, provider call.
SPAN_NAMES = {
    "prepare": "promptcache.prepare_request",
    "artifact": "promptcache.artifact",
    "lookup": "promptcache.lookup",
    "write": "promptcache.write",
    "provider": "chat {model}",  # the GenAI spec's "{gen_ai.operation.name} {gen_ai.request.model}"
}

#: The ``promptcache.*`` attributes, with what they hold.
PROMPTCACHE_ATTRIBUTES = {
    "promptcache.tenant": "keyed hash of the tenant the call ran under (promptcache.pseudonym.tenant_label)",
    "promptcache.agent": "agent label (telemetry.labels(agent=...)), '' when unset",
    "promptcache.format": "wire format of the request body",
    "promptcache.mode": "active or shadow",
    "promptcache.prefix_key": "SHA-256 key of the stable prefix (tenant-scoped; a hash, not text)",
    "promptcache.family": "prefix-family id (hash of the tenant label, model, tool names)",
    "promptcache.blocks": "blocks in the request",
    "promptcache.prefix_blocks": "blocks in the cacheable prefix",
    "promptcache.relocated": "volatile values moved after the prefix",
    "promptcache.hints": "provider hint kinds placed (cache_control, prompt_cache_key, ...)",
    "promptcache.prefix_changed": "the prefix differs from the family's previous request",
    "promptcache.miss_reasons": "why it differs: '<block> <cause>' (no text, no line content)",
    "promptcache.entry_type": "tool_output, retrieval, response (artifact caches)",
    "promptcache.hit": "served from promptcache's cache",
    "promptcache.tier": "l1, l2, l3 or flight (a concurrent identical call)",
    "promptcache.stale": "served stale (stale-while-revalidate)",
    "promptcache.stored": "the computed value was written back",
    "promptcache.denied": "the policy kept the call out of the cache",
    "promptcache.reason": "how a lookup was answered, or why a prefix changed (an enum value)",
    "promptcache.reason.detail": "the lookup's own reason, values blanked (span only)",
    "promptcache.key_digest": "short digest of the entry key",
    "promptcache.bytes": "payload size written",
    "promptcache.provider_cache_hit": "the provider reported cache-read tokens",
    "promptcache.streaming": "streaming provider call",
    "promptcache.ttft_s": "time to first chunk, seconds (streaming)",
    "promptcache.cost_usd": "priced cost of the call",
    "promptcache.cost_avoided_usd": "cost avoided by caching (negative: write premium)",
    "promptcache.content.body_sha256": "opt-in only: hash of the body (never the body)",
}

#: The ``promptcache.*`` metric instruments (OpenTelemetry names; Prometheus uses ``_`` forms).
PROMPTCACHE_METRICS = {
    "promptcache.prepare.requests": "counter: prepared requests {tenant, model, agent, prefix_changed}",
    "promptcache.prefix.misses": "counter: prefix changes by reason {tenant, model, agent, reason}",
    "promptcache.relocated": "counter: volatile values relocated {tenant, model, agent}",
    "promptcache.hints": "counter: provider hints placed {tenant, model, agent, kind}",
    "promptcache.tokens": "counter: input/cache_read/cache_write/output tokens {tenant, model, agent, kind}",
    "promptcache.cost": "counter: USD spent/avoided {tenant, model, agent, kind}",
    "promptcache.lookups": "counter: artifact calls {tenant, entry_type, agent, result, tier}",
    "promptcache.policy.denials": "counter: calls kept out of the cache {tenant, entry_type, agent, reason}",
    "promptcache.stale_served": "counter: stale entries served {tenant, entry_type, agent}",
    "promptcache.lookup.duration": "histogram, s: artifact call answered from cache {entry_type, tier}",
    "promptcache.write.duration": "histogram, s: write-back as the caller saw it {entry_type}",
}


def provider_name(provider: str) -> str:
    """The ``gen_ai.provider.name`` well-known value for a promptcache provider family."""
    return {"bedrock": "aws.bedrock", "gemini": "gcp.gemini"}.get(provider, provider)


def prepare_attributes(ev: PrepareEvent) -> dict[str, Any]:
    """Span attributes of a ``prepare_request``."""
    return {
        GEN_AI["request_model"]: ev.model,
        "promptcache.tenant": ev.tenant,
        "promptcache.agent": ev.agent,
        "promptcache.format": ev.format,
        "promptcache.mode": ev.mode,
        "promptcache.prefix_key": ev.prefix_key,
        "promptcache.family": ev.family,
        "promptcache.blocks": ev.blocks,
        "promptcache.prefix_blocks": ev.prefix_blocks,
        "promptcache.relocated": ev.relocated,
        "promptcache.hints": list(ev.hints),
        "promptcache.prefix_changed": ev.prefix_changed,
        "promptcache.miss_reasons": list(ev.miss_reasons),
    }


def lookup_attributes(ev: LookupEvent) -> dict[str, Any]:
    """Span attributes of an artifact call."""
    attrs: dict[str, Any] = {
        "promptcache.entry_type": ev.entry_type,
        "promptcache.tenant": ev.tenant,
        "promptcache.agent": ev.agent,
        "promptcache.hit": ev.hit,
        "promptcache.stale": ev.stale,
        "promptcache.stored": ev.stored,
        "promptcache.denied": ev.denied,
        "promptcache.reason": ev.reason.value,
        "promptcache.reason.detail": ev.detail,
    }
    if ev.tier is not None:
        attrs["promptcache.tier"] = ev.tier
    if ev.key_digest is not None:
        attrs["promptcache.key_digest"] = ev.key_digest
    return attrs


def usage_attributes(ev: UsageEvent) -> dict[str, Any]:
    """GenAI usage attributes (and cost) of a provider call."""
    return {
        GEN_AI["provider"]: provider_name(ev.provider),
        GEN_AI["request_model"]: ev.model,
        GEN_AI["input_tokens"]: ev.input_tokens,
        GEN_AI["output_tokens"]: ev.output_tokens,
        GEN_AI["cache_read"]: ev.cache_read_tokens,
        GEN_AI["cache_creation"]: ev.cache_write_tokens,
        "promptcache.provider_cache_hit": ev.cache_read_tokens > 0,
        "promptcache.cost_usd": ev.cost_usd,
        "promptcache.cost_avoided_usd": ev.cost_avoided_usd,
    }


class OTelMetrics:
    """An observer recording every event on OpenTelemetry instruments from ``meter_provider``."""

    def __init__(self, meter_provider: Any = None) -> None:
        """Create the instruments (on the global meter provider when none is given)."""
        from opentelemetry import metrics

        meter = (meter_provider or metrics.get_meter_provider()).get_meter("promptcache")
        self._prepared = meter.create_counter("promptcache.prepare.requests", unit="{request}")
        self._prefix_misses = meter.create_counter("promptcache.prefix.misses", unit="{request}")
        self._relocated = meter.create_counter("promptcache.relocated", unit="{value}")
        self._hints = meter.create_counter("promptcache.hints", unit="{hint}")
        self._tokens = meter.create_counter("promptcache.tokens", unit="{token}")
        self._cost = meter.create_counter("promptcache.cost", unit="USD")
        self._lookups = meter.create_counter("promptcache.lookups", unit="{call}")
        self._denials = meter.create_counter("promptcache.policy.denials", unit="{call}")
        self._stale = meter.create_counter("promptcache.stale_served", unit="{call}")
        self._lookup_s = meter.create_histogram("promptcache.lookup.duration", unit="s")
        self._write_s = meter.create_histogram("promptcache.write.duration", unit="s")
        self._token_usage = meter.create_histogram(GEN_AI["token_usage_metric"], unit="{token}")
        self._duration = meter.create_histogram(GEN_AI["duration_metric"], unit="s")
        self._ttfc = meter.create_histogram(GEN_AI["ttfc_metric"], unit="s")

    def on_event(self, event: Event) -> None:
        """Record ``event`` on the instruments."""
        if isinstance(event, PrepareEvent):
            base = {"promptcache.tenant": event.tenant, GEN_AI["request_model"]: event.model}
            base["promptcache.agent"] = event.agent
            self._prepared.add(1, {**base, "promptcache.prefix_changed": event.prefix_changed})
            for r in event.miss_causes:
                self._prefix_misses.add(1, {**base, "promptcache.reason": r.value})
            if event.relocated:
                self._relocated.add(event.relocated, base)
            for h in event.hints:
                self._hints.add(1, {**base, "promptcache.hint": h})
        elif isinstance(event, UsageEvent):
            base = {
                "promptcache.tenant": event.tenant,
                GEN_AI["request_model"]: event.model,
                GEN_AI["provider"]: provider_name(event.provider),
                "promptcache.agent": event.agent,
            }
            for kind, n in (
                ("input", event.input_tokens),
                ("cache_read", event.cache_read_tokens),
                ("cache_write", event.cache_write_tokens),
                ("output", event.output_tokens),
            ):
                self._tokens.add(n, {**base, "promptcache.token.kind": kind})
            spec = {**base, GEN_AI["operation"]: "chat"}
            self._token_usage.record(event.input_tokens, {**spec, GEN_AI["token_type"]: "input"})
            self._token_usage.record(event.output_tokens, {**spec, GEN_AI["token_type"]: "output"})
            if event.priced:
                self._cost.add(event.cost_usd, {**base, "promptcache.cost.kind": "spent"})
                self._cost.add(event.cost_avoided_usd, {**base, "promptcache.cost.kind": "avoided"})
        elif isinstance(event, LookupEvent):
            base = {
                "promptcache.tenant": event.tenant,
                "promptcache.entry_type": event.entry_type,
                "promptcache.agent": event.agent,
            }
            result = "hit" if event.hit else ("denied" if event.denied else "miss")
            self._lookups.add(1, {**base, "promptcache.result": result, "promptcache.tier": event.tier or ""})
            if event.denied:
                self._denials.add(1, {**base, "promptcache.reason": event.reason.value})
            if event.stale:
                self._stale.add(1, base)
            if event.hit:
                self._lookup_s.record(event.duration_s, {**base, "promptcache.tier": event.tier or ""})
        elif isinstance(event, WriteEvent):
            self._write_s.record(
                event.duration_s, {"promptcache.entry_type": event.entry_type, "promptcache.ok": event.ok}
            )
        elif isinstance(event, ProviderCallEvent):
            attrs: dict[str, Any] = {
                GEN_AI["operation"]: "chat",
                GEN_AI["provider"]: provider_name(event.provider),
                GEN_AI["request_model"]: event.model,
                "promptcache.tenant": event.tenant,
                "promptcache.agent": event.agent,
                "promptcache.provider_cache_hit": event.provider_cache_hit,
            }
            if event.error:
                attrs["error.type"] = event.error
            self._duration.record(event.duration_s, attrs)
            if event.ttft_s is not None:
                self._ttfc.record(event.ttft_s, attrs)


_metrics_observer: OTelMetrics | None = None


def enable(*, tracer_provider: Any = None, meter_provider: Any = None, metrics: bool = True) -> None:
    """Export promptcache spans (and metrics) through OpenTelemetry.

    Uses the given providers, else the global ones (``opentelemetry.trace`` / ``metrics``).
    Idempotent: a second call replaces the first configuration.
    """
    global _metrics_observer
    from opentelemetry import trace

    provider = tracer_provider or trace.get_tracer_provider()
    hooks.set_tracer(provider.get_tracer("promptcache"))
    if _metrics_observer is not None:
        hooks.remove_observer(_metrics_observer)
        _metrics_observer = None
    if metrics:
        _metrics_observer = OTelMetrics(meter_provider)
        hooks.add_observer(_metrics_observer)


def disable() -> None:
    """Stop exporting through OpenTelemetry (spans become no-ops again)."""
    global _metrics_observer
    hooks.set_tracer(None)
    if _metrics_observer is not None:
        hooks.remove_observer(_metrics_observer)
        _metrics_observer = None
