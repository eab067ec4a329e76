"""Offline provider prefix-cache simulator: how much of a traffic trace a provider would cache.

Feed request bodies, exactly as the app sends them, with their timestamps; the
:class:`Simulator` keeps each organization's provider-side cache state and answers,
per request, what the provider would report (``CacheUsage``: input, cache-read,
cache-write by TTL) plus why a call missed.

>>> sim = Simulator(model="gpt-4o-mini")
>>> body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi " * 1200}]}
>>> sim.feed(0.0, "openai-chat", body).miss_reason
<MissReason.FIRST_SIGHT: 'first_sight'>
>>> r = sim.feed(5.0, "openai-chat", body)
>>> r.hit, r.usage.input_tokens, r.usage.cache_read_tokens
(True, 1208, 1152)

Rendering (what the provider caches over, in order)
---------------------------------------------------
Sampling and transport fields (``temperature``, ``max_tokens``, ``stream``, ``user``,
``metadata``, ...) are never rendered. Cache markers (``cache_control``,
``cachePoint``, ``prompt_cache_breakpoint``) mark positions but are not content, so
moving a marker does not change the prefix.

* **openai-chat**: ``tools`` (function schemas, as JSON) → ``response_format`` schema →
  ``messages`` in order. Each message is a header segment (3 tokens), one segment per
  content part (text; images ``IMAGE_TOKENS``; ``tool_calls`` with their arguments as
  JSON; ``name``), and a closing token; 3 tokens prime the reply. These constants
  reproduce the recorded ``prompt_tokens`` exactly (gpt-4o, gpt-4o-mini).
  GPT-5.6 and later use 3 header + 1 closing tokens and a 2-token reply prime
  (reproduces the recorded 4,020/4,012).
* **openai-responses**: ``tools`` → ``instructions`` (as a system message) → ``input``
  (a string is one user message; items are messages, ``function_call`` and
  ``function_call_output`` items), framed as above.
* **anthropic-messages** (also Claude on Bedrock ``InvokeModel``): ``tools`` (with the
  tool-use system prompt Anthropic adds, per its tool-use pricing page) → ``system``
  → ``messages``; each content block is one block for the 20-block lookback. A message
  adds 3 framing tokens to its first block, the prompt 1 token at the start and 3
  uncached tokens after the last block (the assistant turn).
* **bedrock-converse**: ``toolConfig.tools`` → ``system`` → ``messages`` (Claude's order);
  a ``cachePoint`` block is a breakpoint on the block before it.
* **gemini**: ``systemInstruction`` → ``tools`` → ``contents``; 1 framing token per
  content. With ``cachedContent`` the named cache's contents come first.

Rules per provider (sources cited where applied)
------------------------------------------------
* OpenAI automatic caching (models before GPT-5.6): exact prefix match at token
  level; nothing below 1,024 prompt tokens; hits counted in 128-token increments;
  identity = organization + model + ``prompt_cache_key``; in-memory entries expire
  after ``openai_idle_ttl_s`` of inactivity (docs: 5–10 min) and at most 1 h after
  creation; ``prompt_cache_retention: "24h"`` keeps them 24 h. Writes are free and not
  reported, so ``cache_write_tokens`` is 0.
* OpenAI GPT-5.6 and later: breakpoints. ``prompt_cache_options.mode`` ``implicit``
  (default) adds one breakpoint at the end of the newest message, ``explicit`` uses only
  ``prompt_cache_breakpoint`` parts (none ⇒ nothing cached); up to 4 written per request;
  a prefix matches exactly at a cached breakpoint, with no lookback limit; writes are
  reported (``cache_write_tokens``); TTL 30 min (the only accepted value).
* Anthropic: ≤ 4 ``cache_control`` breakpoints (a 5th is a 400 error, raised here as
  :class:`TooManyBreakpoints`; a 1h breakpoint after a 5m one is a 400 too, raised as
  :class:`BreakpointTtlOrder`); a top-level ``cache_control`` adds one on the last
  block. A read is the longest cached prefix ending at a breakpoint or at one of the
  20 block boundaries before it; the write is everything from there to the last
  breakpoint, split by the TTL of the breakpoint closing each span. Per-model minimum
  (``MIN_CACHEABLE_TOKENS``); ``5m``/``1h`` TTL refreshed on every hit.
* Bedrock Converse: ``cachePoint`` behaves as an Anthropic breakpoint (Claude models).
* Gemini: implicit prefix caching (token-level, per-model minimum, reads only;
  ``gemini_implicit_ttl_s`` is our assumption, the docs only say "a short amount of
  time") and explicit cached contents (:meth:`Simulator.create_cached_content`, read
  in full while alive; default TTL 1 h).

Tokens are exact for OpenAI models and estimates for Claude and Gemini
(:mod:`promptcache.tokens`); ``SimResult.tokens_exact`` says which.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promptcache.formats import WireFormat, parse_format
from promptcache.tokens import Encoding, TokenCounter, counter_for_model, encoding
from promptcache.usage import CacheUsage

__all__ = [
    "IMAGE_TOKENS",
    "MIN_CACHEABLE_TOKENS",
    "BreakpointTtlOrder",
    "MissReason",
    "Rendered",
    "Request",
    "Segment",
    "SimResult",
    "Simulator",
    "TooManyBreakpoints",
    "min_cacheable_tokens",
    "render",
    "simulate",
]

Json = dict[str, Any]

# ---------------------------------------------------------------------------------------
# Model facts. TEMPORARY local table: promptcache.catalog / data/models.yaml did not exist
# when this was written; switch these lookups over once it does.
# ---------------------------------------------------------------------------------------

# (substring of the model id, minimum cacheable prefix in tokens), first match wins.
# Anthropic: platform.claude.com/docs/en/build-with-claude/prompt-caching ("Cache
# limitations"; table mirrored at docs.orq.ai/docs/ai-gateway/prompt-caching).
# OpenAI: developers.openai.com/api/docs/guides/prompt-caching ("1024 tokens or longer").
# Gemini: ai.google.dev/gemini-api/docs/caching (implicit caching table).
MIN_CACHEABLE_TOKENS: tuple[tuple[str, int], ...] = (
    # Claude 5 generation: 512 for Opus 5 / Fable 5 / Mythos 5, 1024 for Sonnet 5 and Opus 4.8
    # (as data/models.yaml, read 2026-12-07); the 5.x models whose minimum is unconfirmed keep
    # the "claude" row below. Longer ids first: "claude-opus-5-5" must not match "claude-opus-5".
    ("claude-opus-5-5", 1024),
    ("claude-fable-5-", 1024),
    ("claude-mythos-5-", 1024),
    ("claude-opus-5", 512),
    ("claude-fable-5", 512),
    ("claude-mythos-5", 512),
    ("claude-opus-4-6", 4096),
    ("claude-opus-4-5", 4096),
    ("claude-haiku-4-5", 4096),
    ("claude-sonnet-4-6", 2048),
    ("claude-3-5-haiku", 2048),
    ("claude-3-haiku", 2048),
    ("claude", 1024),
    ("gemini-2.5-pro", 4096),
    ("gemini-3-pro", 4096),
    ("gemini", 1024),
    ("", 1024),
)

# Fixed per-image estimates: the body rarely says the pixel size. OpenAI: a 1024x1024
# "high" image (85 + 4*170); Anthropic: ~(1092*1092)/750, the largest unresized image;
# Gemini: 258 per image (ai.google.dev token docs).
IMAGE_TOKENS = {"openai": 765, "openai_low": 85, "anthropic": 1590, "gemini": 258}
# A PDF/document whose text we cannot see: one page's worth, an estimate.
DOCUMENT_TOKENS = 1500

# Anthropic tool-use system prompt, added when `tools` is non-empty
# (docs.anthropic.com/en/docs/tool-use-pricing-and-tokens): (auto/none, any/tool).
_TOOL_PROMPT: tuple[tuple[str, tuple[int, int]], ...] = (
    ("claude-3-opus", (530, 281)),
    ("claude-3-sonnet", (159, 235)),
    ("claude-3-haiku", (264, 340)),
    ("claude-3-5-haiku", (264, 340)),
    ("claude", (346, 313)),
)

_ANTHROPIC_LOOKBACK_BLOCKS = 20
_ANTHROPIC_MAX_BREAKPOINTS = 4
_OPENAI_BLOCK = 128
# GPT-5.6+ lookup boundaries and writes (developers.openai.com/api/docs/guides/prompt-caching).
_OPENAI_EXPLICIT_LOOKUPS = 50
_OPENAI_IMPLICIT_LOOKBACK = 20
_OPENAI_MAX_LOOKUPS = 80
_OPENAI_MAX_WRITES = 4
_OPENAI_MAX_LIFETIME_S = 3600.0
_TTL_SECONDS = {"5m": 300.0, "1h": 3600.0, "30m": 1800.0, "24h": 86400.0}
_MAX_PROMPTS_PER_IDENTITY = 256

_SKIP_KEYS = frozenset({"cache_control", "prompt_cache_breakpoint", "cachePoint"})


def min_cacheable_tokens(model: str | None) -> int:
    """The provider's minimum cacheable prefix for ``model`` (local table, see above)."""
    m = (model or "").lower()
    return next(n for key, n in MIN_CACHEABLE_TOKENS if key in m)


class TooManyBreakpoints(ValueError):
    """More cache breakpoints than the provider accepts (Anthropic answers 400)."""


class BreakpointTtlOrder(ValueError):
    """A 1h breakpoint rendered after a 5m one: Anthropic (and Bedrock) answer 400, since
    entries with a longer TTL must come first (Anthropic docs, "Mixing different TTLs")."""


class MissReason(StrEnum):
    """Why a request read nothing from the cache."""

    BELOW_MINIMUM = "below_minimum"
    NO_BREAKPOINT = "no_breakpoint"
    FIRST_SIGHT = "first_sight"
    EXPIRED = "expired"
    PREFIX_DIVERGED = "prefix_diverged"
    LOOKBACK_EXCEEDED = "lookback_exceeded"
    UNKNOWN_CACHED_CONTENT = "unknown_cached_content"


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One piece of the rendered prompt.

    ``key`` is its content identity (markers excluded); ``block`` is the index of the
    content block it belongs to (the unit of Anthropic's lookback); ``text`` is what
    was tokenized, kept so two diverging segments can be compared token by token.
    """

    path: str
    key: str
    tokens: int
    block: int
    text: str = ""


@dataclass
class Rendered:
    """A request body rendered into the ordered segments the provider caches over."""

    provider: str
    model: str | None
    segments: list[Segment]
    # Breakpoints as (index of the last segment they close, ttl label), in order.
    breakpoints: list[tuple[int, str]]
    # Tokens after the last segment that are never cacheable (reply priming).
    tail_tokens: int
    counter: TokenCounter
    cache_key: str | None = None
    retention: str | None = None
    explicit_mode: bool = False
    cached_content: str | None = None
    #: OpenAI GPT-5.6+: the segment the implicit breakpoint closes (None: explicit mode, or none),
    #: and the other lookup boundaries implicit mode adds (earlier eligible message endings, the
    #: end of the initial developer block).
    implicit_at: int | None = None
    implicit_lookups: list[int] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    cumulative: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        h = hashlib.sha256(f"{self.provider}|{self.model}".encode())
        total = 0
        for seg in self.segments:
            h.update(seg.key.encode())
            h.update(b"\x00")
            self.hashes.append(h.copy().hexdigest())
            total += seg.tokens
            self.cumulative.append(total)

    @property
    def total_tokens(self) -> int:
        """Every prompt token, cached or not."""
        return (self.cumulative[-1] if self.cumulative else 0) + self.tail_tokens

    def prefix_tokens(self, n_segments: int) -> int:
        """Tokens in the first ``n_segments`` segments."""
        return self.cumulative[n_segments - 1] if n_segments > 0 else 0


def _canon(obj: Any) -> str:
    return json.dumps(_strip_markers(obj), sort_keys=True, ensure_ascii=False)


def _strip_markers(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_markers(v) for k, v in obj.items() if k not in _SKIP_KEYS}
    if isinstance(obj, list):
        return [_strip_markers(v) for v in obj]
    return obj


class _Builder:
    """Accumulates segments and breakpoints for one body."""

    def __init__(self, provider: str, model: str | None, counter: TokenCounter) -> None:
        self.provider = provider
        self.model = model
        self.counter = counter
        self.segments: list[Segment] = []
        self.breakpoints: list[tuple[int, str]] = []
        self.block = -1

    def new_block(self) -> None:
        self.block += 1

    def text(self, path: str, text: str, extra: int = 0) -> None:
        self.segments.append(
            Segment(path, "t:" + text, self.counter.count(text) + extra, max(self.block, 0), text)
        )

    def fixed(self, path: str, key: str, tokens: int) -> None:
        self.segments.append(Segment(path, key, tokens, max(self.block, 0)))

    def obj(self, path: str, obj: Any, extra: int = 0) -> None:
        """A structured piece (schema, tool call): counted as its compact JSON."""
        s = json.dumps(_strip_markers(obj), ensure_ascii=False, separators=(",", ":"))
        self.segments.append(
            Segment(path, "j:" + _canon(obj), self.counter.count(s) + extra, max(self.block, 0), s)
        )

    def mark(self, ttl: str) -> None:
        if self.segments:
            self.breakpoints.append((len(self.segments) - 1, ttl))

    def done(self, tail: int, **kw: Any) -> Rendered:
        return Rendered(self.provider, self.model, self.segments, self.breakpoints, tail, self.counter, **kw)


def _ttl_of(marker: Any, default: str = "5m") -> str:
    if isinstance(marker, dict) and isinstance(marker.get("ttl"), str):
        return str(marker["ttl"])
    return default


def _is_gpt56_or_later(model: str | None) -> bool:
    m = re.search(r"gpt-(\d+)(?:\.(\d+))?", (model or "").lower())
    if not m:
        return False
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    return (major, minor) >= (5, 6)


def _image_tokens(part: Json, provider: str) -> int:
    if provider == "openai":
        detail = (part.get("image_url") or {}) if isinstance(part.get("image_url"), dict) else {}
        return IMAGE_TOKENS["openai_low" if detail.get("detail") == "low" else "openai"]
    return IMAGE_TOKENS.get(provider, IMAGE_TOKENS["anthropic"])


def _openai_content(b: _Builder, path: str, content: Any, header: int) -> None:
    """One OpenAI message's content: header tokens ride on a fixed segment of their own."""
    if isinstance(content, str) or content is None:
        b.text(f"{path}.content", content or "")
        return
    for i, part in enumerate(content):
        p = f"{path}.content[{i}]"
        if not isinstance(part, dict):
            b.text(p, str(part))
            continue
        kind = part.get("type", "")
        if "text" in part and isinstance(part["text"], str):
            b.text(p, part["text"])
        elif kind in ("image_url", "input_image", "image"):
            b.fixed(p, "i:" + _canon(part), _image_tokens(part, "openai"))
        else:
            b.obj(p, part)
        if part.get("prompt_cache_breakpoint") is not None:
            b.mark("30m")


def _render_openai(fmt: WireFormat, body: Json, model: str | None, counter: TokenCounter) -> Rendered:
    b = _Builder("openai", model, counter)
    new = _is_gpt56_or_later(model)
    header, close, prime = (3, 1, 2) if new else (3, 1, 3)
    for i, tool in enumerate(body.get("tools") or []):
        b.new_block()
        b.obj(f"tools[{i}]", tool)
    fmt_schema = body.get("response_format") or (body.get("text") or {}).get("format")
    if isinstance(fmt_schema, dict) and fmt_schema.get("type") not in (None, "text"):
        b.new_block()
        b.obj("response_format", fmt_schema)

    messages: list[tuple[str, Json]] = []
    if fmt is WireFormat.OPENAI_CHAT:
        messages = [(f"messages[{i}]", m) for i, m in enumerate(body.get("messages") or [])]
    else:
        if isinstance(body.get("instructions"), str):
            messages.append(("instructions", {"role": "system", "content": body["instructions"]}))
        inp = body.get("input")
        if isinstance(inp, str):
            messages.append(("input", {"role": "user", "content": inp}))
        else:
            messages += [(f"input[{i}]", m) for i, m in enumerate(inp or [])]

    eligible: list[int] = []  # segment closing each eligible message (GPT-5.6 implicit mode)
    dev_end: int | None = None
    in_dev_block = True
    for k, (path, msg) in enumerate(messages):
        b.new_block()
        role = str(msg.get("role") or msg.get("type") or "user")
        b.fixed(f"{path}.header", f"h:{role}", header)
        kind = msg.get("type")
        if kind == "function_call_output":
            # The output is text the model reads: a string and one input_text part holding it
            # render alike (what a breakpoint on a tool result needs, the guide's agent example).
            b.obj(f"{path}", {k: v for k, v in msg.items() if k not in ("id", "status", "output")})
            _openai_content(b, f"{path}.output", msg.get("output"), header)
        elif kind in ("function_call", "custom_tool_call"):
            b.obj(f"{path}", {k: v for k, v in msg.items() if k not in ("id", "status")})
        elif role == "assistant":
            # Assistant output cannot carry a breakpoint (the guide: breakpoints go on content
            # blocks of input messages): a marker there is not one.
            n_marks = len(b.breakpoints)
            _openai_content(b, path, msg.get("content"), header)
            del b.breakpoints[n_marks:]
            if msg.get("name"):
                b.text(f"{path}.name", str(msg["name"]))
            for j, call in enumerate(msg.get("tool_calls") or []):
                b.obj(f"{path}.tool_calls[{j}]", call.get("function", call))
        else:
            _openai_content(b, path, msg.get("content"), header)
            if msg.get("name"):
                b.text(f"{path}.name", str(msg["name"]))
        b.fixed(f"{path}.close", "c", close)
        end = len(b.segments) - 1
        dev = path != "instructions" and role in ("developer", "system")
        if in_dev_block and dev:
            dev_end = end
        in_dev_block = in_dev_block and (dev or path == "instructions")
        tool = role == "tool" or kind == "function_call_output"
        nxt = messages[k + 1][1] if k + 1 < len(messages) else None
        nxt_tool = nxt is not None and (
            nxt.get("role") == "tool" or nxt.get("type") == "function_call_output"
        )
        if role == "user" or (tool and not nxt_tool) or (dev and end == dev_end):
            eligible.append(end)
    opts = body.get("prompt_cache_options") or {}
    explicit = isinstance(opts, dict) and opts.get("mode") == "explicit"
    implicit_at: int | None = None
    lookups: list[int] = []
    if new and eligible and not explicit:
        # developers.openai.com/api/docs/guides/prompt-caching (GPT-5.6 and later, read
        # 2026-12-07): the implicit breakpoint ends the latest eligible message (a user message,
        # the last of a run of tool results, the last developer message of the initial block);
        # lookups also try up to 20 earlier eligible endings and the initial developer block's end.
        implicit_at = eligible[-1]
        b.breakpoints.append((implicit_at, str(opts.get("ttl", "30m"))))
        b.breakpoints.sort()
        lookups = eligible[-1 - _OPENAI_IMPLICIT_LOOKBACK : -1]
        if dev_end is not None:
            lookups.append(dev_end)
    retention = body.get("prompt_cache_retention")
    return b.done(
        prime,
        cache_key=body.get("prompt_cache_key"),
        retention=str(retention) if retention else None,
        explicit_mode=explicit,
        implicit_at=implicit_at,
        implicit_lookups=sorted(set(lookups)),
    )


def _anthropic_block(b: _Builder, path: str, block: Any, provider: str, extra: int) -> None:
    if isinstance(block, str):
        b.text(path, block, extra)
        return
    kind = block.get("type")
    if kind == "text":
        b.text(path, str(block.get("text", "")), extra)
    elif kind == "image":
        b.fixed(path, "i:" + _canon(block), _image_tokens(block, provider) + extra)
    elif kind == "document":
        src = block.get("source") or {}
        if src.get("type") == "text" and isinstance(src.get("data"), str):
            b.text(path, src["data"], extra)
        else:
            b.fixed(path, "d:" + _canon(block), DOCUMENT_TOKENS + extra)
    elif kind == "tool_result" and isinstance(block.get("content"), str):
        b.text(path, block["content"], extra)
    else:
        # tool_use input, tool_result parts, thinking, search results: their JSON.
        b.obj(path, block, extra)


def _tool_prompt_tokens(model: str | None, tool_choice: Any) -> int:
    m = (model or "").lower()
    forced = isinstance(tool_choice, dict) and tool_choice.get("type") in ("any", "tool")
    auto, forced_n = next((v for k, v in _TOOL_PROMPT if k in m), (346, 313))
    return forced_n if forced else auto


def _deferred(tool: Any) -> bool:
    return isinstance(tool, dict) and tool.get("defer_loading") is True


def _render_anthropic(body: Json, model: str | None, counter: TokenCounter) -> Rendered:
    b = _Builder("anthropic", model, counter)
    extra = 1  # start-of-prompt token, carried by the first block
    tools = body.get("tools") or []
    # A tool declared with defer_loading is not part of the rendered prompt until a
    # tool_addition block offers it (anthropic SDK BetaToolParam.defer_loading; platform.claude.com
    # mid-conversation-system-messages, read 2026-12-07): it is rendered there, in the messages.
    deferred = {str(t.get("name")): t for t in tools if _deferred(t)}
    if len(deferred) < len(tools):
        extra += _tool_prompt_tokens(model, body.get("tool_choice"))
    for i, tool in enumerate(tools):
        if _deferred(tool):
            continue
        b.new_block()
        b.obj(f"tools[{i}]", tool, extra)
        extra = 0
        if isinstance(tool, dict) and tool.get("cache_control"):
            b.mark(_ttl_of(tool["cache_control"]))
    system = body.get("system")
    if isinstance(system, str) and system:
        b.new_block()
        b.text("system", system, extra)
        extra = 0
    elif isinstance(system, list):
        for i, blk in enumerate(system):
            b.new_block()
            _anthropic_block(b, f"system[{i}]", blk, "anthropic", extra)
            extra = 0
            if isinstance(blk, dict) and blk.get("cache_control"):
                b.mark(_ttl_of(blk["cache_control"]))
    for i, msg in enumerate(body.get("messages") or []):
        content = msg.get("content")
        blocks = [content] if isinstance(content, str) else list(content or [])
        framing = 3  # role header, carried by the message's first block
        for j, blk in enumerate(blocks):
            b.new_block()
            shown = blk
            if isinstance(blk, dict) and blk.get("type") == "tool_addition":
                ref = blk.get("tool")
                ref = ref if isinstance(ref, dict) else {}
                offered = deferred.get(str(ref.get("name")), ref)
                shown = {"type": "tool_addition", "tool": _strip_markers(offered)}
            _anthropic_block(b, f"messages[{i}].content[{j}]", shown, "anthropic", extra + framing)
            extra = framing = 0
            if isinstance(blk, dict) and blk.get("cache_control"):
                b.mark(_ttl_of(blk["cache_control"]))
    top = body.get("cache_control")
    if isinstance(top, dict) and b.segments:
        # automatic caching: a breakpoint on the last cacheable block.
        b.breakpoints = sorted({*b.breakpoints, (len(b.segments) - 1, _ttl_of(top))})
    return b.done(3)


def _converse_block(b: _Builder, path: str, blk: Json, extra: int) -> None:
    if "text" in blk:
        b.text(path, str(blk["text"]), extra)
    elif "image" in blk:
        b.fixed(path, "i:" + _canon(blk), IMAGE_TOKENS["anthropic"] + extra)
    elif "document" in blk:
        doc = blk["document"]
        raw = (doc.get("source") or {}).get("bytes")
        if doc.get("format") in ("txt", "md", "csv", "html") and isinstance(raw, str):
            try:
                text = base64.b64decode(raw).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                text = raw
            b.segments.append(Segment(path, "d:" + _canon(blk), b.counter.count(text) + extra, b.block, text))
        else:
            b.fixed(path, "d:" + _canon(blk), DOCUMENT_TOKENS + extra)
    else:
        b.obj(path, blk, extra)


def _render_converse(body: Json, model: str | None, counter: TokenCounter) -> Rendered:
    b = _Builder("anthropic", model, counter)
    extra = 1
    tools = (body.get("toolConfig") or {}).get("tools") or []
    if any("toolSpec" in t for t in tools):
        extra += _tool_prompt_tokens(model, (body.get("toolConfig") or {}).get("toolChoice"))
    for i, tool in enumerate(tools):
        if "cachePoint" in tool:
            b.mark(_ttl_of(tool["cachePoint"]))
            continue
        b.new_block()
        b.obj(f"toolConfig.tools[{i}]", tool, extra)
        extra = 0
    for i, blk in enumerate(body.get("system") or []):
        if "cachePoint" in blk:
            b.mark(_ttl_of(blk["cachePoint"]))
            continue
        b.new_block()
        _converse_block(b, f"system[{i}]", blk, extra)
        extra = 0
    for i, msg in enumerate(body.get("messages") or []):
        framing = 3
        for j, blk in enumerate(msg.get("content") or []):
            if "cachePoint" in blk:
                b.mark(_ttl_of(blk["cachePoint"]))
                continue
            b.new_block()
            _converse_block(b, f"messages[{i}].content[{j}]", blk, extra + framing)
            extra = framing = 0
    return b.done(3)


def _gemini_parts(b: _Builder, path: str, parts: Sequence[Any], extra: int) -> None:
    for j, part in enumerate(parts):
        p = f"{path}.parts[{j}]"
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            b.text(p, part["text"], extra)
        elif isinstance(part, dict) and ("inlineData" in part or "fileData" in part):
            b.fixed(p, "i:" + _canon(part), IMAGE_TOKENS["gemini"] + extra)
        else:
            b.obj(p, part, extra)
        extra = 0
    if not parts and extra:
        b.fixed(path, "e", extra)


def _render_gemini(body: Json, model: str | None, counter: TokenCounter) -> Rendered:
    b = _Builder("gemini", model, counter)
    si = body.get("systemInstruction") or body.get("system_instruction")
    if isinstance(si, dict):
        b.new_block()
        _gemini_parts(b, "systemInstruction", si.get("parts") or [], 1)
    for i, tool in enumerate(body.get("tools") or []):
        b.new_block()
        b.obj(f"tools[{i}]", tool)
    for i, content in enumerate(body.get("contents") or []):
        b.new_block()
        _gemini_parts(b, f"contents[{i}]", content.get("parts") or [], 1)
    cc = body.get("cachedContent") or body.get("cached_content")
    return b.done(0, cached_content=str(cc) if cc else None)


def render(fmt: str | WireFormat, body: Json, model: str | None = None) -> Rendered:
    """Render ``body`` (as sent on the wire) into cacheable segments and breakpoints.

    ``model`` is used when the body does not name one (Bedrock and Gemini put it in the URL).
    """
    wf = parse_format(fmt)
    m = str(body.get("model") or model or "") or None
    counter = counter_for_model(m, wf.provider)
    if wf in (WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES):
        return _render_openai(wf, body, m, counter)
    if wf is WireFormat.ANTHROPIC_MESSAGES:
        return _render_anthropic(body, m, counter)
    if wf is WireFormat.BEDROCK_CONVERSE:
        return _render_converse(body, m, counter)
    return _render_gemini(body, m, counter)


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


class SimResult(BaseModel):
    """What the provider would have reported for one request, and why it missed."""

    model_config = ConfigDict(frozen=True)

    usage: CacheUsage
    hit: bool = Field(description="some prompt tokens were read from the cache")
    miss_reason: MissReason | None = None
    diverged_at_segment: int | None = Field(
        default=None, description="first segment differing from the closest earlier prompt"
    )
    diverged_path: str | None = Field(default=None, description="e.g. messages[0].content[1]")
    segments: int = 0
    breakpoints: int = 0
    tokens_exact: bool = Field(default=False, description="counts come from the real tokenizer")
    detail: str = ""


class Request(BaseModel):
    """One request of a trace for :func:`simulate`."""

    ts: float
    format: WireFormat
    body: Json
    org: str | None = None
    route: str | None = None


# ---------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------


@dataclass
class _Entry:
    """A cached prefix: alive until ``expires``; ``ttl_s`` is its idle lifetime."""

    tokens: int
    ttl_s: float
    expires: float
    hard_expiry: float = float("inf")
    block: int = 0

    def alive(self, ts: float) -> bool:
        return ts <= min(self.expires, self.hard_expiry)

    def touch(self, ts: float) -> None:
        self.expires = max(self.expires, ts + self.ttl_s)


@dataclass
class _Prompt:
    """A prompt OpenAI/Gemini implicit caching holds (token-level prefix matching)."""

    rendered: Rendered
    entry: _Entry


@dataclass
class _CachedContent:
    rendered: Rendered
    tokens: int
    expires: float
    org: str | None


@lru_cache(maxsize=1024)
def _tokens(encoding_name: str, text: str) -> tuple[int, ...]:
    # A new prompt is compared with up to _MAX_PROMPTS_PER_IDENTITY earlier ones: each text is
    # encoded once, not once per comparison (the emulator under load spent its time here).
    return tuple(encoding(Encoding(encoding_name)).encode_ordinary(text))


def _common_prefix(a: Rendered, b: Rendered) -> tuple[int, int]:
    """(matching whole segments, matching tokens incl. a partially equal text segment)."""
    n = 0
    for ha, hb in zip(a.hashes, b.hashes, strict=False):
        if ha != hb:
            break
        n += 1
    tokens = a.prefix_tokens(n)
    if n < len(a.segments) and n < len(b.segments):
        sa, sb = a.segments[n], b.segments[n]
        if sa.text and sb.text and a.counter.encoding.value != "chars/4":
            ta, tb = _tokens(a.counter.encoding.value, sa.text), _tokens(a.counter.encoding.value, sb.text)
            k = 0
            for x, y in zip(ta, tb, strict=False):
                if x != y:
                    break
                k += 1
            tokens += round(k * a.counter.scale)
    elif n == len(a.segments) == len(b.segments) and a.tail_tokens == b.tail_tokens:
        tokens += a.tail_tokens  # identical prompts: the reply priming matches too
    return n, tokens


class Simulator:
    """Per-organization provider prompt-cache state, fed one request at a time.

    ``provider`` only checks that fed formats belong to it; ``model`` is the default for
    bodies that do not name their model. ``feed(..., org=...)`` keeps organizations
    apart (provider caches never cross them); ``route`` is an optional replay hint —
    e.g. OpenAI's ``system_fingerprint`` from a recorded response — naming the backend
    that served the call, whose cache is the only one it can read.
    """

    def __init__(
        self,
        provider: str | None = None,
        model: str | None = None,
        *,
        openai_idle_ttl_s: float = 300.0,
        gemini_implicit_ttl_s: float = 300.0,
    ) -> None:
        """Start with empty caches."""
        self.provider = provider
        self.model = model
        self.openai_idle_ttl_s = openai_idle_ttl_s
        self.gemini_implicit_ttl_s = gemini_implicit_ttl_s
        self._entries: dict[tuple[str | None, str], _Entry] = {}
        self._prompts: dict[tuple[Any, ...], list[_Prompt]] = {}
        self._contents: dict[str, _CachedContent] = {}
        self._seen: dict[tuple[Any, ...], list[Rendered]] = {}

    # -- public -------------------------------------------------------------------------

    def feed(
        self,
        ts: float,
        fmt: str | WireFormat,
        body: Json,
        *,
        org: str | None = None,
        route: str | None = None,
        model: str | None = None,
    ) -> SimResult:
        """Simulate one request sent at ``ts`` (seconds) and update the cache state."""
        wf = parse_format(fmt)
        if (
            self.provider
            and wf.provider != self.provider
            and not (self.provider == "bedrock" and wf is WireFormat.ANTHROPIC_MESSAGES)
        ):
            raise ValueError(f"{wf.value} is not a {self.provider} format")
        r = render(wf, body, model or self.model)
        if len(r.breakpoints) > _ANTHROPIC_MAX_BREAKPOINTS and r.provider == "anthropic":
            raise TooManyBreakpoints(
                f"{len(r.breakpoints)} cache breakpoints; the provider accepts at most 4"
            )
        if r.provider == "anthropic":
            ttls = [ttl for _, ttl in sorted(r.breakpoints)]
            if any(a != "1h" and b == "1h" for a, b in itertools.pairwise(ttls)):
                raise BreakpointTtlOrder(
                    "a 1h cache_control breakpoint comes after a 5m one; longer TTLs must come first"
                )
            return self._anthropic(ts, r, org)
        if r.provider == "openai" and _is_gpt56_or_later(r.model):
            return self._breakpoint_openai(ts, r, org, route)
        if r.provider == "gemini" and r.cached_content:
            return self._gemini_explicit(ts, r, org)
        return self._implicit(ts, r, org, route)

    def create_cached_content(
        self, ts: float, body: Json, *, name: str | None = None, org: str | None = None
    ) -> str:
        """Gemini ``POST cachedContents``: store ``body``'s contents; returns the cache name."""
        r = render(WireFormat.GEMINI, body, self.model)
        ttl = _parse_duration(str(body.get("ttl", "3600s")))
        key = name or f"cachedContents/{r.hashes[-1][:16] if r.hashes else 'empty'}"
        self._contents[key] = _CachedContent(r, r.total_tokens, ts + ttl, org)
        return key

    def delete_cached_content(self, name: str) -> None:
        """Gemini ``DELETE cachedContents/...``."""
        self._contents.pop(name, None)

    def feed_all(self, requests: Iterable[Request | tuple[Any, ...]]) -> list[SimResult]:
        """Feed a whole trace in order; tuples are ``(ts, format, body[, org])``."""
        out = []
        for req in requests:
            if not isinstance(req, Request):
                ts, fmt, body, *rest = req
                req = Request(ts=ts, format=parse_format(fmt), body=body, org=rest[0] if rest else None)
            out.append(self.feed(req.ts, req.format, req.body, org=req.org, route=req.route))
        return out

    # -- helpers ------------------------------------------------------------------------

    def _usage(self, r: Rendered, read: int, write_by_ttl: dict[str, int]) -> CacheUsage:
        return CacheUsage(
            provider=r.provider,
            model=r.model,
            input_tokens=r.total_tokens,
            cache_read_tokens=read,
            cache_write_tokens=sum(write_by_ttl.values()),
            cache_write_tokens_by_ttl={k: v for k, v in write_by_ttl.items() if v},
        )

    def _divergence(self, ident: tuple[Any, ...], r: Rendered) -> tuple[int | None, str | None]:
        """First differing segment against the earlier prompt sharing the most of it."""
        best = -1
        for prev in self._seen.get(ident, []):
            n, _ = _common_prefix(r, prev)
            best = max(best, n)
        if best < 0 or best >= len(r.segments):
            return None, None
        return best, r.segments[best].path

    def _remember(self, ident: tuple[Any, ...], r: Rendered) -> None:
        seen = self._seen.setdefault(ident, [])
        seen.append(r)
        del seen[:-_MAX_PROMPTS_PER_IDENTITY]

    def _result(
        self,
        ident: tuple[Any, ...],
        r: Rendered,
        read: int,
        writes: dict[str, int],
        reason: MissReason | None,
        detail: str,
    ) -> SimResult:
        at, path = (None, None)
        if reason is MissReason.PREFIX_DIVERGED or (reason is None and read == 0):
            at, path = self._divergence(ident, r)
        result = SimResult(
            usage=self._usage(r, read, writes),
            hit=read > 0,
            miss_reason=None if read > 0 else reason,
            diverged_at_segment=at,
            diverged_path=path,
            segments=len(r.segments),
            breakpoints=len(r.breakpoints),
            tokens_exact=r.counter.exact,
            detail=detail,
        )
        self._remember(ident, r)
        return result

    # -- Anthropic / Bedrock: explicit breakpoints ---------------------------------------

    def _anthropic(self, ts: float, r: Rendered, org: str | None) -> SimResult:
        # platform.claude.com/docs/en/build-with-claude/prompt-caching: breakpoints,
        # ~20-block lookback, per-model minimum, TTL refreshed on each hit.
        ident: tuple[Any, ...] = ("anthropic", org, r.model)
        minimum = min_cacheable_tokens(r.model)
        if not r.breakpoints:
            return self._result(ident, r, 0, {}, MissReason.NO_BREAKPOINT, "no cache_control")
        cacheable = [(i, t) for i, t in r.breakpoints if r.cumulative[i] >= minimum]
        if not cacheable:
            return self._result(
                ident,
                r,
                0,
                {},
                MissReason.BELOW_MINIMUM,
                f"longest marked prefix {r.cumulative[r.breakpoints[-1][0]]} < {minimum}",
            )
        read_seg, expired, out_of_reach = -1, False, False
        for bp, _ in cacheable:
            bp_block = r.segments[bp].block
            for j in range(bp, -1, -1):
                if r.segments[j].block < bp_block - _ANTHROPIC_LOOKBACK_BLOCKS:
                    # still look further back, but only to explain a miss.
                    e = self._entries.get((org, r.hashes[j]))
                    out_of_reach = out_of_reach or bool(e and e.alive(ts))
                    continue
                if j < len(r.segments) - 1 and r.segments[j + 1].block == r.segments[j].block:
                    continue  # not a block boundary
                e = self._entries.get((org, r.hashes[j]))
                if e is None:
                    continue
                if not e.alive(ts):
                    expired = True
                    continue
                if j > read_seg:
                    read_seg = j
                break
        read = r.cumulative[read_seg] if read_seg >= 0 else 0
        if read_seg >= 0:
            self._entries[(org, r.hashes[read_seg])].touch(ts)
        writes: dict[str, int] = {}
        prev = read
        for bp, ttl in cacheable:
            end = r.cumulative[bp]
            if end > prev:
                writes[ttl] = writes.get(ttl, 0) + end - prev
                prev = end
            key = (org, r.hashes[bp])
            e = self._entries.get(key)
            ttl_s = _TTL_SECONDS.get(ttl, 300.0)
            if e is None or not e.alive(ts):
                self._entries[key] = _Entry(end, ttl_s, ts + ttl_s, block=r.segments[bp].block)
            else:
                e.ttl_s = max(e.ttl_s, ttl_s)
                e.touch(ts)
        if read:
            reason = None
        elif out_of_reach:
            reason = MissReason.LOOKBACK_EXCEEDED
        elif expired:
            reason = MissReason.EXPIRED
        elif self._seen.get(ident):
            reason = MissReason.PREFIX_DIVERGED
        else:
            reason = MissReason.FIRST_SIGHT
        return self._result(ident, r, read, writes, reason, "")

    # -- OpenAI GPT-5.6+: breakpoints, exact match, no lookback limit -------------------

    def _breakpoint_openai(self, ts: float, r: Rendered, org: str | None, route: str | None) -> SimResult:
        # developers.openai.com/api/docs/guides/prompt-caching ("GPT-5.6 and later", "How prefix
        # matching works", read 2026-12-07): a request looks a prefix up only at its own lookup
        # boundaries, longest first: explicit-only mode the first 2 and latest 50 explicit
        # breakpoints; implicit mode those, the implicit breakpoint, up to 20 earlier eligible
        # message endings and the end of the initial developer block. The prompt_cache_options
        # reference caps matching at the latest 80 breakpoints, which that set stays within.
        # Writes: up to 4 per request, the implicit breakpoint taking one; TTL 30 min; reported.
        ident: tuple[Any, ...] = ("openai", org, r.model, r.cache_key, route)
        scope = "|".join(str(x) for x in ident)
        minimum = min_cacheable_tokens(r.model)
        if r.total_tokens < minimum:
            return self._result(ident, r, 0, {}, MissReason.BELOW_MINIMUM, "")
        if not r.breakpoints:
            return self._result(ident, r, 0, {}, MissReason.NO_BREAKPOINT, "explicit mode")
        explicit = [bp for bp, _ in r.breakpoints if bp != r.implicit_at]
        ttl_of = dict(r.breakpoints)
        lookup = set(explicit[:2] + explicit[-_OPENAI_EXPLICIT_LOOKUPS:])
        if r.implicit_at is not None:
            lookup |= {r.implicit_at, *r.implicit_lookups}
        boundaries = sorted(lookup)[-_OPENAI_MAX_LOOKUPS:]
        read, expired = 0, False
        for j in reversed(boundaries):
            e = self._entries.get((scope, r.hashes[j]))
            if e is None:
                continue
            if e.alive(ts):
                read = r.cumulative[j]
                e.touch(ts)
                break
            expired = True
        written = explicit[-(_OPENAI_MAX_WRITES - (r.implicit_at is not None)) :]
        if r.implicit_at is not None:
            written = sorted({*written, r.implicit_at})
        writes: dict[str, int] = {}
        prev = read
        for bp in written:
            end = r.cumulative[bp]
            if end < minimum:
                continue
            ttl = ttl_of.get(bp, "30m")
            if end > prev:
                writes[ttl] = writes.get(ttl, 0) + end - prev
                prev = end
            ttl_s = _TTL_SECONDS.get(ttl, 1800.0)
            key = (scope, r.hashes[bp])
            e = self._entries.get(key)
            if e is None or not e.alive(ts):
                self._entries[key] = _Entry(end, ttl_s, ts + ttl_s)
            else:
                e.touch(ts)
        reason = self._reason(ident, read, expired)
        return self._result(ident, r, read, writes, reason, "")

    def _reason(self, ident: tuple[Any, ...], read: int, expired: bool) -> MissReason | None:
        if read:
            return None
        if expired:
            return MissReason.EXPIRED
        return MissReason.PREFIX_DIVERGED if self._seen.get(ident) else MissReason.FIRST_SIGHT

    # -- OpenAI (before GPT-5.6) and Gemini implicit: token-level prefix ----------------

    def _implicit(self, ts: float, r: Rendered, org: str | None, route: str | None) -> SimResult:
        # OpenAI: developers.openai.com/api/docs/guides/prompt-caching ("exact prefix
        # matches", "1024 tokens or longer", "increments of 128 tokens", in-memory 5-10
        # min idle / 1 h max, 24h extended retention). Gemini: ai.google.dev caching docs.
        ident: tuple[Any, ...] = (r.provider, org, r.model, r.cache_key, route)
        minimum = min_cacheable_tokens(r.model)
        total = r.total_tokens
        prompts = self._prompts.setdefault(ident, [])
        best, expired = 0, False
        best_prompt: _Prompt | None = None
        for p in prompts:
            _, common = _common_prefix(r, p.rendered)
            if not p.entry.alive(ts):
                expired = expired or common >= minimum
                continue
            if common > best:
                best, best_prompt = common, p
        common = min(best, total)
        if r.provider == "openai":
            read = (common // _OPENAI_BLOCK) * _OPENAI_BLOCK if common >= minimum else 0
        else:
            read = common if common >= minimum else 0
        if read and best_prompt is not None:
            best_prompt.entry.touch(ts)
        if total >= minimum:
            if r.provider == "openai" and r.retention == "24h":
                ttl_s, hard = _TTL_SECONDS["24h"], ts + _TTL_SECONDS["24h"]
            elif r.provider == "openai":
                ttl_s, hard = self.openai_idle_ttl_s, ts + _OPENAI_MAX_LIFETIME_S
            else:
                ttl_s, hard = self.gemini_implicit_ttl_s, float("inf")
            prompts.append(_Prompt(r, _Entry(total, ttl_s, ts + ttl_s, hard)))
            prompts[:] = [p for p in prompts if p.entry.alive(ts)][-_MAX_PROMPTS_PER_IDENTITY:]
        if total < minimum:
            reason: MissReason | None = MissReason.BELOW_MINIMUM
            detail = f"{total} prompt tokens < {minimum}"
        elif not read and best and best < minimum:
            reason, detail = MissReason.PREFIX_DIVERGED, f"common prefix {best} < {minimum}"
        else:
            reason, detail = self._reason(ident, read, expired), ""
        return self._result(ident, r, read, {}, reason, detail)

    # -- Gemini explicit cached contents -------------------------------------------------

    def _gemini_explicit(self, ts: float, r: Rendered, org: str | None) -> SimResult:
        # ai.google.dev/gemini-api/docs/caching: the cached tokens are read in full on
        # every request naming the cache, until its TTL/expireTime.
        ident: tuple[Any, ...] = ("gemini", org, r.model, r.cached_content)
        name = r.cached_content or ""
        cc = self._contents.get(name)
        if cc is None or cc.org != org:
            reason = MissReason.UNKNOWN_CACHED_CONTENT
            return self._result(ident, r, 0, {}, reason, f"{name} was never created")
        combined = Rendered(
            "gemini",
            r.model,
            cc.rendered.segments + r.segments,
            [],
            r.tail_tokens,
            r.counter,
        )
        if ts > cc.expires:
            return self._result(ident, combined, 0, {}, MissReason.EXPIRED, f"{name} expired")
        return self._result(ident, combined, cc.tokens, {}, None, name)


def _parse_duration(s: str) -> float:
    """``"120s"`` / ``"3.5s"`` (protobuf Duration as JSON) to seconds."""
    m = re.fullmatch(r"\s*([0-9.]+)s\s*", s)
    if not m:
        raise ValueError(f"not a duration: {s!r}")
    return float(m.group(1))


def simulate(
    requests: Iterable[Request | tuple[Any, ...]],
    *,
    provider: str | None = None,
    model: str | None = None,
) -> list[SimResult]:
    """Run a fresh :class:`Simulator` over ``requests`` (in order) and return every result."""
    return Simulator(provider=provider, model=model).feed_all(requests)
