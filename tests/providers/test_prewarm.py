"""Pre-warming: the exact warm-up request per format, and the reported usage and cost.

Responses are the real recorded ones (pydantic-ai cassettes), so usage and price are those
of an actual cache write.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from promptcache.engine import PromptCache
from promptcache.pricing import cost
from promptcache.providers.prewarm import aprewarm, prewarm, prewarm_body
from promptcache.providers.usage import usage_from_response

from ._replay import load_cassette

LONG = "\n".join(f"Rule {i}: be courteous and precise about fares and baggage." for i in range(120))


def _recorded_response(name: str) -> dict[str, Any]:
    body = load_cassette(name)["interactions"][0]["response"]["parsed_body"]
    assert isinstance(body, dict)
    return body


ANTHROPIC_WRITE = "anthropic__pydantic_ai__cache_messages_real_api.yaml"
OPENAI_WRITE = "openai_chat__pydantic_ai__prompt_cache_key_e2e.yaml"


class Recorder:
    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.sent: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(copy.deepcopy(body))
        return self.response


def _anthropic_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": LONG,
        "tools": [{"name": "get_user", "description": "Get a user.", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "Ready."}],
        **extra,
    }


def test_anthropic_max_tokens_zero_with_hints_and_cost() -> None:
    cache = PromptCache()
    send = Recorder(_recorded_response(ANTHROPIC_WRITE))
    body = _anthropic_body(stream=True, thinking={"type": "enabled", "budget_tokens": 2048})
    report = prewarm(cache, body, format="anthropic-messages", send=send, tenant="t")
    expected = PromptCache().prepare_request(body, format="anthropic-messages", tenant="t").body
    del expected["stream"], expected["thinking"]
    expected["max_tokens"] = 0
    assert send.sent == [expected]
    sent = send.sent[0]
    assert sent["tools"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    usage = usage_from_response("anthropic-messages", send.response)
    assert report.usage == usage and usage.cache_write_tokens == 1111
    assert report.cost == cost(usage) and report.cost is not None and report.cost.cache_write > 0
    assert report.seeded and report.tenant == "t" and len(report.hints) == 3
    assert any("removed for max_tokens 0: thinking" in n for n in report.notes)


def test_anthropic_one_token_where_zero_is_unavailable() -> None:
    body = prewarm_body(_anthropic_body(), "anthropic-messages", zero_max_tokens=False)
    assert body["max_tokens"] == 1


def test_anthropic_without_messages_gets_a_minimal_turn() -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 5, "system": "s", "messages": []}
    assert prewarm_body(body, "anthropic-messages") == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 0,
        "system": "s",
        "messages": [{"role": "user", "content": "."}],
    }


def test_openai_chat_one_token_and_the_write_is_priced() -> None:
    send = Recorder(_recorded_response(OPENAI_WRITE))
    body = {
        "model": "gpt-5.6-sol",
        "max_tokens": 500,
        "stream": True,
        "messages": [{"role": "system", "content": LONG}, {"role": "user", "content": "Reply OK"}],
    }
    report = prewarm(PromptCache(), body, format="openai-chat", send=send, tenant="t")
    (sent,) = send.sent
    assert sent["max_completion_tokens"] == 1
    assert not {"max_tokens", "stream"} & set(sent)
    assert sent["prompt_cache_key"].startswith("pc-")
    assert report.usage.cache_write_tokens == 4012 and report.seeded
    # gpt-5.6 bills the write at 1.25x its input rate ($6.25 per million for Sol).
    assert report.cost is not None
    assert report.cost.cache_write == pytest.approx(4012 * 6.25 / 1e6)


def test_other_formats_minimal_requests() -> None:
    assert prewarm_body({"model": "gpt-4.1", "input": "x"}, "openai-responses") == {
        "model": "gpt-4.1",
        "input": "x",
        "max_output_tokens": 16,
    }
    converse = {"modelId": "m", "messages": [], "inferenceConfig": {"temperature": 0.0, "maxTokens": 900}}
    assert prewarm_body(converse, "bedrock-converse")["inferenceConfig"] == {
        "temperature": 0.0,
        "maxTokens": 1,
    }
    gem = {"contents": [], "generationConfig": {"responseModalities": ["TEXT"]}}
    assert prewarm_body(gem, "gemini")["generationConfig"] == {
        "responseModalities": ["TEXT"],
        "maxOutputTokens": 1,
    }


def test_async_and_not_seeded() -> None:
    response = {
        "id": "msg_1",
        "type": "message",
        "model": "claude-sonnet-4-5",
        "usage": {"input_tokens": 40, "output_tokens": 0},
    }
    send = Recorder(response)

    async def asend(body: dict[str, Any]) -> dict[str, Any]:
        return send(body)

    report = asyncio.run(aprewarm(PromptCache(), _anthropic_body(), format="anthropic-messages", send=asend))
    assert send.sent[0]["max_tokens"] == 0
    assert not report.seeded and "nothing was seeded" in report.notes[-1]
    assert report.cost is not None and report.cost.total == cost(report.usage).total
