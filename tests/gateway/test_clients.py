"""Issue 24, proof "Clients": the official SDKs and curl, through a real gateway, to the emulator.

A client whose system prompt starts with a clock line (a new time on every call) gets provider
cache reads from its second or third call through the gateway; talking to the emulator directly,
the same client gets none. Streaming and not, sync and async, OpenAI Chat Completions, OpenAI
Responses and Anthropic Messages; then plain curl.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import anthropic
import openai
import pytest
from conftest import ServerThread, clock_system, start_gateway

from promptcache.gateway.tenant import key_tenant
from promptcache.lab.emulate import Emulator

CALLS = 3
KINDS = ["chat", "chat-stream", "responses", "responses-stream", "messages", "messages-stream"]


# One emulator and one gateway for the module: each test uses API keys of its own, so its
# provider cache (per key, in the emulator) and its tenant (per key, in the gateway) are its own.
@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """The module's emulator."""
    with Emulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def gateway(emulator: Emulator) -> Iterator[ServerThread]:
    """The module's gateway in front of :func:`emulator`."""
    server = start_gateway(emulator.base_url)
    yield server
    server.stop()


@lru_cache
def _openai(base: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


@lru_cache
def _anthropic(base: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)


def call_sync(kind: str, base: str, key: str, i: int) -> tuple[int, str]:
    """One call of ``kind`` with the clock of call ``i``: (cache-read tokens, answer text)."""
    system, user = clock_system(i), f"question {i}"
    if kind.startswith("messages"):
        a = _anthropic(base, key)
        args: dict[str, Any] = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 32,
            "system": system,
            "messages": [{"role": "user", "content": user}],
        }
        if kind.endswith("stream"):
            with a.messages.stream(**args) as stream:
                text = "".join(stream.text_stream)
                m = stream.get_final_message()
        else:
            m = a.messages.create(**args)
            text = "".join(b.text for b in m.content if b.type == "text")
        return m.usage.cache_read_input_tokens or 0, text
    o = _openai(base, key)
    if kind.startswith("responses"):
        if kind.endswith("stream"):
            events = list(o.responses.create(model="gpt-4o", instructions=system, input=user, stream=True))
            done = next(e for e in events if e.type == "response.completed").response
        else:
            done = o.responses.create(model="gpt-4o", instructions=system, input=user)
        assert done.usage is not None
        return done.usage.input_tokens_details.cached_tokens, done.output_text
    messages: Any = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if kind.endswith("stream"):
        chunks = list(
            o.chat.completions.create(
                model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}
            )
        )
        usage = chunks[-1].usage
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        r = o.chat.completions.create(model="gpt-4o", messages=messages)
        usage, text = r.usage, r.choices[0].message.content or ""
    assert usage is not None and usage.prompt_tokens_details is not None
    return usage.prompt_tokens_details.cached_tokens or 0, text


async def call_async(kind: str, base: str, key: str, i: int) -> tuple[int, str]:
    """The asyncio twin of :func:`call_sync`, with the SDKs' async clients."""
    system, user = clock_system(i), f"question {i}"
    if kind.startswith("messages"):
        a = anthropic.AsyncAnthropic(base_url=base, api_key=key, max_retries=0)
        args: dict[str, Any] = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 32,
            "system": system,
            "messages": [{"role": "user", "content": user}],
        }
        if kind.endswith("stream"):
            async with a.messages.stream(**args) as stream:
                text = "".join([t async for t in stream.text_stream])
                m = await stream.get_final_message()
        else:
            m = await a.messages.create(**args)
            text = "".join(b.text for b in m.content if b.type == "text")
        return m.usage.cache_read_input_tokens or 0, text
    o = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    if kind.startswith("responses"):
        if kind.endswith("stream"):
            stream = await o.responses.create(model="gpt-4o", instructions=system, input=user, stream=True)
            events = [e async for e in stream]
            done = next(e for e in events if e.type == "response.completed").response
        else:
            done = await o.responses.create(model="gpt-4o", instructions=system, input=user)
        assert done.usage is not None
        return done.usage.input_tokens_details.cached_tokens, done.output_text
    messages: Any = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if kind.endswith("stream"):
        s = await o.chat.completions.create(
            model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in s]
        usage = chunks[-1].usage
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        r = await o.chat.completions.create(model="gpt-4o", messages=messages)
        usage, text = r.usage, r.choices[0].message.content or ""
    assert usage is not None and usage.prompt_tokens_details is not None
    return usage.prompt_tokens_details.cached_tokens or 0, text


def _check(through: list[tuple[int, str]], direct: list[tuple[int, str]]) -> None:
    reads = [r for r, _ in through]
    assert all(text for _, text in through + direct), "every answer was parsed by the SDK"
    assert reads[0] == 0 and (reads[1] > 0 or reads[2] > 0), reads  # from the 2nd or 3rd call
    assert reads[-1] > 0, reads  # and from then on
    assert [r for r, _ in direct] == [0] * CALLS  # the clock line kills the prefix


@pytest.mark.parametrize("kind", KINDS)
def test_sync_clients_get_cache_reads_through_the_gateway_and_none_direct(
    kind: str, gateway: ServerThread, emulator: Emulator
) -> None:
    key = f"sk-sync-{kind}"
    through = [call_sync(kind, gateway.url, key, i) for i in range(CALLS)]
    direct = [call_sync(kind, emulator.base_url, key + "-direct", i) for i in range(CALLS)]
    _check(through, direct)
    # The usage reached the cache's figures, under the key's tenant.
    stats = gateway.app.state.gateway.cache.stats().for_tenant(key_tenant(key))
    assert stats.calls == CALLS and stats.cache_read_tokens == sum(r for r, _ in through)


@pytest.mark.parametrize("kind", KINDS)
async def test_async_clients_get_cache_reads_through_the_gateway_and_none_direct(
    kind: str, gateway: ServerThread, emulator: Emulator
) -> None:
    key = f"sk-async-{kind}"
    through = [await call_async(kind, gateway.url, key, i) for i in range(CALLS)]
    direct = [await call_async(kind, emulator.base_url, key + "-direct", i) for i in range(CALLS)]
    _check(through, direct)


CURL = shutil.which("curl")


def _curl(url: str, body: dict[str, Any], headers: list[str]) -> str:
    assert CURL is not None
    cmd = [CURL, "-sS", "-N", "--fail-with-body", "-X", "POST", url, "-H", "content-type: application/json"]
    for h in headers:
        cmd += ["-H", h]
    done = subprocess.run(
        [*cmd, "--data-binary", "@-"], input=json.dumps(body), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def _sse_data(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data: {")]


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
@pytest.mark.parametrize("stream", [False, True])
def test_curl_through_the_gateway(stream: bool, gateway: ServerThread) -> None:
    reads_openai, reads_anthropic = [], []
    for i in range(CALLS):
        chat = {
            "model": "gpt-4o",
            "messages": [{"role": "system", "content": clock_system(i)}, {"role": "user", "content": "hi"}],
            "stream": stream,
        }
        out = _curl(f"{gateway.url}/v1/chat/completions", chat, [f"authorization: Bearer sk-curl-{stream}"])
        usage = (
            next(e["usage"] for e in _sse_data(out) if e.get("usage")) if stream else json.loads(out)["usage"]
        )
        reads_openai.append(usage["prompt_tokens_details"]["cached_tokens"])
        msg = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 16,
            "system": clock_system(i),
            "messages": [{"role": "user", "content": "hi"}],
            "stream": stream,
        }
        out = _curl(
            f"{gateway.url}/v1/messages",
            msg,
            [f"x-api-key: sk-curl-{stream}", "anthropic-version: 2023-06-01"],
        )
        if stream:
            usage = next(e["message"]["usage"] for e in _sse_data(out) if e.get("type") == "message_start")
        else:
            usage = json.loads(out)["usage"]
        reads_anthropic.append(usage["cache_read_input_tokens"])
    for reads in (reads_openai, reads_anthropic):
        assert reads[0] == 0 and reads[2] > 0, reads
