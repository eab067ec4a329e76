"""Usage normalization cases the recordings do not cover: newer stream shapes, bad bodies."""

from __future__ import annotations

from typing import Any

import pytest

from promptcache.formats import WireFormat
from promptcache.providers.usage import usage_from_response, usage_from_stream


def _anthropic_events(start_usage: dict[str, Any], delta_usage: dict[str, Any]) -> list[Any]:
    return [
        {
            "type": "message_start",
            "message": {"model": "claude-sonnet-4-5", "usage": start_usage},
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": delta_usage},
        {"type": "message_stop"},
    ]


def test_anthropic_stream_delta_with_cumulative_cache_fields_overrides_start() -> None:
    # Newer API versions repeat the (cumulative) input and cache counts in message_delta.
    events = _anthropic_events(
        {"input_tokens": 3, "cache_read_input_tokens": 0, "output_tokens": 1},
        {
            "input_tokens": 3,
            "cache_read_input_tokens": 1111,
            "cache_creation_input_tokens": 418,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 418},
            "output_tokens": 33,
        },
    )
    usage = usage_from_stream("anthropic-messages", events)
    assert usage.input_tokens == 3 + 1111 + 418
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (1111, 418)
    assert usage.cache_write_tokens_by_ttl == {"1h": 418}
    assert usage.output_tokens == 33
    assert usage.model == "claude-sonnet-4-5"


def test_anthropic_stream_delta_with_only_output_keeps_start_cache_fields() -> None:
    events = _anthropic_events(
        {"input_tokens": 4, "cache_creation_input_tokens": 1165, "output_tokens": 1},
        {"output_tokens": 201, "cache_read_input_tokens": None},
    )
    usage = usage_from_stream("anthropic-messages", events, provider="bedrock")
    assert (usage.provider, usage.input_tokens, usage.cache_write_tokens) == ("bedrock", 1169, 1165)
    assert usage.output_tokens == 201


def test_anthropic_ttl_split_without_total_is_summed() -> None:
    body = {
        "usage": {
            "input_tokens": 1,
            "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 5},
            "output_tokens": 2,
        }
    }
    usage = usage_from_response(WireFormat.ANTHROPIC_MESSAGES, body)
    assert (usage.cache_write_tokens, usage.input_tokens) == (15, 16)


def test_gemini_tool_use_prompt_tokens_count_as_input_and_snake_case_is_read() -> None:
    body = {
        "model_version": "gemini-2.5-pro",
        "usage_metadata": {
            "prompt_token_count": 5000,
            "cached_content_token_count": 4096,
            "tool_use_prompt_token_count": 20,
            "candidates_token_count": 7,
            "thoughts_token_count": 100,
        },
    }
    usage = usage_from_response("gemini", body)
    assert (usage.input_tokens, usage.cache_read_tokens) == (5020, 4096)
    assert (usage.output_tokens, usage.thinking_tokens) == (107, 100)
    assert usage.model == "gemini-2.5-pro"


def test_gemini_stream_takes_last_usage() -> None:
    chunks: list[dict[str, Any]] = [
        {"modelVersion": "gemini-2.5-flash", "usageMetadata": {"promptTokenCount": 3520}},
        {
            "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {
                "promptTokenCount": 3520,
                "cachedContentTokenCount": 3512,
                "candidatesTokenCount": 9,
                "thoughtsTokenCount": 40,
            },
        },
    ]
    usage = usage_from_stream("gemini", chunks)
    assert (usage.cache_read_tokens, usage.output_tokens) == (3512, 49)


def test_openai_responses_stream_reads_completed_event() -> None:
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"model": "gpt-5", "usage": None}},
        {"type": "response.output_text.delta", "delta": "OK"},
        {
            "type": "response.completed",
            "response": {
                "model": "gpt-5",
                "usage": {
                    "input_tokens": 2048,
                    "input_tokens_details": {"cached_tokens": 1920},
                    "output_tokens": 300,
                    "output_tokens_details": {"reasoning_tokens": 256},
                },
            },
        },
    ]
    usage = usage_from_stream("openai-responses", events)
    assert (usage.input_tokens, usage.cache_read_tokens) == (2048, 1920)
    assert (usage.output_tokens, usage.thinking_tokens) == (300, 256)


@pytest.mark.parametrize(
    ("fmt", "body", "message"),
    [
        (
            "anthropic-messages",
            {"usage": {"output_tokens": 1}},
            r"body\.usage\.input_tokens is missing",
        ),
        (
            "anthropic-messages",
            {"usage": {"input_tokens": 1, "output_tokens": 1, "cache_read_input_tokens": "12"}},
            r"body\.usage\.cache_read_input_tokens must be a non-negative integer.*str",
        ),
        (
            "anthropic-messages",
            {
                "usage": {
                    "input_tokens": 1,
                    "output_tokens": 1,
                    "cache_creation_input_tokens": 20,
                    "cache_creation": {"ephemeral_5m_input_tokens": 14},
                }
            },
            r"cache_creation TTL split sums to 14 but .*cache_creation_input_tokens is 20",
        ),
        ("anthropic-messages", {"id": "msg_1"}, r"body\.usage is missing"),
        (
            "openai-chat",
            {"usage": {"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": []}},
            r"body\.usage\.prompt_tokens_details must be a JSON object, got list",
        ),
        (
            "openai-chat",
            {
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": 1,
                    "prompt_tokens_details": {"cached_tokens": 11},
                }
            },
            r"exceed the prompt token count \(10\)",
        ),
        ("openai-chat", {"usage": None}, r"include_usage"),
        (
            "openai-responses",
            {"usage": {"input_tokens": 5, "output_tokens": True}},
            r"body\.usage\.output_tokens must be a non-negative integer.*bool",
        ),
        (
            "bedrock-converse",
            {"usage": {"inputTokens": 2, "outputTokens": 5, "cacheWriteInputTokens": -1}},
            r"body\.usage\.cacheWriteInputTokens must be non-negative",
        ),
        (
            "bedrock-converse",
            {"usage": {"inputTokens": 2.5, "outputTokens": 5}},
            r"body\.usage\.inputTokens must be an integer",
        ),
        ("gemini", {"candidates": []}, r"body\.usageMetadata is missing"),
        (
            "gemini",
            {"usageMetadata": {"promptTokenCount": None}},
            r"body\.usageMetadata\.promptTokenCount is null",
        ),
        ("openai-chat", ["not", "a", "body"], r"body must be a JSON object, got list"),
    ],
)
def test_malformed_bodies_name_the_field(fmt: str, body: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        usage_from_response(fmt, body)


@pytest.mark.parametrize(
    ("fmt", "events", "message"),
    [
        ("anthropic-messages", [{"type": "ping"}], r"no message_start"),
        ("anthropic-messages", [{"type": "error", "error": {}}], r"error event"),
        ("openai-chat", [{"choices": [], "usage": None}], r"include_usage"),
        (
            "openai-responses",
            [{"type": "response.created", "response": {}}],
            r"response\.completed",
        ),
        ("bedrock-converse", [{"messageStop": {"stopReason": "end_turn"}}], r"no metadata event"),
        ("bedrock-converse", [{"metadata": {"usage": {"inputTokens": 1}}}], r"outputTokens"),
        ("gemini", [{"candidates": []}], r"usageMetadata"),
    ],
)
def test_truncated_or_odd_streams_raise(fmt: str, events: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        usage_from_stream(fmt, events)


def test_unknown_format_names_the_choices() -> None:
    with pytest.raises(ValueError, match="openai-chat"):
        usage_from_response("cohere", {})
