"""The httpx seam: real ``openai``/``anthropic`` SDK clients over the emulator, through
``wrap_http_client``; the body is rewritten and the usage read back inside a call context only."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from core_bodies import FORMATS, TOOL_SPECS, make_body

from promptcache import PromptCache
from promptcache.lab.emulate import Emulator
from promptcache.llm_bridge import HINT_REJECTIONS, CallContext, use_call
from promptcache.transport import _dumps, _encoded, endpoint_format, wrap_http_client

SYSTEM = "You are a support agent for an airline. Follow the policy below.\n" + "Rule: be kind. " * 400


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


def _msgs() -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hello"}]


def test_endpoint_format() -> None:
    assert endpoint_format("/v1/chat/completions")[0].value == "openai-chat"  # type: ignore[index]
    assert endpoint_format("/v1/responses")[0].value == "openai-responses"  # type: ignore[index]
    assert endpoint_format("/v1/messages")[0].value == "anthropic-messages"  # type: ignore[index]
    assert endpoint_format("/v1beta/models/gemini-2.5-flash:streamGenerateContent") == (
        endpoint_format("/v1beta/models/gemini-2.5-flash:generateContent")
    )
    assert endpoint_format("/model/anthropic.claude-v2/converse") is not None
    # botocore's paths: a percent-encoded ARN (its "/" too), and the streaming operation.
    arn = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.claude%3A0/converse-stream"
    found = endpoint_format(arn)
    assert found is not None and found[0].value == "bedrock-converse"
    assert found[1] == "arn:aws:bedrock:us-east-1:1:inference-profile/us.claude:0"
    assert endpoint_format("/v1/messages/count_tokens") is None
    assert endpoint_format("/v1/models") is None


def test_openai_chat_rewritten_inside_a_call_only(emu: Emulator) -> None:
    user_http = httpx.Client()
    transport_before = user_http._transport
    client = openai.OpenAI(base_url=emu.openai_base_url, api_key="k", http_client=wrap_http_client(user_http))
    client.chat.completions.create(model="gpt-4o", messages=_msgs())  # type: ignore[arg-type]
    assert "prompt_cache_key" not in emu.requests[-1]
    ctx = CallContext(cache=PromptCache(), tenant="acme")
    with use_call(ctx):
        client.chat.completions.create(model="gpt-4o", messages=_msgs())  # type: ignore[arg-type]
    assert "prompt_cache_key" in emu.requests[-1]
    assert ctx.plan is not None and ctx.usage is not None and ctx.usage.input_tokens > 0
    assert ctx.body is None  # answered: the rewritten body is let go
    # The caller's client is left as it was, and still usable.
    assert user_http._transport is transport_before and not user_http.is_closed


def test_openai_chat_stream_reads_usage_without_buffering(emu: Emulator) -> None:
    client = openai.OpenAI(base_url=emu.openai_base_url, api_key="k", http_client=wrap_http_client(None))
    ctx = CallContext(cache=PromptCache(), tenant="acme")
    with use_call(ctx):
        stream = client.chat.completions.create(model="gpt-4o", messages=_msgs(), stream=True)  # type: ignore[call-overload]
        assert ctx.usage is None  # nothing read yet: the stream is the caller's to consume
        chunks = list(stream)
    assert chunks and emu.requests[-1]["stream_options"] == {"include_usage": True}
    assert ctx.usage is not None and ctx.usage.input_tokens > 0 and ctx.first_chunk_at is not None


def test_openai_responses(emu: Emulator) -> None:
    client = openai.OpenAI(base_url=emu.openai_base_url, api_key="k", http_client=wrap_http_client(None))
    ctx = CallContext(cache=PromptCache(), tenant="acme")
    with use_call(ctx):
        client.responses.create(model="gpt-4o", instructions=SYSTEM, input="hello")
    assert ctx.format_used is not None and ctx.format_used.value == "openai-responses"
    assert ctx.usage is not None and ctx.usage.input_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_anthropic_async(emu: Emulator, stream: bool) -> None:
    http = wrap_http_client(httpx.AsyncClient())
    client = anthropic.AsyncAnthropic(base_url=emu.anthropic_base_url, api_key="k", http_client=http)
    cache = PromptCache()
    for _ in range(2):
        ctx = CallContext(cache=cache, tenant="acme")
        with use_call(ctx):
            kw: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 32, "system": SYSTEM}
            msgs: Any = [{"role": "user", "content": "hello"}]
            if stream:
                async with client.messages.stream(messages=msgs, **kw) as s:
                    async for _ in s:
                        pass
            else:
                await client.messages.create(messages=msgs, **kw)
        assert "cache_control" in json.dumps(emu.requests[-1])
    # The second call reads the prefix the first one wrote.
    assert ctx.usage is not None and ctx.usage.cache_read_tokens > 0


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_hint_rejection_resends_once_without_hints(use_async: bool) -> None:
    sent: list[dict[str, Any]] = []
    ok = {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 1, "total_tokens": 1201},
    }

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        if "prompt_cache_key" in body:
            err = {"message": "Unrecognized request argument supplied: prompt_cache_key", "type": "invalid"}
            return httpx.Response(400, json={"error": err})
        return httpx.Response(200, json=ok)

    mock = httpx.MockTransport(handle)
    before = HINT_REJECTIONS["hint_rejected"]
    ctx = CallContext(cache=PromptCache(), tenant="acme")
    kw: dict[str, Any] = {"base_url": "http://llm.test/v1", "api_key": "k", "max_retries": 0}
    with use_call(ctx):
        if use_async:
            aclient = openai.AsyncOpenAI(
                http_client=wrap_http_client(httpx.AsyncClient(transport=mock)), **kw
            )
            out = await aclient.chat.completions.create(model="gpt-4o", messages=_msgs())  # type: ignore[arg-type]
        else:
            client = openai.OpenAI(http_client=wrap_http_client(httpx.Client(transport=mock)), **kw)
            out = client.chat.completions.create(model="gpt-4o", messages=_msgs())  # type: ignore[arg-type]
    assert out.choices[0].message.content == "ok"
    assert len(sent) == 2 and "prompt_cache_key" not in sent[1]
    assert ctx.hints_off and HINT_REJECTIONS["hint_rejected"] == before + 1
    assert ctx.usage is not None and ctx.usage.input_tokens == 1200


def test_other_400_passes_through() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "max_tokens is too large", "type": "invalid"}})

    http = wrap_http_client(httpx.Client(transport=httpx.MockTransport(handle)))
    client = openai.OpenAI(base_url="http://llm.test/v1", api_key="k", max_retries=0, http_client=http)
    with use_call(CallContext(cache=PromptCache(), tenant="acme")), pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o", messages=_msgs())  # type: ignore[arg-type]


def test_many_tenants_at_once_through_one_client(emu: Emulator) -> None:
    # One shared SDK client, one call context per thread: each request is keyed for its own tenant.
    from concurrent.futures import ThreadPoolExecutor

    client = openai.OpenAI(base_url=emu.openai_base_url, api_key="k", http_client=wrap_http_client(None))
    cache = PromptCache()

    def call(i: int) -> CallContext:
        ctx = CallContext(cache=cache, tenant=f"t{i % 8}")
        with use_call(ctx):
            client.chat.completions.create(model="gpt-4o", messages=_msgs())  # type: ignore[arg-type]
        return ctx

    with ThreadPoolExecutor(8) as pool:
        done = list(pool.map(call, range(32)))
    assert all(c.usage is not None and c.plan is not None for c in done)
    keys: dict[str, set[str]] = {}
    for c in done:
        assert c.plan is not None
        keys.setdefault(c.tenant, set()).add(c.plan.prefix_key)
    # One prefix key per tenant, and no two tenants share one.
    assert all(len(k) == 1 for k in keys.values()) and len(set().union(*keys.values())) == 8


class _FaultyCache(PromptCache):
    """The real engine with a fault injected where it prepares a request (a bug of ours)."""

    def prepare_request(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyError(SYSTEM[:40])  # an exception whose text quotes the prompt


def test_a_promptcache_fault_sends_the_request_as_built(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    client = openai.OpenAI(
        base_url=emu.openai_base_url, api_key="k", http_client=wrap_http_client(httpx.Client())
    )
    before = HINT_REJECTIONS["request_unchanged"]
    ctx = CallContext(cache=_FaultyCache(), tenant="acme")
    with use_call(ctx), caplog.at_level("WARNING", logger="promptcache.transport"):
        out = client.chat.completions.create(model="gpt-4o", messages=_msgs())  # type: ignore[arg-type]
    assert out.choices[0].message.content  # the user's call succeeded
    assert emu.requests[-1]["messages"] == _msgs() and "prompt_cache_key" not in emu.requests[-1]
    assert HINT_REJECTIONS["request_unchanged"] == before + 1
    assert ctx.plan is None and any("KeyError" in n for n in ctx.notes)
    # Neither the note nor the log quotes the exception's text (it may hold the prompt).
    assert SYSTEM[:40] not in " ".join(ctx.notes) and SYSTEM[:40] not in caplog.text


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_422_naming_a_hint_is_resent_and_remembered(use_async: bool) -> None:
    # An OpenAI-compatible server built on FastAPI refuses unknown fields with 422 and pydantic's
    # error body. The first call pays one refused request; the next ones go out without hints.
    with Emulator(rejects=["prompt_cache_key"], reject_status=422) as server:
        before = HINT_REJECTIONS["hint_rejected"]
        kw: dict[str, Any] = {"base_url": server.openai_base_url, "api_key": "k", "max_retries": 0}
        for _ in range(4):
            ctx = CallContext(cache=PromptCache(), tenant="acme")
            with use_call(ctx):
                if use_async:
                    aclient = openai.AsyncOpenAI(http_client=wrap_http_client(httpx.AsyncClient()), **kw)
                    out = await aclient.chat.completions.create(model="gpt-4o", messages=_msgs())  # type: ignore[arg-type]
                else:
                    client = openai.OpenAI(http_client=wrap_http_client(httpx.Client()), **kw)
                    out = client.chat.completions.create(model="gpt-4o", messages=_msgs())  # type: ignore[arg-type]
            assert out.choices[0].message.content and ctx.usage is not None
        # 4 calls, 5 requests (not 8): one refusal, then each call sent without the hint at once.
        assert len(server.requests) == 5
        assert ["prompt_cache_key" in b for b in server.requests] == [True, False, False, False, False]
        assert HINT_REJECTIONS["hint_rejected"] == before + 1
        # Another model on the same endpoint has refused nothing yet.
        with use_call(CallContext(cache=PromptCache(), tenant="acme")):
            client = openai.OpenAI(http_client=wrap_http_client(httpx.Client()), **kw)
            client.chat.completions.create(model="gpt-4o-mini", messages=_msgs())  # type: ignore[arg-type]
        assert "prompt_cache_key" in server.requests[-2] and "prompt_cache_key" not in server.requests[-1]


def _conversation_bodies(fmt: str) -> Iterator[dict[str, Any]]:
    # A system prompt with a clock line (relocated), tools and a growing conversation: requests
    # whose rewrite appends members only, and requests whose rewrite changes their content.
    conv: list[tuple[str, str]] = []
    for i in range(4):
        conv += [("user", f"question {i}")]
        system = f"Current time: 2026-12-0{i + 1}T10:00:00Z\n{SYSTEM}" if i % 2 else SYSTEM
        yield make_body(fmt, system, TOOL_SPECS[::-1] if i == 2 else TOOL_SPECS, conv, model="gpt-4o")
        conv += [("assistant", f"answer {i}")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_bytes_sent_are_the_rewritten_body(fmt: str) -> None:
    """Sending the SDK's bytes with the appended members (not encoding the body again) sends
    exactly the rewritten body, whatever the rewrite changed; the caller's body is untouched."""
    cache = PromptCache()
    for body in _conversation_bodies(fmt):
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()  # as the SDKs encode
        before = copy.deepcopy(body)
        sent = cache.prepare_request(body, format=fmt, tenant="acme").body
        assert body == before  # the rewrite never edits the body it was given
        got = _encoded(sent, body, content)
        assert json.loads(got) == sent
        assert list(json.loads(got)) == list(sent)  # member order too
        assert got == _dumps(sent) or got.startswith(content[:-1])


def test_appended_members_keep_the_sdks_own_bytes() -> None:
    body = {"model": "gpt-4o", "temperature": 1e-05, "messages": [{"role": "user", "content": "é"}]}
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    sent = {**body, "prompt_cache_key": "k"}
    assert _encoded(sent, body, content) == content[:-1] + b',"prompt_cache_key":"k"}'
    # A changed member, a removed one, a reordered one or no trailing brace: encoded whole.
    for other in (
        {**body, "temperature": 0.5, "prompt_cache_key": "k"},
        {"model": "gpt-4o", "messages": body["messages"], "prompt_cache_key": "k", "x": 1},
        {"temperature": 1e-05, "model": "gpt-4o", "messages": body["messages"], "k": 1},
    ):
        assert json.loads(_encoded(other, body, content)) == other
    assert json.loads(_encoded(sent, body, content + b"\n")) == sent
