"""After a call: read its usage, feed the cache's stats, annotate the answer honestly.

The summary and the stats feed are the core's (:func:`promptcache.llm_bridge.plan_summary`,
:func:`~promptcache.llm_bridge.record_call`), so LangChain and LlamaIndex describe a call alike;
only reading the usage from a LangChain message is done here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from promptcache import CacheUsage, PromptCache
from promptcache.llm_bridge import CallContext, current_call, plan_summary, record_call
from promptcache.metrics import CallFigures
from promptcache_langchain._usage import usage_from_message

__all__ = ["METADATA_KEY", "OwnedCall", "finish_call", "owned_call", "plan_summary"]

METADATA_KEY = "promptcache"
"""The ``response_metadata`` key under which promptcache describes what it did for a call."""


@dataclass(frozen=True, slots=True)
class OwnedCall:
    """A model call promptcache records itself (seen from a callback): its identity and usage."""

    call_id: str
    tenant: str | None
    usage: CacheUsage | None
    summary: Mapping[str, Any] | None
    """The answer's ``response_metadata["promptcache"]``; None while the call is still running."""
    ctx: CallContext | None
    """The call context, while the call is still running (the middleware's calls)."""

    def describe(self) -> dict[str, Any]:
        """What promptcache did to the call, as ``response_metadata["promptcache"]`` says it."""
        if self.summary is not None:
            return dict(self.summary)
        return plan_summary(self.ctx) if self.ctx is not None else {}


def owned_call(message: BaseMessage | None) -> OwnedCall | None:
    """The call behind ``message`` when promptcache records it itself, else None.

    Two cases, so that a callback never records such a call a second time, nor under another id:

    * the answer already carries ``response_metadata["promptcache"]`` (``CachingChatModel``
      finished the call before LangChain's ``on_llm_end``): its call id and tenant;
    * a :class:`~promptcache.llm_bridge.CallContext` is still current (``PromptCacheMiddleware``
      wraps the whole model call, so the callbacks fire inside it and the answer is described
      only afterwards): the context's call id and tenant, and the usage :func:`finish_call`
      will read, so both sides price the call alike.
    """
    meta = message.response_metadata.get(METADATA_KEY) if message is not None else None
    if isinstance(meta, Mapping) and isinstance(meta.get("call_id"), str):
        usage = usage_from_message(message) if message is not None else None
        tenant = meta.get("tenant")
        return OwnedCall(meta["call_id"], tenant if isinstance(tenant, str) else None, usage, meta, None)
    ctx = current_call.get()
    if ctx is None:
        return None
    usage = ctx.usage
    if usage is None and message is not None:
        usage = usage_from_message(message, ctx.format_used)
    return OwnedCall(ctx.call_id, ctx.tenant, usage, None, ctx)


def finish_call(
    message: BaseMessage, ctx: CallContext, *, call_id: str, cache: PromptCache | None = None
) -> CallFigures | None:
    """Record one answered call in ``cache``'s stats and describe it in ``response_metadata``.

    Returns the call's priced figures (for a ``cache_metrics`` channel), or ``None`` when the
    answer carries no usage. The provider's own figures in ``usage_metadata`` are left as they
    are; only an answer without any gets one, built from the provider usage we read.
    """
    # The usage the transport read from the provider's own answer, when it saw the call (the
    # first answer of it: the request's usage is not each of several generations'); else what
    # LangChain kept of it on the message.
    usage = ctx.usage if ctx.usage is not None and call_id == ctx.call_id else None
    if usage is None:
        usage = usage_from_message(message, ctx.format_used)
    ctx.call_id, ctx.usage = call_id, usage
    if cache is not None and cache is not ctx.cache:
        ctx = replace(ctx, cache=cache)  # the caller's stats are the ones to feed
    meta = plan_summary(ctx)
    meta["local_hit"] = False
    figures = record_call(ctx)
    if usage is not None and figures is not None:
        priced = figures.priced
        meta["cost_usd"] = figures.cost_nusd / 1e9 if priced else None
        meta["cost_avoided_usd"] = figures.cost_avoided_nusd / 1e9 if priced else None
        if isinstance(message, AIMessage) and not message.usage_metadata:
            message.usage_metadata = {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
                "input_token_details": {
                    "cache_read": usage.cache_read_tokens,
                    "cache_creation": usage.cache_write_tokens,
                },
            }
    message.response_metadata[METADATA_KEY] = meta
    return figures
