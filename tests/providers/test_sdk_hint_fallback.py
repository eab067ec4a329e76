"""SDK calls through the httpx seam (``create``, plain and streamed, and the structured-output
``parse`` that LlamaIndex's ``structured_predict`` reaches) resend without caching hints when
the provider rejects one, sync and asyncio alike (DESIGN: failure behaviour). The transport sees
``parse`` as the plain JSON request it is: no per-method handling.

A real ``openai`` client over ``wrap_http_client`` around an ``httpx.MockTransport`` that
answers 400 to a body carrying ``prompt_cache_key``, as an OpenAI-compatible server does, and
200 otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from promptcache import PromptCache
from promptcache.llm_bridge import HINT_REJECTIONS, CallContext, use_call
from promptcache.transport import wrap_http_client

SYSTEM = "You are a fare assistant for an airline. " * 200

_OK = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "$210"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 3, "total_tokens": 1203},
}
_STREAM = (
    'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"gpt-4o","choices":'
    '[{"index":0,"delta":{"role":"assistant","content":"$210"},"finish_reason":null}]}\n\n'
    'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"gpt-4o","choices":[],'
    '"usage":{"prompt_tokens":1200,"completion_tokens":3,"total_tokens":1203}}\n\n'
    "data: [DONE]\n\n"
)


_RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 0,
    "model": "gpt-4o",
    "status": "completed",
    "output": [
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": '{"fare_usd": 210}', "annotations": []}],
        }
    ],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "usage": {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 1205,
    },
}


class Fare(BaseModel):
    fare_usd: int


def _handler(sent: list[dict[str, Any]]) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        if "prompt_cache_key" in body:
            err = {"message": "Unrecognized request argument supplied: prompt_cache_key", "type": "invalid"}
            return httpx.Response(400, json={"error": err})
        if "input" in body:  # the Responses API (parse)
            return httpx.Response(200, json=_RESPONSE)
        if body.get("stream"):
            headers = {"content-type": "text/event-stream"}
            return httpx.Response(200, content=_STREAM.encode(), headers=headers)
        return httpx.Response(200, json=_OK)

    return handle


def _client(sent: list[dict[str, Any]], use_async: bool) -> Any:
    transport = httpx.MockTransport(_handler(sent))
    kw: dict[str, Any] = {"api_key": "k", "base_url": "http://llm.test/v1", "max_retries": 0}
    if use_async:
        return openai.AsyncOpenAI(http_client=wrap_http_client(httpx.AsyncClient(transport=transport)), **kw)
    return openai.OpenAI(http_client=wrap_http_client(httpx.Client(transport=transport)), **kw)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_create_resends_without_hints(use_async: bool, streamed: bool) -> None:
    sent: list[dict[str, Any]] = []
    hooked = _client(sent, use_async)
    ctx = CallContext(cache=PromptCache(), tenant="acme")
    before = HINT_REJECTIONS["hint_rejected"]
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "SFO-JFK fare?"}]
    with use_call(ctx):
        out = hooked.chat.completions.create(model="gpt-4o", messages=messages, stream=streamed)
        if use_async:
            out = await out
        if streamed:
            chunks = [c async for c in out] if use_async else list(out)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            text = out.choices[0].message.content
    assert text == "$210"
    assert len(sent) == 2 and "prompt_cache_key" in sent[0] and "prompt_cache_key" not in sent[1]
    assert sent[1]["messages"][0]["content"] == SYSTEM, "the resend is the same request, hints stripped"
    assert HINT_REJECTIONS["hint_rejected"] == before + 1
    assert ctx.hints_off and any("rejected" in n for n in ctx.notes)
    assert ctx.usage is not None and ctx.usage.input_tokens == 1200
    # Answered: the body is no longer needed and was let go right then; the plan stays.
    assert ctx.body is None and ctx.plan is not None


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_parse_resends_without_hints(use_async: bool) -> None:
    sent: list[dict[str, Any]] = []
    hooked = _client(sent, use_async)
    ctx = CallContext(cache=PromptCache(), tenant="acme")
    before = HINT_REJECTIONS["hint_rejected"]
    args: dict[str, Any] = {
        "model": "gpt-4o",
        "input": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "SFO-JFK, $210"}],
        "text_format": Fare,
    }
    with use_call(ctx):
        out = hooked.responses.parse(**args)
        if use_async:
            out = await out
    assert out.output_parsed == Fare(fare_usd=210)
    assert len(sent) == 2 and "prompt_cache_key" in sent[0] and "prompt_cache_key" not in sent[1]
    assert sent[1]["text"]["format"]["type"] == "json_schema", "the resend keeps the structured format"
    assert HINT_REJECTIONS["hint_rejected"] == before + 1
    assert ctx.hints_off and any("rejected" in n for n in ctx.notes)
    assert ctx.usage is not None and ctx.usage.input_tokens == 1200
    assert ctx.body is None and ctx.plan is not None
