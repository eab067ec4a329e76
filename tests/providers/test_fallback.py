"""A provider that rejects a caching hint gets the request again without it, counted.

The SDK clients are real (anthropic, openai, httpx) and talk HTTP to a small server on
127.0.0.1 that answers a provider-shaped 400 whenever the request body holds a given field,
and a provider-shaped 200 otherwise. Nothing in the SDKs is mocked.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import httpx
import openai
import pytest

from promptcache.engine import PromptCache
from promptcache.providers.fallback import (
    async_send_with_hint_fallback,
    is_hint_rejection,
    send_with_hint_fallback,
    strip_hints,
)

LONG = "\n".join(f"Rule {i}: be courteous and precise about fares and baggage." for i in range(120))

ANTHROPIC_OK = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": "ok"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 1},
}
OPENAI_OK = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
}


def _anthropic_400(field: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": f"system.0.{field}: Extra inputs are not permitted",
        },
    }


def _openai_400(field: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"Unrecognized request argument supplied: {field}",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def _bedrock_400(field: str) -> dict[str, Any]:
    return {
        "message": f"The model returned the following errors: messages.0.content.1.{field}: not supported"
    }


class FakeProvider:
    """An HTTP server answering like one provider; ``reject`` is the field it refuses."""

    def __init__(self, flavor: str, reject: str | None, bad_request_always: str | None = None) -> None:
        self.flavor = flavor
        self.reject = reject
        self.bad_request_always = bad_request_always
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                body = json.loads(raw)
                outer.bodies.append(body)
                status, payload = outer.answer(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = json.dumps(body)
        errors = {"anthropic": _anthropic_400, "openai": _openai_400, "bedrock": _bedrock_400}[self.flavor]
        if self.bad_request_always is not None:
            return 400, errors(self.bad_request_always)
        if self.reject is not None and f'"{self.reject}"' in text:
            return 400, errors(self.reject)
        ok: dict[str, dict[str, Any]] = {
            "anthropic": ANTHROPIC_OK,
            "openai": OPENAI_OK,
            "bedrock": {"output": {}, "usage": {}},
        }
        return 200, ok[self.flavor]


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> Iterator[FakeProvider]:
    fake = FakeProvider(*request.param)
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def _count(value: Any, key: str) -> int:
    if isinstance(value, dict):
        return (key in value) + sum(_count(v, key) for v in value.values())
    if isinstance(value, list):
        return sum(_count(v, key) for v in value)
    return 0


def _anthropic_body() -> dict[str, Any]:
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 16,
        "system": LONG,
        "tools": [
            {"name": "get_user", "description": "Get a user.", "input_schema": {"type": "object"}},
            {"name": "book", "description": "Book.", "input_schema": {"type": "object"}},
        ],
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "book me a flight"},
        ],
    }
    return PromptCache().prepare_request(body, format="anthropic-messages", tenant="t").body


@pytest.mark.parametrize("provider", [("anthropic", "cache_control")], indirect=True)
def test_anthropic_rejected_cache_control_resent_without_hints(provider: FakeProvider) -> None:
    client = anthropic.Anthropic(base_url=provider.url, api_key="test", max_retries=0)
    prepared = _anthropic_body()
    assert _count(prepared, "cache_control") == 3
    counter: Counter[str] = Counter()
    msg = send_with_hint_fallback(
        lambda b: client.messages.create(**b), prepared, "anthropic-messages", counter=counter
    )
    assert msg.content[0].text == "ok"  # type: ignore[union-attr,unused-ignore]
    assert counter == {"hint_rejected": 1}
    first, second = provider.bodies
    assert _count(first, "cache_control") == 3 and _count(second, "cache_control") == 0
    assert second == strip_hints(first, "anthropic-messages")
    # Everything but the markers is sent again unchanged.
    # The tools as prepared: in canonical order (by name), each as the caller wrote it.
    assert [t["name"] for t in second["tools"]] == ["book", "get_user"]
    assert second["system"] == [{"type": "text", "text": first["system"][0]["text"]}]
    assert second["messages"][-1]["content"] == [{"type": "text", "text": "book me a flight"}]


@pytest.mark.parametrize("provider", [("anthropic", None, "max_tokens")], indirect=True)
def test_unrelated_400_is_raised_and_not_counted(provider: FakeProvider) -> None:
    client = anthropic.Anthropic(base_url=provider.url, api_key="test", max_retries=0)
    counter: Counter[str] = Counter()
    with pytest.raises(anthropic.BadRequestError):
        send_with_hint_fallback(
            lambda b: client.messages.create(**b), _anthropic_body(), "anthropic-messages", counter=counter
        )
    assert len(provider.bodies) == 1 and counter == {}


@pytest.mark.parametrize("provider", [("anthropic", None, "cache_control")], indirect=True)
def test_second_rejection_propagates_after_one_resend(provider: FakeProvider) -> None:
    client = anthropic.Anthropic(base_url=provider.url, api_key="test", max_retries=0)
    seen: list[str] = []
    with pytest.raises(anthropic.BadRequestError) as info:
        send_with_hint_fallback(
            lambda b: client.messages.create(**b),
            _anthropic_body(),
            "anthropic-messages",
            counter=seen.append,
        )
    assert is_hint_rejection(info.value)
    assert len(provider.bodies) == 2 and seen == ["hint_rejected"]


@pytest.mark.parametrize("provider", [("anthropic", "cache_control")], indirect=True)
def test_body_without_hints_is_not_resent(provider: FakeProvider) -> None:
    # The server names cache_control, but there is none to remove: resending cannot help.
    provider.bad_request_always = "cache_control"
    client = anthropic.Anthropic(base_url=provider.url, api_key="test", max_retries=0)
    plain = {"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.BadRequestError):
        send_with_hint_fallback(lambda b: client.messages.create(**b), plain, "anthropic-messages")
    assert len(provider.bodies) == 1


def _openai_body(model: str = "gpt-4o") -> dict[str, Any]:
    body = {
        "model": model,
        "messages": [{"role": "system", "content": LONG}, {"role": "user", "content": "hi"}],
    }
    return PromptCache().prepare_request(body, format="openai-chat", tenant="t").body


@pytest.mark.parametrize("provider", [("openai", "prompt_cache_key")], indirect=True)
def test_openai_rejected_prompt_cache_key(provider: FakeProvider) -> None:
    client = openai.OpenAI(base_url=provider.url + "/v1", api_key="test", max_retries=0)
    prepared = _openai_body()
    assert prepared["prompt_cache_key"].startswith("pc-")
    counter: Counter[str] = Counter()
    out = send_with_hint_fallback(
        lambda b: client.chat.completions.create(**b), prepared, "openai-chat", counter=counter
    )
    assert out.choices[0].message.content == "ok"
    assert counter["hint_rejected"] == 1
    first, second = provider.bodies
    assert "prompt_cache_key" in first
    assert second == {k: v for k, v in first.items() if k != "prompt_cache_key"}


@pytest.mark.parametrize("provider", [("openai", "prompt_cache_retention")], indirect=True)
def test_async_openai_rejected_retention(provider: FakeProvider) -> None:
    client = openai.AsyncOpenAI(base_url=provider.url + "/v1", api_key="test", max_retries=0)
    prepared = {**_openai_body(), "prompt_cache_retention": "24h"}
    counter: Counter[str] = Counter()

    async def run() -> Any:
        async def send(b: dict[str, Any]) -> Any:
            return await client.chat.completions.create(**b)

        try:
            return await async_send_with_hint_fallback(send, prepared, "openai-chat", counter=counter)
        finally:
            await client.close()

    out = asyncio.run(run())
    assert out.choices[0].message.content == "ok"
    assert counter["hint_rejected"] == 1
    second = provider.bodies[1]
    assert "prompt_cache_retention" not in second and "prompt_cache_key" not in second


@pytest.mark.parametrize("provider", [("bedrock", "cachePoint")], indirect=True)
def test_httpx_status_error_bedrock_cache_points_removed(provider: FakeProvider) -> None:
    body = {
        "modelId": "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        "system": [{"text": LONG}, {"cachePoint": {"type": "default"}}],
        "toolConfig": {"tools": [{"toolSpec": {"name": "a"}}, {"cachePoint": {"type": "default"}}]},
        "messages": [{"role": "user", "content": [{"text": "hi"}, {"cachePoint": {"type": "default"}}]}],
    }
    with httpx.Client(base_url=provider.url) as http:

        def send(b: dict[str, Any]) -> Any:
            r = http.post("/model/converse", json=b)
            r.raise_for_status()
            return r.json()

        counter: Counter[str] = Counter()
        assert send_with_hint_fallback(send, body, "bedrock-converse", counter=counter) == {
            "output": {},
            "usage": {},
        }
    assert counter["hint_rejected"] == 1
    assert provider.bodies[1] == {
        "modelId": "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        "system": [{"text": LONG}],
        "toolConfig": {"tools": [{"toolSpec": {"name": "a"}}]},
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
    }


def test_strip_keeps_a_tool_property_named_cache_control() -> None:
    schema = {"type": "object", "properties": {"cache_control": {"type": "string"}}}
    body = {
        "model": "claude-sonnet-4-6",
        "cache_control": {"type": "ephemeral"},
        "tools": [{"name": "t", "input_schema": schema, "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "x",
                        "content": [{"type": "text", "text": "r", "cache_control": {"type": "ephemeral"}}],
                    }
                ],
            }
        ],
    }
    out = strip_hints(body, "anthropic-messages")
    assert out == {
        "model": "claude-sonnet-4-6",
        "tools": [{"name": "t", "input_schema": schema}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "x", "content": [{"type": "text", "text": "r"}]}
                ],
            }
        ],
    }
    assert "cache_control" in body  # the input is untouched


def test_strip_openai_breakpoints_and_options() -> None:
    body = {
        "model": "gpt-5.6-sol",
        "prompt_cache_key": "k",
        "prompt_cache_options": {"mode": "explicit"},
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "doc", "prompt_cache_breakpoint": {"mode": "explicit"}}
                ],
            }
        ],
    }
    assert strip_hints(body, "openai-responses") == {
        "model": "gpt-5.6-sol",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "doc"}]}],
    }
