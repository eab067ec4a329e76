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
    # type() first: isinstance against the Mapping ABC is a Python-level call, on every answer.
    if fmt is None or (type(raw) is not dict and not isinstance(raw, Mapping)):
        return None
    try:
        # The usual shapes are read directly by the core parser when the usage is a plain dict.
        usage = raw if type(raw) is dict else dict(raw)
        return usage_from_response(fmt, {"model": model, "usage": usage}, model=model)
    except ValueError:
        # A usage shape this version of the parser does not know: fall back to usage_metadata.
        return None


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
