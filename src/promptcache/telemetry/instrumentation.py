"""``instrument(cache)``: telemetry for a ``PromptCache`` without touching the core.

The cache's class is swapped for a subclass (identity, state and recorder unchanged) whose
``prepare_request``, ``record_usage`` and artifact caches emit events and spans; its store's
``lookup`` and write-back are wrapped on the instance. ``uninstrument(cache)`` restores it.
While nothing listens (:func:`hooks.enabled` false) every wrapper calls straight through.

:func:`provider_call` is for integrations: it wraps the request to the provider in a GenAI
``chat {model}`` client span and measures duration and time to first chunk.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from promptcache.figures import LookupReason, PrefixMissReason
from promptcache.pseudonym import tenant_label
from promptcache.telemetry import hooks
from promptcache.telemetry.events import (
    LookupEvent,
    PrepareEvent,
    ProviderCallEvent,
    UsageEvent,
    WriteEvent,
    reason_label,
)
from promptcache.telemetry.otel import (
    GEN_AI,
    SPAN_NAMES,
    lookup_attributes,
    prepare_attributes,
    provider_name,
)

__all__ = ["ProviderCall", "instrument", "is_instrumented", "provider_call", "uninstrument"]

_ENTRY_TYPES = {"tools": "tool_output", "retrieval": "retrieval", "responses": "response"}
_METHODS = {
    "tools": ("call", "acall"),
    "retrieval": ("retrieve", "aretrieve"),
    "responses": ("call", "acall"),
}
# Which artifact call is running, so the store-level lookup/write spans know their entry type.
_entry_type: contextvars.ContextVar[str] = contextvars.ContextVar("promptcache_entry_type", default="")


def _miss_reasons(plan: Any) -> tuple[bool, tuple[str, ...], tuple[PrefixMissReason, ...]]:
    ex = plan.explain()
    if ex.first_in_family:
        return True, (PrefixMissReason.FIRST_REQUEST,), (PrefixMissReason.FIRST_REQUEST,)
    if ex.prefix_unchanged:
        return False, (), ()
    changes = [c for c in ex.changes if not c.neutralized]
    # Block label and cause only: the detail and line text could quote the prompt.
    reasons = sorted({f"{c.block.split('[')[0]} {c.cause}" for c in changes})
    causes = tuple(sorted({PrefixMissReason(c.cause) for c in changes}))
    return True, tuple(reasons) or ("content",), causes or (PrefixMissReason.CONTENT,)


def prepare_event(prepared: Any, duration_s: float) -> PrepareEvent:
    """The event of one ``prepare_request`` result (hashes, counts and reasons only)."""
    plan = prepared.plan
    changed, reasons, causes = _miss_reasons(plan)
    fmt = plan.format
    return PrepareEvent(
        tenant=tenant_label(plan.tenant),
        model=plan.model,
        format=fmt.value if fmt is not None else "",
        mode=plan.mode,
        prefix_key=plan.prefix_key,
        family=plan.family,
        blocks=len(plan.blocks),
        prefix_blocks=plan.prefix_end,
        relocated=len(plan.fragments),
        hints=tuple(h.kind for h in plan.hints),
        prefix_changed=changed,
        miss_reasons=reasons,
        miss_causes=causes,
        decisions=tuple(reason_label(d) for d in plan.decisions),
        duration_s=duration_s,
        agent=hooks.current_agent(),
    )


def _lookup_event(entry_type: str, tenant: str, lookup: Any, duration_s: float) -> LookupEvent:
    reason: LookupReason = lookup.reason
    return LookupEvent(
        entry_type=entry_type,
        tenant=tenant_label(tenant),
        hit=bool(lookup.hit),
        tier=lookup.tier,
        stale=bool(lookup.stale),
        stored=bool(lookup.stored),
        denied=reason.denied,
        reason=reason,
        key_digest=lookup.key_digest,
        duration_s=duration_s,
        agent=hooks.current_agent(),
        detail=reason_label(str(lookup.why)),
    )


def _wrap_artifact(obj: Any, attr: str) -> Any:
    if getattr(obj, "_pc_instrumented", False):
        return obj
    entry_type = _ENTRY_TYPES[attr]
    sync_name, async_name = _METHODS[attr]
    orig_sync: Callable[..., Any] = getattr(obj, sync_name)
    orig_async: Callable[..., Any] = getattr(obj, async_name)

    def sync(*args: Any, **kwargs: Any) -> Any:
        if not hooks.enabled():
            return orig_sync(*args, **kwargs)
        token = _entry_type.set(entry_type)
        t0 = time.perf_counter()
        try:
            with hooks.span(f"{SPAN_NAMES['artifact']} {entry_type}") as sp:
                served = orig_sync(*args, **kwargs)
                ev = _lookup_event(
                    entry_type, str(kwargs.get("tenant", "")), served.lookup, time.perf_counter() - t0
                )
                if sp.is_recording():
                    sp.set_attributes(lookup_attributes(ev))
        finally:
            _entry_type.reset(token)
        hooks.emit(ev)
        return served

    async def asynchronous(*args: Any, **kwargs: Any) -> Any:
        if not hooks.enabled():
            return await orig_async(*args, **kwargs)
        token = _entry_type.set(entry_type)
        t0 = time.perf_counter()
        try:
            with hooks.span(f"{SPAN_NAMES['artifact']} {entry_type}") as sp:
                served = await orig_async(*args, **kwargs)
                ev = _lookup_event(
                    entry_type, str(kwargs.get("tenant", "")), served.lookup, time.perf_counter() - t0
                )
                if sp.is_recording():
                    sp.set_attributes(lookup_attributes(ev))
        finally:
            _entry_type.reset(token)
        hooks.emit(ev)
        return served

    setattr(obj, sync_name, sync)
    setattr(obj, async_name, asynchronous)
    obj._pc_instrumented = True
    return obj


def _wrap_store(store: Any) -> None:
    """Spans for the tier lookup and the write-back (L1 now, L2/L3 queued) of ``store``."""
    if getattr(store, "_pc_instrumented", False):
        return
    orig_lookup = store.lookup
    orig_store = store._store  # the one write-back point of put/aput/get_or_compute

    def lookup(key: str, *, tenant: str, allow_stale: bool = False) -> Any:
        if not hooks.enabled():
            return orig_lookup(key, tenant=tenant, allow_stale=allow_stale)
        with hooks.span(SPAN_NAMES["lookup"]) as sp:
            found = orig_lookup(key, tenant=tenant, allow_stale=allow_stale)
            if sp.is_recording():
                sp.set_attributes(
                    {
                        "promptcache.entry_type": _entry_type.get(),
                        "promptcache.hit": found is not None,
                        "promptcache.tier": found.tier if found is not None else "",
                        "promptcache.stale": bool(found is not None and found.stale),
                    }
                )
        return found

    def write(entry: Any, *args: Any, **kwargs: Any) -> None:
        if not hooks.enabled():
            return orig_store(entry, *args, **kwargs)  # type: ignore[no-any-return]
        size = len(entry.payload or b"")
        t0 = time.perf_counter()
        ok = False
        try:
            with hooks.span(SPAN_NAMES["write"], {"promptcache.entry_type": str(entry.entry_type)}) as sp:
                orig_store(entry, *args, **kwargs)
                ok = True
                sp.set_attribute("promptcache.bytes", size)
        finally:
            hooks.emit(
                WriteEvent(
                    entry_type=str(entry.entry_type),
                    tenant=str(entry.tenant),
                    bytes=size,
                    duration_s=time.perf_counter() - t0,
                    ok=ok,
                    agent=hooks.current_agent(),
                )
            )

    store.lookup = lookup
    store._store = write
    store._pc_instrumented = True


def observe_prepare(run: Callable[[], Any]) -> Any:
    """Run ``run`` (a cache's ``prepare_request``) inside its span, and emit its event.

    ``PromptCache.prepare_request`` calls this when the cache is instrumented.
    """
    if not hooks.enabled():
        return run()
    t0 = time.perf_counter()
    with hooks.span(SPAN_NAMES["prepare"]) as sp:
        prepared = run()
        ev = prepare_event(prepared, time.perf_counter() - t0)
        if sp.is_recording():
            sp.set_attributes(prepare_attributes(ev))
            if hooks.capture_content():
                import hashlib

                import orjson

                sp.set_attribute(
                    "promptcache.content.body_sha256",
                    hashlib.sha256(orjson.dumps(prepared.body)).hexdigest(),
                )
    hooks.emit(ev)
    return prepared


def observe_usage(usage: Any, tenant: str) -> None:
    """Emit the event of one recorded provider usage (``PromptCache.record_usage``)."""
    if not hooks.enabled():
        return
    from promptcache.figures import figures_from_usage

    f = figures_from_usage(usage, call_id="", tenant=tenant)
    hooks.emit(
        UsageEvent(
            tenant=tenant_label(tenant),
            provider=usage.provider,
            model=usage.model or "",
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=f.cost_nusd / 1e9,
            cost_avoided_usd=f.cost_avoided_nusd / 1e9,
            priced=f.priced,
            agent=hooks.current_agent(),
        )
    )


def observe_store(store: Any) -> Any:
    """``store`` with its lookups and writes reported (idempotent); returns it."""
    _wrap_store(store)
    return store


def observe_artifact(cache: Any, kind: str) -> Any:
    """The artifact cache ``cache`` (``tools``, ``retrieval`` or ``responses``) with its calls reported."""
    return _wrap_artifact(cache, kind)


def instrument(cache: Any) -> Any:
    """Make ``cache`` (a ``PromptCache``) report telemetry; returns it. Idempotent.

    The cache's own methods consult its ``telemetry`` flag; its class is never changed.
    Nothing is exported until something listens: ``telemetry.enable_otel()``, a
    :class:`~promptcache.telemetry.prometheus.PrometheusExporter`, a
    :class:`~promptcache.telemetry.aggregate.StatsAggregator` or any ``add_observer``.
    """
    cache.telemetry = True
    return cache


def uninstrument(cache: Any) -> Any:
    """Undo :func:`instrument` (artifact caches and stores already handed out stay wrapped)."""
    cache.telemetry = False
    return cache


def is_instrumented(cache: Any) -> bool:
    """Whether :func:`instrument` was applied to ``cache``."""
    return bool(getattr(cache, "telemetry", False))


@dataclass(slots=True)
class ProviderCall:
    """Handle yielded by :func:`provider_call`: mark the first chunk, attach the usage."""

    t0: float
    span: Any
    ttft_s: float | None = None
    usage: Any = None
    extra: dict[str, str] = field(default_factory=dict)

    def first_chunk(self) -> None:
        """Call on the first streamed chunk (later calls are ignored)."""
        if self.ttft_s is None:
            self.ttft_s = time.perf_counter() - self.t0

    def set_usage(self, usage: Any) -> None:
        """Attach the call's ``CacheUsage`` (sets the GenAI usage attributes on the span)."""
        self.usage = usage


@contextlib.contextmanager
def provider_call(
    *, provider: str, model: str, tenant: str = "", streaming: bool = False
) -> Iterator[ProviderCall]:
    """A ``chat {model}`` client span around one provider request, with duration and TTFT.

    >>> with provider_call(provider="openai", model="gpt-4o") as call:
    ...     call.first_chunk()
    """
    t0 = time.perf_counter()
    attrs = {
        GEN_AI["operation"]: "chat",
        GEN_AI["provider"]: provider_name(provider),
        GEN_AI["request_model"]: model,
        "promptcache.tenant": tenant_label(tenant),
        "promptcache.streaming": streaming,
    }
    error: str | None = None
    with hooks.span(SPAN_NAMES["provider"].format(model=model), attrs, kind="client") as sp:
        call = ProviderCall(t0=t0, span=sp)
        try:
            yield call
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            u = call.usage
            hit = bool(u is not None and u.cache_read_tokens > 0)
            if sp.is_recording():
                if u is not None:
                    sp.set_attributes(
                        {
                            GEN_AI["input_tokens"]: u.input_tokens,
                            GEN_AI["output_tokens"]: u.output_tokens,
                            GEN_AI["cache_read"]: u.cache_read_tokens,
                            GEN_AI["cache_creation"]: u.cache_write_tokens,
                            "promptcache.provider_cache_hit": hit,
                        }
                    )
                if call.ttft_s is not None:
                    sp.set_attribute("promptcache.ttft_s", call.ttft_s)
            if hooks.enabled():
                hooks.emit(
                    ProviderCallEvent(
                        tenant=tenant_label(tenant),
                        provider=provider,
                        model=model,
                        streaming=streaming,
                        duration_s=time.perf_counter() - t0,
                        ttft_s=call.ttft_s,
                        provider_cache_hit=hit,
                        error=error,
                        agent=hooks.current_agent(),
                    )
                )
