"""The gateway's Prometheus figures (``GET /metrics``), in a registry of its own.

=================================================  ==============================================
``promptcache_gateway_requests_total``             {route, status}: answers sent, by HTTP status
``promptcache_gateway_tokens_total``               {kind=input|cache_read|cache_write|output}:
                                                   provider usage read from the answers
``promptcache_gateway_upstream_seconds``           {route}: until the upstream's status line
``promptcache_gateway_upstream_errors_total``      {kind=timeout|connect|protocol}: answered by
                                                   the gateway itself (504/502)
``promptcache_gateway_in_flight``                  requests not finished yet (streams included)
``promptcache_gateway_hint_rejections_total``      resends without caching hints
``promptcache_gateway_degradations_total``         {kind}: faults absorbed, the call still made
=================================================  ==============================================

Degradations are read when scraped from the counters the core keeps anyway: the seams'
(:data:`promptcache.llm_bridge.HINT_REJECTIONS`: ``hint_rejected``, ``request_unchanged``), the
fleet's (:data:`promptcache.pipeline.fleet.FLEET_FAULTS`, as ``fleet_read``/``fleet_write``: the
store could not share learned state), the engine's (``body_too_large``, ``too_many_volatile``) and the store's
(``tier_skipped``, ``writeback_failed``, ``writeback_dropped``): a store outage shows here while
every request still goes out. No label carries a tenant, a key or prompt text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from promptcache.engine import PromptCache
from promptcache.llm_bridge import HINT_REJECTIONS
from promptcache.pipeline.fleet import FLEET_FAULTS
from promptcache.usage import CacheUsage

__all__ = ["GatewayMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class _CoreCounters(Collector):
    """The core's fault counters, read at scrape time (see the module docstring)."""

    def __init__(self, cache: PromptCache) -> None:
        self._cache = cache

    def degradations(self) -> dict[str, int]:
        """Every absorbed fault so far, by kind."""
        out: dict[str, int] = {k: v for k, v in HINT_REJECTIONS.items() if v}
        for kind, n in FLEET_FAULTS.items():
            out[f"fleet_{kind}"] = n
        for kind, n in self._cache.degradations().items():
            out[kind] = out.get(kind, 0) + n
        store = self._cache._store  # only a store already open: a scrape never opens one
        if store is not None:
            stats = store.stats()
            skipped = sum(t.tier_skipped for t in stats.tiers.values())
            if skipped:
                out["tier_skipped"] = out.get("tier_skipped", 0) + skipped
            for name in ("writeback_failed", "writeback_dropped"):
                n = getattr(stats, name)
                if n:
                    out[name] = n
        return out

    def collect(self) -> Iterator[Any]:
        """The two metric families, read now."""
        rejected = CounterMetricFamily(
            "promptcache_gateway_hint_rejections", "Requests resent without caching hints"
        )
        rejected.add_metric([], HINT_REJECTIONS["hint_rejected"])
        yield rejected
        family = CounterMetricFamily(
            "promptcache_gateway_degradations",
            "Faults absorbed (the call still made), by kind",
            labels=["kind"],
        )
        for kind, n in sorted(self.degradations().items()):
            family.add_metric([kind], n)
        yield family


class GatewayMetrics:
    """The gateway's metrics in ``self.registry`` (see the module docstring)."""

    def __init__(self, cache: PromptCache) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "promptcache_gateway_requests",
            "Answers sent, by route and status",
            ["route", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "promptcache_gateway_tokens", "Provider tokens read from the answers", ["kind"], registry=r
        )
        self.upstream_seconds = Histogram(
            "promptcache_gateway_upstream_seconds",
            "Seconds until the upstream's status line",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "promptcache_gateway_upstream_errors", "Upstream failures answered by the gateway", ["kind"],
            registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("promptcache_gateway_in_flight", "Requests not finished yet", registry=r)
        self.core = _CoreCounters(cache)
        r.register(self.core)
        # Each label set's child, kept: ``.labels()`` takes a lock and builds a key per call.
        self._counted: dict[tuple[str, int], Any] = {}
        self._timed: dict[str, Any] = {}
        self._tokens = {k: self.tokens.labels(k) for k in ("input", "cache_read", "cache_write", "output")}

    def count(self, route: str, status: int) -> None:
        """One answer sent on ``route`` with HTTP ``status``."""
        child = self._counted.get((route, status))
        if child is None:
            child = self._counted[(route, status)] = self.requests.labels(route, str(status))
        child.inc()

    def upstream(self, route: str, seconds: float) -> None:
        """The upstream of ``route`` sent its status line after ``seconds``."""
        child = self._timed.get(route)
        if child is None:
            child = self._timed[route] = self.upstream_seconds.labels(route)
        child.observe(seconds)

    def usage(self, usage: CacheUsage) -> None:
        """Add one answer's provider usage."""
        for kind, n in (
            ("input", usage.input_tokens),
            ("cache_read", usage.cache_read_tokens),
            ("cache_write", usage.cache_write_tokens),
            ("output", usage.output_tokens),
        ):
            if n:
                self._tokens[kind].inc(n)
