"""Provider caching hints placed on a rewritten request body.

* Anthropic Messages: ``cache_control`` breakpoints, at most 4 per request
  including the caller's, at the end of the conversation (before the volatile
  block), the end of the system prompt (covers tools and system: Anthropic
  renders tools → system → messages) and the end of the tools; 1h TTL on the
  static sections when the policy keeps prefixes an hour or more (longer TTLs
  must come first, which this order guarantees); none below the model's
  minimum cacheable length.
* Bedrock Converse: ``cachePoint`` blocks at the same places.
* OpenAI Chat / Responses: ``prompt_cache_key`` from the tenant-scoped key of
  the stable prefix, so requests sharing it are routed to the same cache.
* Gemini: implicit caching needs no hint; explicit cached contents are
  created by the Gemini adapter, not here.

Content whose data class the policy keeps out of provider caches (secrets
always) stops placement: no breakpoint is put at or after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptcache.formats import WireFormat
from promptcache.plan import Hint, Plan
from promptcache.policy import EntryType, Policy

MAX_BREAKPOINTS = 4
VOLATILE_MARK = "<volatile_context>"
_CHARS_PER_TOKEN = 4  # estimate; the simulator counts exactly where it can


def min_cacheable_tokens(model: str) -> int:
    """Anthropic's minimum cacheable prompt length for ``model`` (documented values)."""
    m = model.lower()
    if "haiku-4-5" in m or "opus-4-5" in m or "haiku-4.5" in m or "opus-4.5" in m:
        return 4096
    if "haiku" in m:
        return 2048
    return 1024


@dataclass(slots=True)
class HintContext:
    """What the hint placement needs to know about a rewritten request."""

    format: WireFormat
    model: str
    policy: Policy
    plan: Plan
    n_system: int
    n_tools: int
    history_end: int
    has_volatile: bool
    prefix_chars: int
    message_chars: list[int]


def _blocked_from(ctx: HintContext) -> int:
    """Index (plan order) of the first block provider caching may not cover."""
    for i in sorted(ctx.plan.data_classes):
        if not ctx.policy.provider_caching_allowed(ctx.plan.data_classes[i]):
            return i
    return len(ctx.plan.blocks)


def apply_hints(body: dict[str, Any], ctx: HintContext) -> tuple[dict[str, Any], list[Hint], list[str]]:
    """Place the provider's caching hints on ``body``; returns body, hints and notes."""
    if not ctx.policy.entry(EntryType.PROMPT_PREFIX).eligible:
        return body, [], ["prompt_prefix caching not eligible by policy: no hints"]
    if ctx.format is WireFormat.ANTHROPIC_MESSAGES:
        return _anthropic(body, ctx)
    if ctx.format is WireFormat.BEDROCK_CONVERSE:
        return _bedrock(body, ctx)
    if ctx.format in (WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES):
        return _openai(body, ctx)
    return body, [], ["gemini: implicit prefix caching, no request hint"]


def _openai(body: dict[str, Any], ctx: HintContext) -> tuple[dict[str, Any], list[Hint], list[str]]:
    if "prompt_cache_key" in body:
        return body, [], ["prompt_cache_key set by the caller: kept"]
    key = "pc-" + ctx.plan.prefix_key[:32]
    return (
        {**body, "prompt_cache_key": key},
        [Hint(kind="prompt_cache_key", where="$.prompt_cache_key")],
        [],
    )


def _ttl_static(ctx: HintContext, body: dict[str, Any] | None = None) -> str | None:
    if ctx.policy.entry(EntryType.PROMPT_PREFIX).ttl.default < 3600:
        return None
    # Anthropic requires 1h breakpoints before 5m ones; a caller-placed 5m marker
    # could sit before ours, so with any 5m marker present ours stay 5m too.
    if body is not None and _has_5m_marker(body):
        return None
    return "1h"


def _has_5m_marker(body: dict[str, Any]) -> bool:
    def short(x: Any) -> bool:
        cc = x.get("cache_control") if isinstance(x, dict) else None
        return isinstance(cc, dict) and cc.get("ttl", "5m") != "1h"

    seqs: list[Any] = [body.get("tools") or []]
    if isinstance(body.get("system"), list):
        seqs.append(body["system"])
    for m in body.get("messages") or []:
        if isinstance(m, dict) and isinstance(m.get("content"), list):
            seqs.append(m["content"])
    return any(short(x) for seq in seqs for x in seq)


def _control(ttl: str | None) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": ttl} if ttl else {"type": "ephemeral"}


def _count_anthropic_markers(body: dict[str, Any]) -> int:
    n = 1 if "cache_control" in body else 0
    n += sum(1 for t in body.get("tools") or [] if isinstance(t, dict) and "cache_control" in t)
    system = body.get("system")
    if isinstance(system, list):
        n += sum(1 for b in system if isinstance(b, dict) and "cache_control" in b)
    for m in body.get("messages") or []:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, list):
            n += sum(1 for b in c if isinstance(b, dict) and "cache_control" in b)
    return n


_MARKABLE = frozenset({"text", "tool_result", "tool_use", "image", "document"})


def _conversation_target(messages: list[Any], text_key: str) -> tuple[int, int] | None:
    """(message, block) that closes the stable conversation: the block before the volatile one."""
    if not messages:
        return None
    last = messages[-1]
    content = last.get("content")
    if isinstance(content, list) and content:
        first, final = content[0], content[-1]
        if isinstance(final, dict) and str(final.get(text_key, "")).startswith(VOLATILE_MARK):
            return (len(messages) - 1, len(content) - 2) if len(content) > 1 else None
        if isinstance(first, dict) and str(first.get(text_key, "")).startswith(VOLATILE_MARK):
            if len(messages) < 2:
                return None
            prev = messages[-2].get("content")
            return (len(messages) - 2, len(prev) - 1 if isinstance(prev, list) else -1)
        return (len(messages) - 1, len(content) - 1)
    return (len(messages) - 1, -1)


def _anthropic(body: dict[str, Any], ctx: HintContext) -> tuple[dict[str, Any], list[Hint], list[str]]:
    notes: list[str] = []
    hints: list[Hint] = []
    budget = MAX_BREAKPOINTS - _count_anthropic_markers(body)
    if budget <= 0:
        return body, [], ["4 cache_control breakpoints already placed by the caller: none added"]
    minimum = min_cacheable_tokens(ctx.model)
    static_tokens = ctx.prefix_chars // _CHARS_PER_TOKEN
    blocked = _blocked_from(ctx)
    static_blocked = blocked < ctx.plan.prefix_end
    ttl = _ttl_static(ctx, body)
    out = dict(body)
    wanted: list[str] = []
    messages = list(out.get("messages") or [])
    conv_tokens = static_tokens + sum(ctx.message_chars) // _CHARS_PER_TOKEN
    conv_blocked = blocked < len(ctx.plan.blocks) and not static_blocked
    if messages and conv_tokens >= minimum and not static_blocked and not conv_blocked:
        wanted.append("conversation")
    elif conv_blocked:
        notes.append("conversation holds content policy keeps out of provider caches: no breakpoint there")
    if static_blocked:
        notes.append(
            "system prompt or tools hold content policy keeps out of provider caches: no breakpoints"
        )
    elif static_tokens >= minimum:
        if ctx.n_system:
            wanted.append("system")
        if ctx.n_tools:
            wanted.append("tools")
    else:
        notes.append(
            f"static prefix ~{static_tokens} tokens is below the {minimum}-token minimum of {ctx.model}"
        )
    wanted = wanted[:budget]
    # Placement in rendering order (tools, system, conversation) keeps 1h before 5m.
    if "tools" in wanted:
        tools = list(out["tools"])
        tools[-1] = {**tools[-1], "cache_control": _control(ttl)}
        out["tools"] = tools
        hints.append(Hint(kind="cache_control", where=f"$.tools[{len(tools) - 1}]", ttl=ttl or "5m"))
    if "system" in wanted:
        system = out.get("system")
        blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
        if blocks:
            blocks[-1] = {**blocks[-1], "cache_control": _control(ttl)}
            out["system"] = blocks
            hints.append(
                Hint(
                    kind="cache_control",
                    where=f"$.system[{len(blocks) - 1}]",
                    ttl=ttl or "5m",
                    prefix_tokens=static_tokens,
                )
            )
    if "conversation" in wanted:
        target = _conversation_target(messages, "text")
        if target is not None:
            mi, bi = target
            msg = dict(messages[mi])
            content = msg.get("content")
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
                bi = 0
            content = list(content or [])
            while bi >= 0 and not (isinstance(content[bi], dict) and content[bi].get("type") in _MARKABLE):
                bi -= 1
            if bi >= 0:
                content[bi] = {**content[bi], "cache_control": _control(None)}
                msg["content"] = content
                messages[mi] = msg
                out["messages"] = messages
                hints.append(
                    Hint(
                        kind="cache_control",
                        where=f"$.messages[{mi}].content[{bi}]",
                        ttl="5m",
                        prefix_tokens=conv_tokens,
                    )
                )
    return out, hints, notes


def _bedrock(body: dict[str, Any], ctx: HintContext) -> tuple[dict[str, Any], list[Hint], list[str]]:
    notes: list[str] = []
    hints: list[Hint] = []

    def points(seq: Any) -> int:
        return sum(1 for b in seq or [] if isinstance(b, dict) and "cachePoint" in b)

    existing = points(body.get("system")) + points((body.get("toolConfig") or {}).get("tools"))
    existing += sum(points(m.get("content")) for m in body.get("messages") or [])
    budget = MAX_BREAKPOINTS - existing
    if budget <= 0:
        return body, [], ["4 cachePoints already placed by the caller: none added"]
    minimum = min_cacheable_tokens(ctx.model)
    static_tokens = ctx.prefix_chars // _CHARS_PER_TOKEN
    if _blocked_from(ctx) < len(ctx.plan.blocks):
        return (
            body,
            [],
            ["request holds content policy keeps out of provider caches: no cachePoint"],
        )
    if static_tokens < minimum:
        return (
            body,
            [],
            [f"static prefix ~{static_tokens} tokens is below the {minimum}-token minimum"],
        )
    point = {"cachePoint": {"type": "default"}}
    out = dict(body)
    messages = list(out.get("messages") or [])
    target = _conversation_target(messages, "text") if messages else None
    if target is not None and budget > 0:
        mi, bi = target
        msg = dict(messages[mi])
        content = list(msg.get("content") or [])
        content.insert(bi + 1 if bi >= 0 else len(content), point)
        msg["content"] = content
        messages[mi] = msg
        out["messages"] = messages
        hints.append(Hint(kind="cachePoint", where=f"$.messages[{mi}].content[{bi + 1}]"))
        budget -= 1
    if budget > 0 and ctx.n_system and not points(out.get("system")):
        out["system"] = [*out["system"], point]
        hints.append(Hint(kind="cachePoint", where=f"$.system[{len(out['system']) - 1}]"))
        budget -= 1
    tc = out.get("toolConfig")
    if budget > 0 and ctx.n_tools and isinstance(tc, dict) and not points(tc.get("tools")):
        out["toolConfig"] = {**tc, "tools": [*tc["tools"], point]}
        hints.append(Hint(kind="cachePoint", where=f"$.toolConfig.tools[{len(tc['tools'])}]"))
    return out, hints, notes
