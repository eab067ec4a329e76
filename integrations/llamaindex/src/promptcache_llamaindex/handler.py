"""``PromptCacheEventHandler``: cache figures per LLM call, retrieval and tool call, from
LlamaIndex's instrumentation (``llama_index.core.instrumentation``), per tenant.

Register it on the root dispatcher (``enable()`` does)::

    from llama_index.core.instrumentation import get_dispatcher
    handler = PromptCacheEventHandler(cache)
    get_dispatcher().add_event_handler(handler)

It reads

* :class:`~promptcache_llamaindex.events.CacheUsageEvent` (calls through ``CachingLLM``: already
  in the cache's stats, so only kept as per-call records here);
* LlamaIndex's own ``LLMChatEndEvent``/``LLMCompletionEndEvent`` for LLMs *not* wrapped (an
  explicit ``llm=`` somewhere): their provider usage is read from the answer and recorded in the
  cache's stats too (observation only: their requests are not rewritten);
* :class:`~promptcache_llamaindex.events.RetrievalCacheEvent` and
  :class:`~promptcache_llamaindex.events.ToolCacheEvent` (local hits of the artifact caches).

The tenant of an observed call is the instrumentation tag ``tenant_key``. Records are kept in a
merge-safe :class:`promptcache.metrics.CacheMetrics` (the form the LangChain and LangGraph sides
use), readable as :attr:`PromptCacheEventHandler.cache_metrics` — the name the figures have
everywhere: the LangGraph state's ``cache_metrics``, the LangChain handlers' ``cache_metrics``.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from pydantic import ConfigDict, PrivateAttr

from promptcache import CacheUsage, PromptCache
from promptcache.llm_bridge import current_call
from promptcache.metrics import CacheMetrics, CallFigures, figures_from_usage, merge_cache_metrics
from promptcache.stats import recorder_for
from promptcache.tenancy import DEFAULT_TENANT_KEY, resolve_tenant
from promptcache_llamaindex._usage import usage_from_raw
from promptcache_llamaindex.events import CacheUsageEvent, RetrievalCacheEvent, ToolCacheEvent

__all__ = ["PromptCacheEventHandler"]


class PromptCacheEventHandler(BaseEventHandler):
    """Collects per-call cache figures of one ``PromptCache`` from instrumentation events."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    tenant_key: str = DEFAULT_TENANT_KEY
    observe_unwrapped: bool = True
    """Record provider usage of LLM calls that did not go through ``CachingLLM``."""

    _cache: PromptCache = PrivateAttr()
    _metrics: CacheMetrics = PrivateAttr(default_factory=CacheMetrics)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, cache: PromptCache, **kwargs: Any) -> None:
        """Collect figures for ``cache``; ``tenant_key`` and ``observe_unwrapped`` are optional."""
        super().__init__(**kwargs)
        self._cache = cache

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "PromptCacheEventHandler"

    @property
    def cache(self) -> PromptCache:
        """The cache whose calls this handler collects."""
        return self._cache

    @property
    def cache_metrics(self) -> CacheMetrics:
        """Every call recorded so far (per-call records and totals)."""
        with self._lock:
            return self._metrics

    @property
    def metrics(self) -> CacheMetrics:
        """Deprecated alias of :attr:`cache_metrics` (the figures' one name in every integration)."""
        warnings.warn(
            "PromptCacheEventHandler.metrics is deprecated: read handler.cache_metrics",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.cache_metrics

    def reset(self) -> None:
        """Forget the records (the cache's shared stats are not touched)."""
        with self._lock:
            self._metrics = CacheMetrics()

    def _add(self, figures: CallFigures) -> None:
        with self._lock:
            self._metrics = merge_cache_metrics(self._metrics, CacheMetrics.of(figures))

    def _tenant(self, event: BaseEvent) -> str:
        return resolve_tenant(self._cache, self.tenant_key, tags=event.tags)

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        """Record the figures an event carries; other events are ignored."""
        mine = str(id(self._cache))
        if isinstance(event, CacheUsageEvent):
            if event.cache_id == mine and event.usage is not None:
                usage = CacheUsage.model_validate(event.usage)
                self._add(figures_from_usage(usage, call_id=event.call_id, tenant=event.tenant))
        elif isinstance(event, RetrievalCacheEvent | ToolCacheEvent):
            if event.cache_id == mine:
                kind = "retrieval" if isinstance(event, RetrievalCacheEvent) else "tool"
                self._add(
                    CallFigures(call_id=event.call_id, kind=kind, tenant=event.tenant, local_hit=event.hit)
                )
        elif isinstance(event, LLMChatEndEvent | LLMCompletionEndEvent):
            self._observe(event)

    def _observe(self, event: LLMChatEndEvent | LLMCompletionEndEvent) -> None:
        # Inside a CachingLLM call the wrapper records the call itself (with the usage read at
        # the SDK, which streamed answers here lack): counting this event too would double it.
        if not self.observe_unwrapped or current_call.get() is not None or event.response is None:
            return
        usage = usage_from_raw(event.response.raw)
        if usage is None:
            return
        try:
            tenant = self._tenant(event)
        except ValueError:
            return  # the policy requires a tenant and the call named none: nothing to attribute
        recorder_for(self._cache).record(tenant, usage)
        self._add(figures_from_usage(usage, call_id=event.id_, tenant=tenant))
