"""Prometheus exporter (optional extra ``prometheus``): the OpenTelemetry metrics, scrape-ready.

Same figures as :class:`~promptcache.telemetry.otel.OTelMetrics`, Prometheus-named, labelled by
``tenant``, ``model``, ``agent`` and ``entry_type`` where they apply:

=====================================================  =========================================
``promptcache_prepare_requests_total``                 {tenant, model, agent, prefix_changed}
``promptcache_prefix_misses_total``                    {tenant, model, agent, reason}
``promptcache_relocated_total``                        {tenant, model, agent}
``promptcache_hints_total``                            {tenant, model, agent, kind}
``promptcache_tokens_total``                           {tenant, model, agent, kind=input|cache_read|
                                                       cache_write|output}
``promptcache_cost_usd_total``                         {tenant, model, agent, kind=spent|avoided}
``promptcache_lookups_total``                          {tenant, entry_type, agent, result, tier}
``promptcache_policy_denials_total``                   {tenant, entry_type, agent, reason}
``promptcache_stale_served_total``                     {tenant, entry_type, agent}
``promptcache_lookup_seconds``                         {entry_type, tier} (answered from cache)
``promptcache_write_seconds``                          {entry_type}
``promptcache_provider_request_seconds``               {provider, model, provider_cache_hit}
``promptcache_time_to_first_token_seconds``            {provider, model, provider_cache_hit}
=====================================================  =========================================

Tenant ids are labels: with very many tenants, pass ``tenant_label=False`` to aggregate them.
"""

from __future__ import annotations

from typing import Any

from promptcache.pseudonym import tenant_label as _label
from promptcache.telemetry import hooks
from promptcache.telemetry.events import (
    Event,
    LookupEvent,
    PrepareEvent,
    ProviderCallEvent,
    UsageEvent,
    WriteEvent,
)

__all__ = ["PrometheusExporter", "start_http_server"]

_FAST = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


class PrometheusExporter:
    """An observer keeping Prometheus metrics in its own registry (``self.registry``)."""

    def __init__(self, registry: Any = None, *, tenant_label: bool = True) -> None:
        """Create the metrics in ``registry`` (a fresh ``CollectorRegistry`` when omitted)."""
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        self._tenants = tenant_label
        r = self.registry
        m = ("tenant", "model", "agent")
        a = ("tenant", "entry_type", "agent")
        self.prepared = Counter(
            "promptcache_prepare_requests", "Prepared requests", [*m, "prefix_changed"], registry=r
        )
        self.prefix_misses = Counter(
            "promptcache_prefix_misses", "Prefix changes by reason", [*m, "reason"], registry=r
        )
        self.relocated = Counter("promptcache_relocated", "Volatile values relocated", m, registry=r)
        self.hints = Counter("promptcache_hints", "Provider hints placed", [*m, "kind"], registry=r)
        self.tokens = Counter("promptcache_tokens", "Provider tokens", [*m, "kind"], registry=r)
        self.cost = Counter("promptcache_cost_usd", "USD spent and avoided", [*m, "kind"], registry=r)
        self.lookups = Counter(
            "promptcache_lookups", "Artifact cache calls", [*a, "result", "tier"], registry=r
        )
        self.denials = Counter(
            "promptcache_policy_denials", "Calls kept out of the cache", [*a, "reason"], registry=r
        )
        self.stale = Counter("promptcache_stale_served", "Stale entries served", a, registry=r)
        self.lookup_s = Histogram(
            "promptcache_lookup_seconds", "Artifact calls answered from cache", ["entry_type", "tier"],
            buckets=_FAST, registry=r,
        )  # fmt: skip
        self.write_s = Histogram(
            "promptcache_write_seconds",
            "Write-back as the caller saw it",
            ["entry_type"],
            buckets=_FAST,
            registry=r,
        )
        p = ("provider", "model", "provider_cache_hit")
        self.request_s = Histogram(
            "promptcache_provider_request_seconds", "Provider request duration", p, buckets=_SLOW, registry=r
        )
        self.ttft_s = Histogram(
            "promptcache_time_to_first_token_seconds",
            "Streaming time to first token",
            p,
            buckets=_SLOW,
            registry=r,
        )

    def _t(self, tenant: str) -> str:
        return tenant if self._tenants else "*"

    def on_event(self, event: Event) -> None:
        """Update the metrics from ``event``."""
        if isinstance(event, PrepareEvent):
            m = (self._t(event.tenant), event.model, event.agent)
            self.prepared.labels(*m, str(event.prefix_changed).lower()).inc()
            for cause in event.miss_causes:
                self.prefix_misses.labels(*m, cause.value).inc()
            if event.relocated:
                self.relocated.labels(*m).inc(event.relocated)
            for h in event.hints:
                self.hints.labels(*m, h).inc()
        elif isinstance(event, UsageEvent):
            m = (self._t(event.tenant), event.model, event.agent)
            self.tokens.labels(*m, "input").inc(event.input_tokens)
            self.tokens.labels(*m, "cache_read").inc(event.cache_read_tokens)
            self.tokens.labels(*m, "cache_write").inc(event.cache_write_tokens)
            self.tokens.labels(*m, "output").inc(event.output_tokens)
            if event.priced:
                self.cost.labels(*m, "spent").inc(max(event.cost_usd, 0.0))
                # A Prometheus counter cannot go down; a write premium not yet paid back is 0 here.
                self.cost.labels(*m, "avoided").inc(max(event.cost_avoided_usd, 0.0))
        elif isinstance(event, LookupEvent):
            a = (self._t(event.tenant), event.entry_type, event.agent)
            result = "hit" if event.hit else ("denied" if event.denied else "miss")
            self.lookups.labels(*a, result, event.tier or "").inc()
            if event.denied:
                self.denials.labels(*a, event.reason.value).inc()
            if event.stale:
                self.stale.labels(*a).inc()
            if event.hit:
                self.lookup_s.labels(event.entry_type, event.tier or "").observe(event.duration_s)
        elif isinstance(event, WriteEvent):
            self.write_s.labels(event.entry_type).observe(event.duration_s)
        elif isinstance(event, ProviderCallEvent):
            if event.provider_miss_reason is not None:
                # Beside promptcache's own causes, under the tenant's label as prepare events carry it.
                m = (self._t(_label(event.tenant)), event.model, event.agent)
                self.prefix_misses.labels(*m, event.provider_miss_reason.value).inc()
            p = (event.provider, event.model, str(event.provider_cache_hit).lower())
            self.request_s.labels(*p).observe(event.duration_s)
            if event.ttft_s is not None:
                self.ttft_s.labels(*p).observe(event.ttft_s)

    def install(self) -> PrometheusExporter:
        """Register as a telemetry observer; returns self."""
        hooks.add_observer(self)
        return self

    def uninstall(self) -> None:
        """Stop receiving events."""
        hooks.remove_observer(self)


def start_http_server(
    port: int = 9464, addr: str = "127.0.0.1", *, registry: Any = None
) -> tuple[PrometheusExporter, Any]:
    """Install an exporter and serve ``/metrics`` on ``addr:port`` (loopback by default).

    Returns the exporter and the server (``server.shutdown()`` stops it). ``port=0`` picks a
    free port: read it from ``server.server_port``.
    """
    from prometheus_client import start_http_server as _serve

    exporter = PrometheusExporter(registry).install()
    server, _thread = _serve(port, addr=addr, registry=exporter.registry)
    return exporter, server
