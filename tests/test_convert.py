"""promptcache.lab.convert: bodies as an app switching providers would send them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from promptcache.formats import WireFormat
from promptcache.lab.convert import convert, default_model, from_openai_chat, to_openai_chat
from promptcache.lab.simulate import render
from promptcache.lab.traces import build_trace

TOOL = {
    "type": "function",
    "function": {
        "name": "get_user",
        "description": "Look a user up.",
        "parameters": {"type": "object", "properties": {"user_id": {"type": "string"}}},
    },
}
CHAT: dict[str, Any] = {
    "model": "gpt-4o",
    "tools": [TOOL],
    "tool_choice": "required",
    "messages": [
        {"role": "system", "content": "You are an agent."},
        {"role": "system", "content": "Relevant memory: likes aisles."},
        {"role": "user", "content": "Find mia."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_user", "arguments": '{"user_id": "mia"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_user", "arguments": '{"user_id": "li"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"name": "Mia"}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "not found"},
        {"role": "assistant", "content": "Found Mia."},
        {"role": "user", "content": "Thanks"},
    ],
}


def test_to_anthropic() -> None:
    out = convert(CHAT, "openai-chat", "anthropic-messages")
    assert out["model"] == "claude-sonnet-4-5" and out["max_tokens"] == 1024
    assert out["system"] == [
        {"type": "text", "text": "You are an agent."},
        {"type": "text", "text": "Relevant memory: likes aisles."},
    ]
    assert out["tools"] == [
        {
            "name": "get_user",
            "description": "Look a user up.",
            "input_schema": {"type": "object", "properties": {"user_id": {"type": "string"}}},
        }
    ]
    assert out["tool_choice"] == {"type": "any"}
    assert out["messages"] == [
        {"role": "user", "content": "Find mia."},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_user", "input": {"user_id": "mia"}},
                {"type": "tool_use", "id": "call_2", "name": "get_user", "input": {"user_id": "li"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": '{"name": "Mia"}'},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "not found"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Found Mia."}]},
        {"role": "user", "content": "Thanks"},
    ]
    single = convert(
        {"model": "gpt-4o", "messages": CHAT["messages"][:1]}, "openai-chat", "anthropic-messages"
    )
    assert single["system"] == "You are an agent." and single["messages"] == []


def test_to_converse_gemini_responses() -> None:
    conv = convert(CHAT, "openai-chat", "bedrock-converse")
    assert conv["modelId"] == "anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert conv["system"] == [{"text": "You are an agent."}, {"text": "Relevant memory: likes aisles."}]
    assert conv["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {
        "json": TOOL["function"]["parameters"]
    }
    assert conv["messages"][2] == {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": '{"name": "Mia"}'}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "not found"}]}},
        ],
    }
    gem = convert(CHAT, "openai-chat", "gemini")
    assert gem["systemInstruction"] == {
        "parts": [{"text": "You are an agent."}, {"text": "Relevant memory: likes aisles."}]
    }
    assert [c["role"] for c in gem["contents"]] == ["user", "model", "user", "model", "user"]
    assert gem["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_user", "response": {"content": '{"name": "Mia"}'}}},
        {"functionResponse": {"name": "get_user", "response": {"content": "not found"}}},
    ]
    resp = convert(CHAT, "openai-chat", "openai-responses")
    assert resp["instructions"] == "You are an agent."
    assert resp["input"][0] == {"role": "system", "content": "Relevant memory: likes aisles."}
    assert resp["input"][2] == {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_user",
        "arguments": '{"user_id": "mia"}',
    }
    assert resp["input"][4] == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": '{"name": "Mia"}',
    }
    assert resp["tools"] == [{"type": "function", **TOOL["function"]}]
    assert resp["tool_choice"] == "required"


@pytest.mark.parametrize("fmt", ["anthropic-messages", "bedrock-converse", "openai-responses", "gemini"])
def test_round_trip_through_chat_keeps_meaning(fmt: str) -> None:
    back = to_openai_chat(from_openai_chat(CHAT, fmt), fmt)
    assert [m["role"] for m in back["messages"]] == [m["role"] for m in CHAT["messages"]]
    for got, want in zip(back["messages"], CHAT["messages"], strict=True):
        assert (got.get("content") or None) == (want.get("content") or None)
        got_calls = [
            (c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in got.get("tool_calls") or []
        ]
        want_calls = [
            (c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in want.get("tool_calls") or []
        ]
        assert got_calls == want_calls
        if fmt != "gemini":  # Gemini pairs calls and results by position, not id
            assert got.get("tool_call_id") == want.get("tool_call_id")
    assert back["tools"][0]["function"]["parameters"] == TOOL["function"]["parameters"]


def test_real_trace_bodies_render_in_every_format() -> None:
    body = build_trace("clean", tasks=[2])[-1].body
    chat_tokens = render("openai-chat", body).total_tokens
    for fmt in WireFormat:
        out = convert(body, "openai-chat", fmt)
        r = render(fmt, out, default_model(None, fmt))
        # Same content, different framing and tokenizer estimates: within 25 %.
        assert 0.75 * chat_tokens < r.total_tokens < 1.25 * chat_tokens, fmt
    anth = convert(body, "openai-chat", "anthropic-messages")
    tool_ids = [
        b["id"]
        for m in anth["messages"]
        if m["role"] == "assistant"
        for b in m["content"]
        if b["type"] == "tool_use"
    ]
    result_ids = [
        b["tool_use_id"]
        for m in anth["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
    ]
    recorded = [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"]
    assert tool_ids == result_ids == recorded and len(recorded) == 20


def test_models_and_identity() -> None:
    assert default_model("claude-opus-4-1", "anthropic-messages") == "claude-opus-4-1"
    assert default_model("gpt-4o-mini", "anthropic-messages") == "claude-sonnet-4-5"
    assert default_model("gpt-4o-mini", "openai-chat") == "gpt-4o-mini"
    assert convert(CHAT, "openai-chat", "openai-chat") is CHAT
    assert (
        convert(CHAT, "openai-chat", "anthropic-messages", model="claude-haiku-4-5")["model"]
        == "claude-haiku-4-5"
    )
    with pytest.raises(ValueError, match="not a known wire format"):
        convert(CHAT, "openai-chat", "cohere")
