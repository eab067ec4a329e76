"""The wire formats promptcache reads and writes.

A wire format names the shape of a provider request/response body, not the
provider: Claude on Bedrock through ``InvokeModel`` speaks
``anthropic-messages``; vLLM, OpenRouter or a LiteLLM proxy speak
``openai-chat``.

>>> WireFormat("anthropic-messages").provider
'anthropic'
"""

from __future__ import annotations

from enum import StrEnum


class WireFormat(StrEnum):
    """A request/response body shape understood by promptcache."""

    OPENAI_CHAT = "openai-chat"
    OPENAI_RESPONSES = "openai-responses"
    ANTHROPIC_MESSAGES = "anthropic-messages"
    BEDROCK_CONVERSE = "bedrock-converse"
    GEMINI = "gemini"

    @property
    def provider(self) -> str:
        """The provider family whose caching rules apply to this format."""
        return _PROVIDER[self]


_PROVIDER = {
    WireFormat.OPENAI_CHAT: "openai",
    WireFormat.OPENAI_RESPONSES: "openai",
    WireFormat.ANTHROPIC_MESSAGES: "anthropic",
    WireFormat.BEDROCK_CONVERSE: "bedrock",
    WireFormat.GEMINI: "gemini",
}


_BY_VALUE: dict[str, WireFormat] = {f.value: f for f in WireFormat}


def parse_format(value: str | WireFormat) -> WireFormat:
    """Return ``value`` as a :class:`WireFormat`, or raise a ``ValueError`` naming the choices."""
    if isinstance(value, WireFormat):
        return value
    found = _BY_VALUE.get(value) if type(value) is str else None
    if found is not None:  # a plain dict lookup, not Enum's call machinery (every request)
        return found
    try:
        return WireFormat(value)
    except ValueError:
        choices = ", ".join(f.value for f in WireFormat)
        raise ValueError(f"format={value!r} is not a known wire format; use one of: {choices}") from None
