"""Instrumentation events promptcache dispatches on LlamaIndex's dispatcher.

They go through ``llama_index.core.instrumentation`` like LlamaIndex's own events, so they carry
the active span id and instrumentation tags, and any registered handler (ours, or a tracing
backend's) sees them. They never carry prompt, query or tool-argument text.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.instrumentation.events import BaseEvent
from pydantic import Field

from promptcache.figures import LookupReason

__all__ = ["CacheUsageEvent", "RetrievalCacheEvent", "ToolCacheEvent"]


class CacheUsageEvent(BaseEvent):
    """One model call made through :class:`~promptcache_llamaindex.CachingLLM`.

    ``usage`` is the provider's own report (``CacheUsage`` fields; None when the provider gave
    none); ``summary`` is what promptcache did (prefix key, hints, relocated values, notes).
    The call is already in the cache's shared stats when this event is dispatched.
    """

    cache_id: str
    call_id: str
    tenant: str
    usage: dict[str, Any] | None = None
    summary: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def class_name(cls) -> str:
        """Event name."""
        return "PromptCacheUsageEvent"


class RetrievalCacheEvent(BaseEvent):
    """One retrieval through :class:`~promptcache_llamaindex.CachingRetriever`.

    ``reason`` is how it was answered (count and compare it); ``why`` is the same in words.
    """

    cache_id: str
    call_id: str
    tenant: str
    retriever: str
    hit: bool
    reason: LookupReason
    tier: str | None = None
    why: str = ""
    stored: bool = False
    dropped: int = 0
    documents: int = 0

    @classmethod
    def class_name(cls) -> str:
        """Event name."""
        return "PromptCacheRetrievalEvent"


class ToolCacheEvent(BaseEvent):
    """One tool call through :class:`~promptcache_llamaindex.CachingTool`.

    ``reason`` is how it was answered (count and compare it); ``why`` is the same in words.
    """

    cache_id: str
    call_id: str
    tenant: str
    tool: str
    side_effect: str
    hit: bool
    reason: LookupReason
    tier: str | None = None
    why: str = ""
    stored: bool = False
    invalidated: tuple[str, ...] = ()

    @classmethod
    def class_name(cls) -> str:
        """Event name."""
        return "PromptCacheToolEvent"
