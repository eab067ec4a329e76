"""A provider that rejects a caching hint gets the request again without it (DESIGN: failure behaviour).

Real ``ChatOpenAI``/``ChatAnthropic`` over an ``httpx.MockTransport`` that answers 400 to any body
carrying the hint field, as an OpenAI-compatible server or an older model does, and 200 otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest
from langchain.agents import create_agent
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from promptcache_langchain import CachingChatModel, PromptCacheMiddleware

from promptcache import PromptCache
from promptcache.llm_bridge import HINT_REJECTIONS
from promptcache.providers.fallback import REJECTIONS


@pytest.fixture(autouse=True)
def _fresh_rejection_memory() -> None:
    # Each test shows one refusal and its resend: none remembered from another test.
    REJECTIONS.clear()


SYSTEM = "You are a support agent for an airline. " * 200

_OPENAI_OK = {
    "id": "c1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 1, "total_tokens": 1201},
}
_ANTHROPIC_OK = {
    "id": "m1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "ok"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 1200, "output_tokens": 1},
}


def _transport(field: str, ok: dict[str, Any], sent: list[dict[str, Any]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        if field in json.dumps(body):
            err = {"type": "invalid_request_error", "message": f"Unrecognized request argument: {field}"}
            return httpx.Response(400, json={"type": "error", "error": err})
        return httpx.Response(200, json=ok)

    return httpx.MockTransport(handle)


def _model(provider: str, sent: list[dict[str, Any]], use_async: bool) -> Any:
    if provider == "openai":
        t = _transport("prompt_cache_key", _OPENAI_OK, sent)
        client = httpx.AsyncClient(transport=t) if use_async else httpx.Client(transport=t)
        kw = {"http_async_client": client} if use_async else {"http_client": client}
        return ChatOpenAI(model="gpt-4o", api_key="k", base_url="http://llm.test/v1", max_retries=0, **kw)
    t = _transport("cache_control", _ANTHROPIC_OK, sent)
    model = ChatAnthropic(model="claude-sonnet-4-5", api_key="k", base_url="http://llm.test", max_retries=0)
    # ChatAnthropic takes no http_client: seed its cached SDK clients (the hooked copy wraps these).
    sdk: dict[str, Any] = {"base_url": "http://llm.test", "api_key": "k", "max_retries": 0, "timeout": 60.0}
    model.__dict__["_client"] = anthropic.Anthropic(http_client=httpx.Client(transport=t), **sdk)
    model.__dict__["_async_client"] = anthropic.AsyncAnthropic(
        http_client=httpx.AsyncClient(transport=t), **sdk
    )
    return model


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_caching_chat_model_resends_without_hints(provider: str, use_async: bool) -> None:
    sent: list[dict[str, Any]] = []
    model = CachingChatModel(_model(provider, sent, use_async), PromptCache())
    before = HINT_REJECTIONS["hint_rejected"]
    msgs = [("system", SYSTEM), ("user", "hello")]
    config: Any = {"configurable": {"tenant_id": "acme"}}
    out = await model.ainvoke(msgs, config) if use_async else model.invoke(msgs, config)
    assert out.content == "ok"
    field = "prompt_cache_key" if provider == "openai" else "cache_control"
    assert len(sent) == 2 and field in json.dumps(sent[0]) and field not in json.dumps(sent[1])
    meta = out.response_metadata["promptcache"]
    assert meta["hint_rejected"] is True and any("rejected" in n for n in meta["notes"])
    assert HINT_REJECTIONS["hint_rejected"] == before + 1


def test_middleware_resends_without_hints() -> None:
    sent: list[dict[str, Any]] = []
    agent = create_agent(
        _model("openai", sent, False),
        tools=[],
        system_prompt=SYSTEM,
        middleware=[PromptCacheMiddleware(PromptCache())],
    )
    out = agent.invoke({"messages": [HumanMessage("hello")]}, {"configurable": {"tenant_id": "acme"}})
    assert len(sent) == 2 and "prompt_cache_key" in sent[0] and "prompt_cache_key" not in sent[1]
    assert out["messages"][-1].response_metadata["promptcache"]["hint_rejected"] is True


def test_other_400_is_not_retried() -> None:
    sent: list[dict[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(400, json={"error": {"message": "max_tokens is too large", "type": "invalid"}})

    inner = ChatOpenAI(
        model="gpt-4o",
        api_key="k",
        base_url="http://llm.test/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handle)),
    )
    with pytest.raises(Exception, match="max_tokens"):
        CachingChatModel(inner, PromptCache()).invoke([("system", SYSTEM), ("user", "hi")])
    assert len(sent) == 1
