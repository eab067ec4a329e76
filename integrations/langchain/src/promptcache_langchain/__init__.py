"""promptcache for LangChain.

* :class:`CachingChatModel` — wrap any chat model; every request it sends is rewritten by
  ``PromptCache.prepare_request`` (canonical, static-first, provider hints, per-tenant keys).
* :class:`PromptCacheMiddleware` — the same for ``langchain.agents.create_agent`` (one line:
  ``middleware=[PromptCacheMiddleware()]``, anywhere in the list), plus a ``cache_metrics`` channel
  in the agent state and the tool-output cache; :class:`PromptCacheModelOnlyMiddleware` hooks model
  calls only (agents whose tools are all provider built-ins).
* :class:`PromptCacheCallbackHandler` — observation only (shadow mode): per-call usage, keys and
  miss explanations for any chat model run.
* :func:`get_cache_metrics_callback` — ``with get_cache_metrics_callback() as cb:`` collects the
  cache figures of every chat model call in the block (LangChain's ``get_usage_metadata_callback``
  idiom). Every handler's figures are its ``cache_metrics`` property, a ``CacheMetrics``.
* :class:`CacheMetricsChannel` — the ``cache_metrics`` state channel: a value read back from a
  checkpointer is a ``CacheMetrics`` too.
* :func:`declare_tool` / :func:`cache_tool` — declare a tool's side effects (the middleware then
  serves it) / wrap any ``BaseTool`` in a cache of its own; ``pure``/``read_only`` outputs are
  served from ``cache.tools`` (writes invalidate tags).
* :class:`CachingRetriever` — any ``BaseRetriever`` with its results in ``cache.retrieval``.

Deprecated names, kept as aliases that warn: ``PromptCacheModelMiddleware``
(:class:`PromptCacheModelOnlyMiddleware`), ``cached_tool`` (:func:`declare_tool`).

The tenant of a call comes from its ``RunnableConfig`` (``configurable["tenant_id"]``, then
``metadata["tenant_id"]``), then the LangGraph runtime context, then the graph state — the core's
one order (:mod:`promptcache.tenancy`); the key name is configurable. Never from a global.
"""

from promptcache_langchain._usage import usage_from_message
from promptcache_langchain.callbacks import (
    CacheMetricsCallbackHandler,
    CallRecord,
    PromptCacheCallbackHandler,
    UsageCollector,
    get_cache_metrics_callback,
)
from promptcache_langchain.channel import CacheMetricsChannel
from promptcache_langchain.chat_model import CachingChatModel
from promptcache_langchain.middleware import (
    PromptCacheAgentState,
    PromptCacheMiddleware,
    PromptCacheModelMiddleware,
    PromptCacheModelOnlyMiddleware,
)
from promptcache_langchain.retriever import CachingRetriever
from promptcache_langchain.tenant import DEFAULT_TENANT_KEY, tenant_from_config
from promptcache_langchain.tools import (
    CachingTool,
    ToolCallCache,
    cache_tool,
    cached_tool,
    declare_tool,
    spec_of,
)

__all__ = [
    "DEFAULT_TENANT_KEY",
    "CacheMetricsCallbackHandler",
    "CacheMetricsChannel",
    "CachingChatModel",
    "CachingRetriever",
    "CachingTool",
    "CallRecord",
    "PromptCacheAgentState",
    "PromptCacheCallbackHandler",
    "PromptCacheMiddleware",
    "PromptCacheModelMiddleware",
    "PromptCacheModelOnlyMiddleware",
    "ToolCallCache",
    "UsageCollector",
    "cache_tool",
    "cached_tool",
    "declare_tool",
    "get_cache_metrics_callback",
    "spec_of",
    "tenant_from_config",
    "usage_from_message",
]
