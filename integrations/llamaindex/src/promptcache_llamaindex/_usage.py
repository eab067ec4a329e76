"""Read a LlamaIndex answer's provider usage from its ``raw`` payload (for LLMs we did not hook).

``ChatResponse.raw`` holds the provider's response as the LLM class left it: an OpenAI SDK object
(Chat Completions or Responses), ``dict(message)`` of an Anthropic message, a boto3 Converse dict.
The wire format is told by the usage object's shape; nothing is estimated, and an answer without
a usage report gives None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promptcache import CacheUsage, WireFormat, usage_from_response
from promptcache.llm_bridge import to_plain

__all__ = ["format_of_raw", "plain_raw", "usage_from_raw"]


def plain_raw(raw: Any) -> dict[str, Any] | None:
    """``raw`` as plain JSON-like data, nested SDK objects included."""
    plain = to_plain(raw)
    if not isinstance(plain, Mapping):
        return None
    return {k: _deep(v) for k, v in plain.items()}


def _deep(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep(v) for v in value]
    if hasattr(value, "model_dump") or hasattr(value, "to_dict"):
        return _deep(to_plain(value))
    return value


def format_of_raw(body: Mapping[str, Any]) -> WireFormat | None:
    """The wire format whose usage shape ``body`` has."""
    usage = body.get("usage")
    if isinstance(usage, Mapping):
        if "prompt_tokens" in usage:
            return WireFormat.OPENAI_CHAT
        if "inputTokens" in usage:
            return WireFormat.BEDROCK_CONVERSE
        if "input_tokens_details" in usage or body.get("object") == "response":
            return WireFormat.OPENAI_RESPONSES
        if "input_tokens" in usage:
            return WireFormat.ANTHROPIC_MESSAGES
    if isinstance(body.get("usageMetadata") or body.get("usage_metadata"), Mapping):
        return WireFormat.GEMINI
    return None


def usage_from_raw(raw: Any, *, model: str | None = None) -> CacheUsage | None:
    """The provider usage in a LlamaIndex response's ``raw``, or None."""
    body = plain_raw(raw)
    if body is None:
        return None
    fmt = format_of_raw(body)
    if fmt is None:
        return None
    try:
        return usage_from_response(fmt, body, model=model if fmt is WireFormat.BEDROCK_CONVERSE else None)
    except (ValueError, TypeError):
        return None
