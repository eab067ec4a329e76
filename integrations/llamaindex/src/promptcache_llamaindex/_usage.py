"""Read a LlamaIndex answer's provider usage from its ``raw`` payload (for LLMs we did not hook).

``ChatResponse.raw`` holds the provider's response as the LLM class left it: an OpenAI SDK object
(Chat Completions or Responses), ``dict(message)`` of an Anthropic message, a boto3 Converse dict.
Only the conversion to plain data is LlamaIndex's business; which format the report is in and
what it means is the core's (:func:`promptcache.providers.usage.usage_from_answer`). Nothing is
estimated, and an answer without a usage report gives None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promptcache import CacheUsage
from promptcache.llm_bridge import to_plain
from promptcache.providers.usage import usage_from_answer

__all__ = ["plain_raw", "usage_from_raw"]


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


def usage_from_raw(raw: Any, *, model: str | None = None) -> CacheUsage | None:
    """The provider usage in a LlamaIndex response's ``raw``, or None."""
    body = plain_raw(raw)
    return None if body is None else usage_from_answer(body, model=model)
