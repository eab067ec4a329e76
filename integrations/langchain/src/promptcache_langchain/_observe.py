"""After a call: read its usage, feed the cache's stats, annotate the answer honestly."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from promptcache import PromptCache
from promptcache.metrics import CallFigures, figures_from_usage
from promptcache.stats import recorder_for
from promptcache_langchain._hook import CallContext
from promptcache_langchain._usage import usage_from_message

__all__ = ["METADATA_KEY", "finish_call", "plan_summary"]

METADATA_KEY = "promptcache"
"""The ``response_metadata`` key under which promptcache describes what it did for a call."""


def plan_summary(ctx: CallContext) -> dict[str, Any]:
    """What the hook did to the request: no prompt text, only keys, hints and counts."""
    out: dict[str, Any] = {"tenant": ctx.tenant, "mode": ctx.cache.mode}
    if ctx.prepared is not None:
        plan = ctx.prepared.plan
        out.update(
            format=ctx.format_used.value if ctx.format_used else None,
            prefix_key=plan.prefix_key,
            hints=[{"kind": h.kind, "where": h.where, "ttl": h.ttl} for h in plan.hints],
            relocated_values=len(plan.fragments),
            explain=str(plan.explain()),
        )
    if ctx.notes:
        out["notes"] = list(ctx.notes)
    return out


def finish_call(
    message: BaseMessage, ctx: CallContext, *, call_id: str, cache: PromptCache | None = None
) -> CallFigures | None:
    """Record one answered call in ``cache``'s stats and describe it in ``response_metadata``.

    Returns the call's priced figures (for a ``cache_metrics`` channel), or ``None`` when the
    answer carries no usage. The provider's own figures in ``usage_metadata`` are left as they
    are; only an answer without any gets one, built from the provider usage we read.
    """
    cache = cache or ctx.cache
    usage = usage_from_message(message, ctx.format_used)
    meta = plan_summary(ctx)
    meta["local_hit"] = False
    figures = None
    if usage is not None:
        recorder_for(cache).record(ctx.tenant, usage)
        figures = figures_from_usage(usage, call_id=call_id, tenant=ctx.tenant)
        meta.update(
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=figures.cost_nusd / 1e9 if figures.priced else None,
            cost_avoided_usd=figures.cost_avoided_nusd / 1e9 if figures.priced else None,
        )
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
