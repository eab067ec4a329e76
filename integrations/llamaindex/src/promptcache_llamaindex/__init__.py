"""promptcache for LlamaIndex.

* :func:`enable` — one line on ``Settings``: wraps ``Settings.llm`` (and LLMs assigned later) in
  :class:`CachingLLM` and registers :class:`PromptCacheEventHandler`; :func:`disable` undoes it.
* :class:`CachingLLM` — wrap any LlamaIndex LLM; every request it sends is rewritten by
  ``PromptCache.prepare_request`` (canonical, static first, provider hints, per-tenant keys).
* :class:`PromptCacheEventHandler` — per-call figures from ``llama_index.core.instrumentation``.
* :class:`CachingRetriever`, :class:`CachingTool` / :func:`cache_tool` — retrieval results and
  tool outputs on promptcache's artifact caches (tools declare their side effects).

The tenant of a call is the instrumentation tag ``tenant_id``
(``with instrument_tags({"tenant_id": "acme"}): ...``), never a global. Aggregate figures per
tenant and model: ``promptcache.stats.recorder_for(cache).snapshot()``.
"""

from promptcache_llamaindex._tenant import DEFAULT_TENANT_KEY, tenant_from_tags
from promptcache_llamaindex._usage import usage_from_raw
from promptcache_llamaindex.events import CacheUsageEvent, RetrievalCacheEvent, ToolCacheEvent
from promptcache_llamaindex.handler import PromptCacheEventHandler
from promptcache_llamaindex.llm import METADATA_KEY, CachingLLM
from promptcache_llamaindex.retriever import CachingRetriever
from promptcache_llamaindex.settings import disable, enable, enabled_handler
from promptcache_llamaindex.tools import CachingTool, cache_tool

__all__ = [
    "DEFAULT_TENANT_KEY",
    "METADATA_KEY",
    "CacheUsageEvent",
    "CachingLLM",
    "CachingRetriever",
    "CachingTool",
    "PromptCacheEventHandler",
    "RetrievalCacheEvent",
    "ToolCacheEvent",
    "cache_tool",
    "disable",
    "enable",
    "enabled_handler",
    "tenant_from_tags",
    "usage_from_raw",
]
