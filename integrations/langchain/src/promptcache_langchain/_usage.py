"""Read a chat model's cache usage from LangChain messages, as the provider reported it.

Two sources, best first:

1. the provider's own usage object, which LangChain keeps in ``response_metadata`` of a
   non-streamed answer (``token_usage`` for OpenAI Chat, ``usage`` for Anthropic and OpenAI
   Responses); it is parsed by ``promptcache.usage_from_response`` so every provider quirk is
   handled in one place;
2. LangChain's normalized ``usage_metadata`` (what streamed answers carry): ``input_tokens``
   counts every prompt token and ``input_token_details`` has ``cache_read``/``cache_creation``
   and, for Anthropic, the ``ephemeral_5m/1h_input_tokens`` split.

Nothing is estimated: a message with neither gives ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.messages import BaseMessage

from promptcache import CacheUsage, WireFormat, usage_from_response

__all__ = ["provider_of", "usage_from_message"]

_PROVIDERS = {"openai", "anthropic", "bedrock", "gemini", "google_genai", "azure"}


def provider_of(message: BaseMessage, fmt: WireFormat | None) -> str:
    """The provider family of an answer: from the wire format, else LangChain's ``model_provider``."""
    if fmt is not None:
        return fmt.provider
    p = message.response_metadata.get("model_provider")
    if isinstance(p, str) and p:
        return {"google_genai": "gemini", "azure": "openai", "bedrock_converse": "bedrock"}.get(p, p)
    return "unknown"


def _model_of(message: BaseMessage) -> str | None:
    md = message.response_metadata
    for k in ("model_name", "model", "model_id"):
        v = md.get(k)
        if isinstance(v, str) and v:
            return v
    return None


def _from_raw(message: BaseMessage, fmt: WireFormat | None) -> CacheUsage | None:
    md = message.response_metadata
    model = _model_of(message)
    raw: Any = None
    if fmt is WireFormat.OPENAI_CHAT or (fmt is None and "token_usage" in md):
        raw = md.get("token_usage")
        fmt = WireFormat.OPENAI_CHAT
    elif fmt in (WireFormat.ANTHROPIC_MESSAGES, WireFormat.OPENAI_RESPONSES):
        raw = md.get("usage")
    if fmt is None:
        return None
    if type(raw) is dict:
        fast = _fast(fmt, raw, model)
        if fast is not None:
            return fast
    elif not isinstance(raw, Mapping):
        return None
    try:
        return usage_from_response(fmt, {"model": model, "usage": dict(raw)}, model=model)
    except ValueError:
        # A usage shape this version of the parser does not know: fall back to usage_metadata.
        return None


# -- the usual shapes, read without the general parser ----------------------------------------
#
# Every answer's usage is read on the call path. The plain shapes of OpenAI and Anthropic usage
# (integer counts, the sub-objects the providers document) are read here directly; whatever else
# (a float count, a bool, a negative, an unknown TTL key, counts that do not add up) goes to
# ``usage_from_response``, which converts it or refuses it with the reason. Same results: the
# tests compare both on generated usage.

# (prompt, output, prompt details, output details) keys of OpenAI Chat and Responses usage.
_OPENAI_KEYS = {
    WireFormat.OPENAI_CHAT: (
        "prompt_tokens",
        "completion_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    ),
    WireFormat.OPENAI_RESPONSES: (
        "input_tokens",
        "output_tokens",
        "input_tokens_details",
        "output_tokens_details",
    ),
}
_ANTHROPIC_TTLS = {"ephemeral_5m_input_tokens": "5m", "ephemeral_1h_input_tokens": "1h"}


def _n(value: Any) -> int:
    """An optional count as the parser reads it (None is 0); -1 when the parser must decide."""
    if value is None:
        return 0
    return value if type(value) is int and value >= 0 else -1


def _fast(fmt: WireFormat, raw: dict[str, Any], model: str | None) -> CacheUsage | None:
    keys = _OPENAI_KEYS.get(fmt)
    if keys is not None:
        return _openai(raw, keys, model)
    if fmt is WireFormat.ANTHROPIC_MESSAGES:
        return _anthropic(raw, model)
    return None


def _openai(raw: dict[str, Any], keys: tuple[str, str, str, str], model: str | None) -> CacheUsage | None:
    prompt, output = raw.get(keys[0]), raw.get(keys[1])
    if type(prompt) is not int or type(output) is not int or prompt < 0 or output < 0:
        return None
    read = write = reasoning = 0
    details = raw.get(keys[2])
    if details is not None:
        if type(details) is not dict:
            return None
        read, write = _n(details.get("cached_tokens")), _n(details.get("cache_write_tokens"))
    out_details = raw.get(keys[3])
    if out_details is not None:
        if type(out_details) is not dict:
            return None
        reasoning = _n(out_details.get("reasoning_tokens"))
    if read < 0 or write < 0 or reasoning < 0 or read + write > prompt:
        return None
    return CacheUsage.fast(
        provider="openai",
        model=model,
        input_tokens=prompt,
        cache_read_tokens=read,
        cache_write_tokens=write,
        output_tokens=output,
        thinking_tokens=min(reasoning, output),
    )


def _anthropic(raw: dict[str, Any], model: str | None) -> CacheUsage | None:
    uncached, output = raw.get("input_tokens"), raw.get("output_tokens")
    if type(uncached) is not int or type(output) is not int or uncached < 0 or output < 0:
        return None
    read, write = _n(raw.get("cache_read_input_tokens")), _n(raw.get("cache_creation_input_tokens"))
    if read < 0 or write < 0:
        return None
    by_ttl: dict[str, int] = {}
    breakdown = raw.get("cache_creation")
    if breakdown is not None:
        if type(breakdown) is not dict:
            return None
        for key, value in breakdown.items():
            ttl, n = _ANTHROPIC_TTLS.get(key), _n(value)
            if ttl is None or n < 0:
                return None
            if n:
                by_ttl[ttl] = n
        split = sum(by_ttl.values())
        if raw.get("cache_creation_input_tokens") is None:
            write = split
        elif split != write:
            return None
    return CacheUsage.fast(
        provider="anthropic",
        model=model,
        input_tokens=uncached + read + write,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_tokens_by_ttl=by_ttl,
        output_tokens=output,
    )


def _from_usage_metadata(message: BaseMessage, fmt: WireFormat | None) -> CacheUsage | None:
    um = getattr(message, "usage_metadata", None)
    if not um:
        return None
    details: Mapping[str, Any] = um.get("input_token_details") or {}
    out_details: Mapping[str, Any] = um.get("output_token_details") or {}
    read = int(details.get("cache_read") or 0)
    ttl = {
        label: int(details.get(f"ephemeral_{label}_input_tokens") or 0)
        for label in ("5m", "1h")
        if details.get(f"ephemeral_{label}_input_tokens")
    }
    # langchain-anthropic zeroes ``cache_creation`` when it reports the 5m/1h split (to avoid
    # double counting), so the writes are the generic figure plus the split.
    write = int(details.get("cache_creation") or 0) + sum(ttl.values())
    total_in = int(um.get("input_tokens") or 0)
    try:
        return CacheUsage(
            provider=provider_of(message, fmt),
            model=_model_of(message),
            input_tokens=max(total_in, read + write),
            cache_read_tokens=read,
            cache_write_tokens=write,
            cache_write_tokens_by_ttl=ttl,
            output_tokens=int(um.get("output_tokens") or 0),
            thinking_tokens=int(out_details.get("reasoning") or 0),
        )
    except ValueError:
        return None


def usage_from_message(message: BaseMessage, fmt: WireFormat | None = None) -> CacheUsage | None:
    """The provider usage of one answer, or ``None`` when the answer carries none."""
    return _from_raw(message, fmt) or _from_usage_metadata(message, fmt)
