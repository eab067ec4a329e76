"""Observation without changing anything: ``PromptCacheCallbackHandler`` (shadow mode).

Attach it to any chat model run (``config={"callbacks": [handler]}``). For every model call it
records the provider's cache usage (reads, writes, cost, cost avoided) with the run id, parent
run id, tags and metadata, and the plan promptcache *would* make of the request: its prefix key,
the hints it would place, the volatile values it would move out of the prefix and, above all,
``plan.explain()`` — why the cacheable prefix differs from the previous call of its family.

The request itself is never touched. When the call went through ``CachingChatModel`` (the
answer carries ``response_metadata["promptcache"]``) or ``PromptCacheMiddleware`` (its call
context is current while the callbacks fire), the plan that was really applied is recorded
instead (``applied=True``, the cache's own mode), its figures carry that call's own id (the one
in ``cache_metrics``), and the call is not fed to ``cache.stats()`` a second time.

A callback is handed the run's ``metadata`` but not its ``configurable``: the tenant is read, in
the core's one order (:mod:`promptcache.tenancy`), from the ``configurable`` and ``metadata`` of
the chain or graph node the call runs in, then the call's own ``metadata``, then the LangGraph
runtime context. A model invoked directly, outside any chain or graph, hands its callbacks
nothing but that metadata: name the tenant there (``config={"metadata": {"tenant_id": ...}}``).
A callback cannot refuse a call, so a call without a tenant under a policy that requires one is
recorded with ``error`` set and no plan, rather than failing the user's call.

:func:`get_cache_metrics_callback` is the ``with`` block of LangChain's idiom
(``get_usage_metadata_callback()``): the cache figures of every chat model call inside it.
Every handler here exposes its figures the same way, as the ``cache_metrics`` property (the
name they have in the LangGraph state too).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.context import register_configure_hook
from pydantic import BaseModel, ConfigDict, Field

from promptcache import CacheUsage, PromptCache, WireFormatError
from promptcache.metrics import CacheMetrics, CallFigures, figures_from_usage, merge_cache_metrics
from promptcache.stats import recorder_for
from promptcache.tenancy import DEFAULT_TENANT_KEY, tenant_from
from promptcache_langchain._observe import owned_call
from promptcache_langchain._usage import usage_from_message
from promptcache_langchain.tenant import ambient_config, runtime_context

__all__ = [
    "CacheMetricsCallbackHandler",
    "CallRecord",
    "PromptCacheCallbackHandler",
    "UsageCollector",
    "get_cache_metrics_callback",
]


class CallRecord(BaseModel):
    """One observed chat model call. Holds no prompt text."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    parent_run_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    tenant: str | None = None
    usage: CacheUsage | None = None
    figures: CallFigures | None = None
    applied: bool = Field(default=False, description="promptcache rewrote this request (not shadow)")
    plan: dict[str, Any] = Field(default_factory=dict, description="prefix key, hints, relocations")
    explain: str | None = None
    error: str | None = None


def _answer(response: LLMResult) -> BaseMessage | None:
    for gens in response.generations:
        for g in gens:
            if isinstance(g, ChatGeneration):
                msg = g.message
                if response.llm_output and not msg.response_metadata.get("model_name"):
                    # Same merge BaseChatModel makes; absent on some paths, so redo it for reading.
                    msg = msg.model_copy(
                        update={"response_metadata": {**response.llm_output, **msg.response_metadata}}
                    )
                return msg
    return None


class UsageCollector(BaseCallbackHandler):
    """Collect the priced figures of every chat model call of a run (for a metrics channel).

    Calls not made under promptcache are fed to ``cache.stats()`` under ``tenant`` and collected
    under their run id. Calls made under promptcache (``CachingChatModel``, whose answers carry
    ``response_metadata["promptcache"]``, or ``PromptCacheMiddleware``, whose call context is
    current while the callbacks fire) were recorded where they were made: they are collected
    under that call's own id and tenant, never fed to the stats a second time.
    """

    raise_error = False
    run_inline = True  # keeps figures in call order and avoids a thread hop per event

    def __init__(self, cache: PromptCache, tenant: str | None) -> None:
        self.cache = cache
        self.tenant = tenant
        self._lock = threading.Lock()
        self._figures: dict[str, CallFigures] = {}

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Read and price the call's usage."""
        msg = _answer(response)
        if msg is None:
            return
        owned = owned_call(msg)
        if owned is not None:
            # Recorded where it was made, under its own call id: collected under that id too,
            # so the run's channel and the agent's own channel hold one record for one call.
            usage, call_id, tenant = owned.usage, owned.call_id, owned.tenant
        else:
            usage, call_id, tenant = usage_from_message(msg), str(run_id), self.tenant
            if usage is not None and tenant is not None:
                recorder_for(self.cache).record(tenant, usage)
        if usage is None:
            return
        f = figures_from_usage(usage, call_id=call_id, tenant=tenant)
        with self._lock:
            self._figures[f.call_id] = f

    @property
    def cache_metrics(self) -> CacheMetrics:
        """The figures collected so far."""
        with self._lock:
            return CacheMetrics(records=dict(self._figures))

    def metrics(self) -> CacheMetrics:
        """Deprecated: read the :attr:`cache_metrics` property (the figures' one name)."""
        _deprecated_metrics(type(self).__name__)
        return self.cache_metrics


def _deprecated_metrics(owner: str) -> None:
    warnings.warn(
        f"{owner}.metrics() is deprecated: read the .cache_metrics property",
        DeprecationWarning,
        stacklevel=3,
    )


def _call_tenant(key: str, metadata: Mapping[str, Any] | None) -> str | None:
    # The core's one order, with what a callback can reach: the enclosing chain or node's config
    # (its configurable, then its metadata), the run's own metadata, the LangGraph runtime context.
    return tenant_from(key, config=ambient_config(), metadata=metadata, runtime_context=runtime_context())


def _openai_tool(tool: Any) -> Any:
    # Tools reach callbacks in the provider's format; the shadow plan is computed on an
    # OpenAI Chat rendition, so an Anthropic-style tool is restated in that shape.
    if isinstance(tool, Mapping) and "input_schema" in tool and "name" in tool:
        fn = {"name": tool["name"], "parameters": tool["input_schema"]}
        if "description" in tool:
            fn["description"] = tool["description"]
        return {"type": "function", "function": fn}
    return tool


class PromptCacheCallbackHandler(BaseCallbackHandler):
    """Shadow-mode observer: per-call usage, keys and miss explanations; changes nothing.

    ``records`` lists one :class:`CallRecord` per chat model call; :attr:`cache_metrics` adds
    them up.
    """

    raise_error = False
    run_inline = True

    def __init__(self, cache: PromptCache, *, tenant_key: str = DEFAULT_TENANT_KEY) -> None:
        self.cache = cache
        self.tenant_key = tenant_key
        self._lock = threading.Lock()
        self._pending: dict[UUID, dict[str, Any]] = {}
        self.records: list[CallRecord] = []

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Keep what the shadow plan needs until the call ends (in memory only, never logged)."""
        with self._lock:
            self._pending[run_id] = {
                "messages": messages[0] if messages else [],
                "params": kwargs.get("invocation_params") or {},
                "parent": parent_run_id,
                "tags": list(tags or []),
                "metadata": dict(metadata or {}),
                # Read now: the enclosing chain or node's config is the ambient one only while
                # the call starts.
                "tenant": _call_tenant(self.tenant_key, metadata),
            }

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a failed call."""
        with self._lock:
            self._pending.pop(run_id, None)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the call: its usage and the plan promptcache made (or would make) of it."""
        with self._lock:
            start = self._pending.pop(run_id, None)
        if start is None:
            return
        msg = _answer(response)
        owned = owned_call(msg)
        tenant = start["tenant"]
        plan: dict[str, Any] = {}
        explain = error = None
        call_id = str(run_id)
        if owned is not None:
            # Applied by CachingChatModel or PromptCacheMiddleware, and recorded there: the
            # plan that was really sent, under the call's own id; the stats are not fed twice.
            plan = owned.describe()
            usage, call_id = owned.usage, owned.call_id
            tenant = owned.tenant if owned.tenant is not None else tenant
            explain = plan.get("explain")
        else:
            usage = usage_from_message(msg) if msg is not None else None
            try:
                plan, explain, tenant = self._shadow(start["messages"], start["params"], tenant)
            except (ValueError, WireFormatError) as exc:
                error = str(exc)
                if tenant is None:
                    # The one carrier a callback of a directly invoked model is handed.
                    error += (
                        f"; a callback sees a call's metadata, not its configurable: outside a chain "
                        f"or graph, pass config={{'metadata': {{'{self.tenant_key}': ...}}}}"
                    )
            if usage is not None and error is None and tenant is not None:
                recorder_for(self.cache).record(tenant, usage)
        figures = figures_from_usage(usage, call_id=call_id, tenant=tenant) if usage is not None else None
        rec = CallRecord(
            run_id=str(run_id),
            parent_run_id=str(start["parent"]) if start["parent"] else None,
            tags=start["tags"],
            metadata=start["metadata"],
            tenant=tenant,
            usage=usage,
            figures=figures,
            applied=owned is not None,
            plan=plan,
            explain=explain,
            error=error,
        )
        with self._lock:
            self.records.append(rec)

    def _shadow(
        self, messages: Sequence[BaseMessage], params: Mapping[str, Any], tenant: Any
    ) -> tuple[dict[str, Any], str, str]:
        resolved = self.cache.resolve_tenant(tenant)
        model = params.get("model") or params.get("model_name") or "unknown"
        body: dict[str, Any] = {"model": str(model), "messages": convert_to_openai_messages(list(messages))}
        tools = params.get("tools")
        if tools:
            body["tools"] = [_openai_tool(t) for t in tools]
        prepared = self.cache.prepare_request(body, format="openai-chat", tenant=resolved)
        p = prepared.plan
        explain = str(p.explain())
        summary = {
            "tenant": resolved,
            "mode": "shadow",
            "prefix_key": p.prefix_key,
            "hints": [{"kind": h.kind, "where": h.where, "ttl": h.ttl} for h in p.hints],
            "relocated_values": len(p.fragments),
            "explain": explain,
        }
        return summary, explain, resolved

    @property
    def cache_metrics(self) -> CacheMetrics:
        """Every recorded call's figures, merged."""
        with self._lock:
            figs = [r.figures for r in self.records if r.figures is not None]
        return CacheMetrics(records={f.call_id: f for f in figs})

    def metrics(self) -> CacheMetrics:
        """Deprecated: read the :attr:`cache_metrics` property (the figures' one name)."""
        _deprecated_metrics(type(self).__name__)
        return self.cache_metrics


class CacheMetricsCallbackHandler(BaseCallbackHandler):
    """The cache figures of every chat model call it sees, as :attr:`cache_metrics`.

    Reads each answer's provider usage (streamed answers included: LangChain hands the merged
    message to ``on_llm_end``) and prices it; changes nothing and feeds no ``cache.stats()``
    (the calls made through promptcache are there already). Each call is kept under its
    LangChain run id, or, for a call made through promptcache, under that call's own id (the
    one ``cache_metrics`` holds), with the tenant promptcache resolved for it, else the one the
    tenant rule finds. Usually made by :func:`get_cache_metrics_callback`.
    """

    raise_error = False
    run_inline = True

    def __init__(
        self, *, tenant_key: str = DEFAULT_TENANT_KEY, parent: CacheMetricsCallbackHandler | None = None
    ):
        """Collect figures; the tenant of a call not made through promptcache is read under ``tenant_key``.

        ``parent``: an enclosing handler that gets every figure too (nested ``with`` blocks).
        """
        super().__init__()
        self.tenant_key = tenant_key
        self._parent = parent
        self._lock = threading.Lock()
        self._metrics = CacheMetrics()
        self._tenants: dict[UUID, str | None] = {}

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Note the call's tenant while its enclosing config is the ambient one."""
        tenant = _call_tenant(self.tenant_key, metadata)
        with self._lock:
            self._tenants[run_id] = tenant

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a failed call."""
        with self._lock:
            self._tenants.pop(run_id, None)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Price the call's provider usage and keep it under the call's id."""
        with self._lock:
            tenant = self._tenants.pop(run_id, None)
        msg = _answer(response)
        if msg is None:
            return
        owned = owned_call(msg)
        call_id = str(run_id)
        if owned is not None:
            # Made under promptcache (CachingChatModel, PromptCacheMiddleware): that call's own
            # id and tenant, so these figures and the cache_metrics channel name one call alike.
            usage, call_id = owned.usage, owned.call_id
            tenant = owned.tenant if owned.tenant is not None else tenant
        else:
            usage = usage_from_message(msg)
        if usage is None:
            return
        self._add(figures_from_usage(usage, call_id=call_id, tenant=tenant))

    def _add(self, figures: CallFigures) -> None:
        with self._lock:
            self._metrics = merge_cache_metrics(self._metrics, CacheMetrics.of_call(figures))
        if self._parent is not None:
            self._parent._add(figures)

    @property
    def cache_metrics(self) -> CacheMetrics:
        """Every call seen so far (per-call records; totals and ``summary()`` on it)."""
        with self._lock:
            return self._metrics


# One variable, registered once: LangChain adds the handler it holds to every run configured
# while it is set (inherited by child runs), as it does for get_usage_metadata_callback().
_active: ContextVar[CacheMetricsCallbackHandler | None] = ContextVar(
    "promptcache_cache_metrics_callback", default=None
)
register_configure_hook(_active, inheritable=True)


@contextmanager
def get_cache_metrics_callback(
    *, tenant_key: str = DEFAULT_TENANT_KEY
) -> Iterator[CacheMetricsCallbackHandler]:
    """Collect the cache figures of every chat model call made inside the ``with`` block.

    LangChain's idiom (``get_usage_metadata_callback()``), for cache figures: sync, async and
    streamed calls, any chat model, agents and graphs included, with no callback to pass::

        with get_cache_metrics_callback() as cb:
            agent.invoke({"messages": [...]}, cfg)
        cb.cache_metrics.summary()

    Blocks nest: an enclosing block sees the calls of the inner one too.
    """
    handler = CacheMetricsCallbackHandler(tenant_key=tenant_key, parent=_active.get())
    token = _active.set(handler)
    try:
        yield handler
    finally:
        _active.reset(token)
