"""``usage_from_message`` reads a LangChain answer's provider usage as the core parser does."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage
from promptcache_langchain._usage import usage_from_message

from promptcache import WireFormat
from promptcache.providers import usage as usage_module

_OPENAI = {
    "prompt_tokens": 16_000,
    "completion_tokens": 2,
    "total_tokens": 16_002,
    "prompt_tokens_details": {"cached_tokens": 15_872, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
_ANTHROPIC = {
    "input_tokens": 3,
    "cache_read_input_tokens": 1111,
    "cache_creation_input_tokens": 403,
    "cache_creation": {"ephemeral_5m_input_tokens": 403, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 33,
}
_RESPONSES = {"input_tokens": 1420, "output_tokens": 100, "input_tokens_details": {"cached_tokens": 1280}}


@pytest.mark.parametrize(
    ("fmt", "key", "raw"),
    [
        (WireFormat.OPENAI_CHAT, "token_usage", _OPENAI),
        (WireFormat.ANTHROPIC_MESSAGES, "usage", _ANTHROPIC),
        (WireFormat.OPENAI_RESPONSES, "usage", _RESPONSES),
        # Shapes only the general parser takes (a float count) or refuses (a negative one).
        (WireFormat.OPENAI_CHAT, "token_usage", {**_OPENAI, "prompt_tokens": 16_000.0}),
        (WireFormat.ANTHROPIC_MESSAGES, "usage", {**_ANTHROPIC, "output_tokens": -1}),
    ],
)
def test_usage_from_message_is_the_parser(fmt: WireFormat, key: str, raw: dict[str, Any]) -> None:
    msg = AIMessage(content="", response_metadata={key: raw, "model_name": "m"})
    try:
        parsed = usage_module._parse(
            fmt, {"model": "m", "usage": dict(raw)}, model="m", provider=fmt.provider
        )
    except ValueError:
        parsed = None
    got = usage_from_message(msg, fmt)
    assert got == parsed
    if parsed is not None and got is not None:
        assert got.model_fields_set == parsed.model_fields_set
