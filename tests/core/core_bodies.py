"""Shared builders for the tests/core suite: minimal valid bodies of each wire format."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

FORMATS = ["openai-chat", "openai-responses", "anthropic-messages", "bedrock-converse", "gemini"]

TOOL_SPECS: list[dict[str, Any]] = [
    {
        "name": "get_user",
        "description": "Get the user's profile.",
        "parameters": {
            "type": "object",
            "properties": {"user_id": {"type": "string", "description": "The user id."}},
            "required": ["user_id"],
        },
    },
    {
        "name": "book_flight",
        "description": "Book a flight for the user.",
        "parameters": {
            "type": "object",
            "properties": {"origin": {"type": "string"}, "destination": {"type": "string"}},
        },
    },
    {
        "name": "cancel_booking",
        "description": "Cancel a booking.",
        "parameters": {"type": "object", "properties": {"booking_id": {"type": "string"}}},
    },
]


def shuffle_keys(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every dict's key order shuffled."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffle_keys(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffle_keys(v, rng) for v in value]
    return value


def make_body(
    fmt: str, system: str, tools: list[dict[str, Any]], conv: list[tuple[str, str]], model: str = "m-1"
) -> dict[str, Any]:
    """A minimal valid body; ``conv`` is (role, text) pairs with role user/assistant."""
    tools = copy.deepcopy(tools)
    if fmt == "openai-chat":
        return {
            "model": model,
            "messages": [{"role": "system", "content": system}]
            + [{"role": r, "content": t} for r, t in conv],
            "tools": [{"type": "function", "function": t} for t in tools],
        }
    if fmt == "openai-responses":
        return {
            "model": model,
            "instructions": system,
            "input": [{"role": r, "content": t} for r, t in conv],
            "tools": [{"type": "function", **t} for t in tools],
        }
    if fmt == "anthropic-messages":
        return {
            "model": model,
            "max_tokens": 64,
            "system": system,
            "tools": [
                {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                for t in tools
            ],
            "messages": [{"role": r, "content": t} for r, t in conv],
        }
    if fmt == "bedrock-converse":
        return {
            "modelId": model,
            "system": [{"text": system}],
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "name": t["name"],
                            "description": t["description"],
                            "inputSchema": {"json": t["parameters"]},
                        }
                    }
                    for t in tools
                ]
            },
            "messages": [{"role": r, "content": [{"text": t}]} for r, t in conv],
        }
    if fmt == "gemini":
        return {
            "model": model,
            "systemInstruction": {"parts": [{"text": system}]},
            "tools": [{"functionDeclarations": tools}],
            "contents": [
                {"role": "model" if r == "assistant" else "user", "parts": [{"text": t}]} for r, t in conv
            ],
        }
    raise AssertionError(fmt)


def system_text_of(fmt: str, body: dict[str, Any]) -> str:
    """All system/instructions text of a (rewritten) body, joined."""
    if fmt == "openai-chat":
        return "\n".join(str(m["content"]) for m in body["messages"] if m["role"] in ("system", "developer"))
    if fmt == "openai-responses":
        lead = [str(m.get("content")) for m in body.get("input", []) if m.get("role") in ("system",)]
        return "\n".join([str(body.get("instructions", "")), *lead])
    if fmt == "anthropic-messages":
        s = body.get("system", "")
        return s if isinstance(s, str) else "\n".join(b["text"] for b in s)
    if fmt == "bedrock-converse":
        return "\n".join(b.get("text", "") for b in body.get("system", []))
    if fmt == "gemini":
        return "\n".join(p["text"] for p in body["systemInstruction"]["parts"])
    raise AssertionError(fmt)


def stable_system_text_of(fmt: str, body: dict[str, Any]) -> str:
    """System text excluding the relocated volatile block (openai formats put it in a system role)."""
    parts = system_text_of(fmt, body).split("\n")
    return "\n".join(parts) if "<volatile_context>" not in parts else _drop_volatile(parts)


def _drop_volatile(lines: list[str]) -> str:
    out, skip = [], False
    for line in lines:
        if line == "<volatile_context>":
            skip = True
        if not skip:
            out.append(line)
        if line == "</volatile_context>":
            skip = False
    return "\n".join(out)


def body_json(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False)


def all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in all_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    return []
