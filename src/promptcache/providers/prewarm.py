"""Pre-warming: seed a provider's cache for a stable prefix before real traffic, and say what it cost.

:func:`prewarm` prepares ``body`` with the cache (so the same layout, canonical form and
hints as a real call), turns it into the cheapest request that still writes the prefix, sends
it through the caller's ``send``, and reports the usage and its price. The cache is anything
with ``prepare_request`` (:class:`Preparer`; in practice :class:`~promptcache.engine.PromptCache`,
whose ``prewarm`` method calls this): this module, like all of ``providers/``, never imports the
engine.

* Anthropic Messages: ``max_tokens: 0``. Anthropic documents it for pre-warming: the input is
  processed and written to the cache, no output is generated (Claude API, Bedrock and
  Microsoft Foundry per the announcement quoted at headsupai.io/updates/anthropic-launches-
  prompt-cache-pre-warming...). It does not combine with streaming, extended thinking or
  structured outputs, so those are removed; ``zero_max_tokens=False`` sends 1 instead for a
  platform that refuses 0.
* OpenAI Responses on models the catalog marks ``explicit`` (gpt-5.6+):
  ``prompt_cache_options.prewarm: true`` ("prepares the prompt cache without generating
  output", OpenAPI spec as mirrored in generated SDK docs). Elsewhere one minimal request:
  ``max_output_tokens: 16`` (the Responses API minimum), Chat ``max_completion_tokens: 1``.
* Bedrock Converse: ``inferenceConfig.maxTokens: 1``. Gemini: ``maxOutputTokens: 1``; for an
  explicit cache use :class:`~promptcache.providers.gemini_cache.GeminiCacheManager`, whose
  creation *is* the warm-up.

``stream`` is always removed so that usage comes back in the one response body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from promptcache.catalog import UnknownModelError
from promptcache.formats import WireFormat, parse_format
from promptcache.plan import Hint, Prepared
from promptcache.pricing import CostBreakdown, cost
from promptcache.providers.hints import ttl_options
from promptcache.providers.usage import usage_from_response
from promptcache.usage import CacheUsage

__all__ = ["Preparer", "PrewarmReport", "aprewarm", "prewarm", "prewarm_body"]


class Preparer(Protocol):
    """What pre-warming needs of the cache: ``PromptCache.prepare_request``."""

    def prepare_request(
        self, body: Mapping[str, Any], *, format: str | WireFormat, tenant: str | None = ...
    ) -> Prepared: ...


# Fields that cannot accompany max_tokens: 0 on Anthropic. tool_choice stays: changing it
# would invalidate the message-level cache the warm-up is meant to write.
_ANTHROPIC_DROP = ("stream", "thinking", "output_format", "output_config")


class PrewarmReport(BaseModel):
    """What a pre-warm request did and cost."""

    model_config = ConfigDict(frozen=True)

    format: WireFormat
    model: str
    tenant: str
    prefix_key: str
    hints: list[Hint] = Field(description="caching hints the warm-up carried")
    usage: CacheUsage
    cost: CostBreakdown | None = Field(description="None when the catalog cannot price the model")
    seeded: bool = Field(description="the provider wrote (or already held) the prefix")
    notes: list[str] = Field(default_factory=list)


def prewarm_body(
    body: Mapping[str, Any], fmt: str | WireFormat, *, zero_max_tokens: bool = True
) -> dict[str, Any]:
    """The cheapest request of ``fmt`` that still writes ``body``'s prefix (see the module doc)."""
    wf = parse_format(fmt)
    out = {k: v for k, v in body.items() if k != "stream"}
    if wf is WireFormat.ANTHROPIC_MESSAGES:
        out = {k: v for k, v in out.items() if k not in _ANTHROPIC_DROP}
        out["max_tokens"] = 0 if zero_max_tokens else 1
        if not out.get("messages"):
            # The Messages API needs one message; a one-character turn adds ~nothing.
            out["messages"] = [{"role": "user", "content": "."}]
    elif wf is WireFormat.OPENAI_RESPONSES:
        model = str(out.get("model", ""))
        if "explicit" in ttl_options(model, wf):
            out["prompt_cache_options"] = {**(out.get("prompt_cache_options") or {}), "prewarm": True}
        else:
            out["max_output_tokens"] = 16
    elif wf is WireFormat.OPENAI_CHAT:
        out.pop("max_tokens", None)
        out["max_completion_tokens"] = 1
    elif wf is WireFormat.BEDROCK_CONVERSE:
        out["inferenceConfig"] = {**(out.get("inferenceConfig") or {}), "maxTokens": 1}
    else:
        out["generationConfig"] = {**(out.get("generationConfig") or {}), "maxOutputTokens": 1}
    return out


def _report(
    prepared_plan: Any, fmt: WireFormat, model: str, response: Mapping[str, Any], dropped: list[str]
) -> PrewarmReport:
    notes: list[str] = list(prepared_plan.decisions)
    if dropped:
        # Thinking settings are part of what message-level cache entries match on.
        notes.append(f"removed for max_tokens 0: {', '.join(dropped)}; only tools and system are warmed")
    usage = usage_from_response(fmt, response, model=model if fmt is WireFormat.BEDROCK_CONVERSE else None)
    try:
        priced: CostBreakdown | None = cost(usage)
    except (UnknownModelError, ValueError) as exc:
        priced = None
        notes.append(f"not priced: {type(exc).__name__}")
    seeded = usage.cache_write_tokens > 0 or usage.cache_read_tokens > 0
    if not seeded:
        notes.append("the provider reported no cache write or read: nothing was seeded")
    return PrewarmReport(
        format=fmt,
        model=usage.model or model,
        tenant=prepared_plan.tenant,
        prefix_key=prepared_plan.prefix_key,
        hints=list(prepared_plan.hints),
        usage=usage,
        cost=priced,
        seeded=seeded,
        notes=notes,
    )


def _prepare(
    cache: Preparer, body: Mapping[str, Any], fmt: WireFormat, tenant: str | None, zero: bool
) -> tuple[dict[str, Any], Any, str, list[str]]:
    prepared = cache.prepare_request(body, format=fmt, tenant=tenant)
    model = str(body.get("model") or body.get("modelId") or prepared.plan.model)
    dropped = []
    if fmt is WireFormat.ANTHROPIC_MESSAGES:
        dropped = [k for k in _ANTHROPIC_DROP if k != "stream" and k in prepared.body]
    return prewarm_body(prepared.body, fmt, zero_max_tokens=zero), prepared.plan, model, dropped


def prewarm(
    cache: Preparer,
    body: Mapping[str, Any],
    *,
    format: str | WireFormat,
    send: Callable[[dict[str, Any]], Mapping[str, Any]],
    tenant: str | None = None,
    zero_max_tokens: bool = True,
) -> PrewarmReport:
    """Seed the provider cache for ``body``'s stable prefix with one minimal request.

    ``send`` takes the request body and returns the provider's JSON response as a mapping
    (for an SDK: ``lambda b: client.messages.create(**b).to_dict()``).
    """
    fmt = parse_format(format)
    warm, plan, model, dropped = _prepare(cache, body, fmt, tenant, zero_max_tokens)
    return _report(plan, fmt, model, send(warm), dropped)


async def aprewarm(
    cache: Preparer,
    body: Mapping[str, Any],
    *,
    format: str | WireFormat,
    send: Callable[[dict[str, Any]], Awaitable[Mapping[str, Any]]],
    tenant: str | None = None,
    zero_max_tokens: bool = True,
) -> PrewarmReport:
    """The asyncio form of :func:`prewarm`."""
    fmt = parse_format(format)
    warm, plan, model, dropped = _prepare(cache, body, fmt, tenant, zero_max_tokens)
    return _report(plan, fmt, model, await send(warm), dropped)
