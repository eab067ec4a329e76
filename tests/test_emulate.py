"""The provider emulator against the real ``openai`` and ``anthropic`` SDK clients.

Every test starts an :class:`Emulator` on 127.0.0.1 with an OS-chosen free port and a
fixed clock, so the usage figures are deterministic and are compared with what a
fresh :class:`Simulator` reports for the same bodies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from promptcache.lab.emulate import Emulator, load_script
from promptcache.lab.simulate import Simulator
from promptcache.tokens import count_text

# ~3.2k tokens: above every provider's minimum cacheable prefix used here.
SYSTEM = "".join(
    f"Policy rule {i}: answer politely and check the record before acting.\n" for i in range(300)
)
TOOLS_ANTHROPIC = [
    {
        "name": "get_user",
        "description": "Look a user up.",
        "input_schema": {
            "type": "object",
            "properties": {"user_id": {"type": "string"}},
            "required": ["user_id"],
        },
    }
]
TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "get_user",
            "description": "Look a user up.",
            "parameters": {
                "type": "object",
                "properties": {"user_id": {"type": "string"}},
                "required": ["user_id"],
            },
        },
    }
]
SCRIPT: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "get_user", "arguments": {"user_id": "mia_li_3668", "n": 3}}]},
    {"text": "Your reservation is confirmed."},
]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(port=0, clock=lambda: 10.0) as e:
        yield e


@pytest.fixture
def scripted() -> Iterator[Emulator]:
    with Emulator(port=0, script=SCRIPT, clock=lambda: 10.0) as e:
        yield e


def _anthropic(emu: Emulator, key: str = "sk-ant-test") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key=key, max_retries=0)


def _openai(emu: Emulator, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.openai_base_url, api_key=key, max_retries=0)


def _expected(fmt: str, bodies: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    sim = Simulator()
    out = []
    for b in bodies:
        u = sim.feed(10.0, fmt, b, org="o").usage
        out.append((u.input_tokens, u.cache_read_tokens, u.cache_write_tokens))
    return out


def _input_tokens(emu: Emulator) -> int:
    last = emu.usages[-1]
    assert last is not None
    return last.input_tokens


ANTHROPIC_KW: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 64,
    "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
    "tools": TOOLS_ANTHROPIC,
    "messages": [{"role": "user", "content": "Book me a flight please"}],
}


def test_urls(emu: Emulator) -> None:
    assert emu.base_url == f"http://127.0.0.1:{emu.port}"
    assert emu.openai_base_url == emu.base_url + "/v1"
    assert emu.anthropic_base_url == emu.base_url
    assert emu.port > 0


def test_anthropic_sync_script_tool_use_then_text_and_cache(scripted: Emulator) -> None:
    client = _anthropic(scripted)
    r1 = client.messages.create(**ANTHROPIC_KW)
    assert r1.stop_reason == "tool_use"
    assert [b.type for b in r1.content] == ["tool_use"]
    tu = r1.content[0]
    assert tu.type == "tool_use"
    assert (tu.name, tu.input, tu.id) == ("get_user", {"user_id": "mia_li_3668", "n": 3}, "toolu_emu000100")
    r2 = client.messages.create(**ANTHROPIC_KW)
    assert r2.stop_reason == "end_turn"
    assert r2.content[0].type == "text" and r2.content[0].text == "Your reservation is confirmed."
    # Script exhausted: echo of the last user text.
    r3 = client.messages.create(**ANTHROPIC_KW)
    assert r3.content[0].type == "text" and r3.content[0].text == "echo: Book me a flight please"

    exp = _expected("anthropic-messages", scripted.requests)
    (t1, read1, w1), (t2, read2, w2) = exp[0], exp[1]
    assert read1 == 0 and w1 > 3000 and read2 == w1 and w2 == 0
    # Anthropic's input_tokens excludes cache reads and writes.
    assert r1.usage.cache_creation_input_tokens == w1
    assert r1.usage.cache_read_input_tokens == 0
    assert r1.usage.input_tokens == t1 - w1
    assert r1.usage.cache_creation is not None and r1.usage.cache_creation.ephemeral_5m_input_tokens == w1
    assert r2.usage.cache_read_input_tokens == read2
    assert r2.usage.input_tokens == t2 - read2
    assert len(scripted.requests) == 3 and scripted.paths == ["/v1/messages"] * 3
    assert scripted.requests[0]["messages"] == ANTHROPIC_KW["messages"]


def test_anthropic_stream_helper_and_raw_events(scripted: Emulator) -> None:
    client = _anthropic(scripted)
    with client.messages.stream(**ANTHROPIC_KW) as s:
        m1 = s.get_final_message()
    assert m1.content[0].type == "tool_use"
    assert m1.content[0].input == {"user_id": "mia_li_3668", "n": 3}
    with client.messages.stream(**ANTHROPIC_KW) as s:
        text = "".join(s.text_stream)
        m2 = s.get_final_message()
    assert text == "Your reservation is confirmed."
    w = m1.usage.cache_creation_input_tokens
    assert w is not None and w > 3000
    assert m2.usage.cache_read_input_tokens == w  # from message_delta's cumulative usage
    assert m2.usage.output_tokens == count_text("Your reservation is confirmed.", "claude-sonnet-4-6")

    raw = client.messages.create(**ANTHROPIC_KW, stream=True)
    events = list(raw)
    names = [e.type for e in events]
    # The SDK drops ping events; the raw stream below shows them.
    assert names[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert names[-2:] == ["message_delta", "message_stop"]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert start.message.usage.cache_read_input_tokens == w
    assert (
        delta.usage.cache_read_input_tokens == w
        and delta.usage.input_tokens == start.message.usage.input_tokens
    )

    with httpx.stream(
        "POST",
        scripted.base_url + "/v1/messages",
        json=dict(ANTHROPIC_KW, stream=True),
        headers={"x-api-key": "k"},
    ) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in resp.iter_lines() if ln.startswith("event: ")]
    assert [ln[7:] for ln in lines] == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_openai_chat_sync_stream_and_tool_calls(scripted: Emulator) -> None:
    client = _openai(scripted)
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Book me a flight please"}]
    r1 = client.chat.completions.create(model="gpt-4o", messages=msgs, tools=TOOLS_OPENAI)  # type: ignore[arg-type]
    assert r1.choices[0].finish_reason == "tool_calls"
    calls = r1.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    fn = calls[0].function  # type: ignore[union-attr]
    assert (fn.name, json.loads(fn.arguments)) == ("get_user", {"user_id": "mia_li_3668", "n": 3})
    assert r1.usage is not None and r1.usage.prompt_tokens_details is not None
    assert r1.usage.prompt_tokens_details.cached_tokens == 0

    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=msgs,  # type: ignore[arg-type]
        tools=TOOLS_OPENAI,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Your reservation is confirmed."
    )
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    exp = _expected("openai-chat", scripted.requests)
    assert r1.usage.prompt_tokens == exp[0][0]
    assert last.usage.prompt_tokens == exp[1][0]
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == exp[1][1] and exp[1][1] >= 1024
    assert exp[1][1] % 128 == 0

    # Without include_usage no chunk carries usage; the stream helper accumulates.
    with client.chat.completions.stream(model="gpt-4o", messages=msgs) as s:  # type: ignore[arg-type]
        final = s.get_final_completion()
    assert final.choices[0].message.content == "echo: Book me a flight please"


def test_openai_chat_stream_tool_call_accumulates(scripted: Emulator) -> None:
    client = _openai(scripted)
    with client.chat.completions.stream(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        tools=TOOLS_OPENAI,  # type: ignore[list-item]
    ) as s:
        final = s.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None and calls[0].id == "call_emu000100"
    assert json.loads(calls[0].function.arguments) == {"user_id": "mia_li_3668", "n": 3}  # type: ignore[union-attr]
    assert final.choices[0].finish_reason == "tool_calls"


def test_openai_responses_sync_and_stream(scripted: Emulator) -> None:
    client = _openai(scripted)
    kw: dict[str, Any] = {"model": "gpt-4o", "instructions": SYSTEM, "input": "Book me a flight please"}
    r1 = client.responses.create(**kw)
    fc = [o for o in r1.output if o.type == "function_call"]
    assert len(fc) == 1 and fc[0].name == "get_user" and json.loads(fc[0].arguments)["n"] == 3  # type: ignore[union-attr]
    assert r1.usage is not None and r1.usage.input_tokens_details.cached_tokens == 0
    with client.responses.stream(**kw) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        r2 = s.get_final_response()
    assert "".join(deltas) == "Your reservation is confirmed." == r2.output_text
    exp = _expected("openai-responses", scripted.requests)
    assert r2.usage is not None
    assert (r2.usage.input_tokens, r2.usage.input_tokens_details.cached_tokens) == exp[1][:2]
    assert exp[1][1] >= 1024
    events = list(client.responses.create(**kw, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.output_text == "echo: Book me a flight please"  # type: ignore[union-attr]


async def test_async_clients(emu: Emulator) -> None:
    aa = anthropic.AsyncAnthropic(base_url=emu.anthropic_base_url, api_key="a", max_retries=0)
    r = await aa.messages.create(**ANTHROPIC_KW)
    assert r.content[0].type == "text" and r.content[0].text == "echo: Book me a flight please"
    async with aa.messages.stream(**ANTHROPIC_KW) as s:
        m = await s.get_final_message()
    assert m.usage.cache_read_input_tokens == r.usage.cache_creation_input_tokens
    ao = openai.AsyncOpenAI(base_url=emu.openai_base_url, api_key="a", max_retries=0)
    c = await ao.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x y"}])
    assert c.choices[0].message.content == "echo: x y"
    stream = await ao.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "z"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [ch async for ch in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == _input_tokens(emu)
    resp = await ao.responses.create(model="gpt-4o-mini", input="hello")
    assert resp.output_text == "echo: hello"
    events = [e async for e in await ao.responses.create(model="gpt-4o-mini", input="hello", stream=True)]
    assert events[-1].type == "response.completed"
    assert len(emu.requests) == 6


def test_cache_is_per_organization_and_reset(emu: Emulator) -> None:
    a1, a2 = _anthropic(emu, "key-one"), _anthropic(emu, "key-two")
    first = a1.messages.create(**ANTHROPIC_KW).usage
    other_org = a2.messages.create(**ANTHROPIC_KW).usage
    same_org = a1.messages.create(**ANTHROPIC_KW).usage
    assert first.cache_read_input_tokens == 0
    assert (
        other_org.cache_read_input_tokens == 0
        and other_org.cache_creation_input_tokens == first.cache_creation_input_tokens
    )
    assert same_org.cache_read_input_tokens == first.cache_creation_input_tokens
    emu.reset()
    assert emu.requests == [] and emu.usages == []
    again = a1.messages.create(**ANTHROPIC_KW).usage
    assert again.cache_read_input_tokens == 0 and len(emu.requests) == 1


def test_ttl_expiry_follows_clock() -> None:
    now = [0.0]
    with Emulator(clock=lambda: now[0]) as e:
        client = _anthropic(e)
        w = client.messages.create(**ANTHROPIC_KW).usage.cache_creation_input_tokens
        now[0] = 200.0
        assert client.messages.create(**ANTHROPIC_KW).usage.cache_read_input_tokens == w
        now[0] = 200.0 + 301.0  # 5-minute TTL, refreshed by the hit at 200 s
        late = client.messages.create(**ANTHROPIC_KW).usage
    assert late.cache_read_input_tokens == 0 and late.cache_creation_input_tokens == w


def test_errors_in_each_providers_shape(emu: Emulator) -> None:
    bp = {"type": "ephemeral"}
    too_many = dict(
        ANTHROPIC_KW,
        system=[{"type": "text", "text": f"s{i}", "cache_control": bp} for i in range(5)],
    )
    with pytest.raises(anthropic.BadRequestError) as ei:
        _anthropic(emu).messages.create(**too_many)
    assert ei.value.status_code == 400
    r = httpx.post(
        emu.openai_base_url + "/chat/completions", content=b"{nope", headers={"Authorization": "Bearer k"}
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(emu.base_url + "/v1/messages", json={"messages": []})
    assert r.status_code == 401 and r.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "missing API key"},
    }
    r = httpx.post(emu.base_url + "/v1/nothing", json={}, headers={"x-api-key": "k"})
    assert r.status_code == 404
    # Bodies the provider would reject are recorded too, with no usage; unparsable ones are not.
    assert len(emu.requests) == 1 and emu.usages == [None] and emu.requests[0]["system"][4]["text"] == "s4"


def test_cross_provider_rules() -> None:
    """OpenAI-format traffic priced by Anthropic's rules: explicit breakpoints only, so no cache."""
    with Emulator(provider_rules="anthropic", clock=lambda: 1.0) as e:
        client = _openai(e)
        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}]
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o", messages=msgs)  # type: ignore[arg-type]
    assert [(u.provider, u.cache_read_tokens) for u in e.usages if u] == [("anthropic", 0), ("anthropic", 0)]


def test_load_script_and_cli(tmp_path: Path) -> None:
    path = tmp_path / "script.jsonl"
    path.write_text('{"text": "one"}\n{"tool_calls": [{"name": "f", "arguments": {"a": 1}}]}\n')
    items = load_script(path)
    assert [type(i).__name__ for i in items] == ["ScriptText", "ScriptToolCalls"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptcache.cli", "emulate", "--port", "0", "--script", str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("promptcache emulator on http://127.0.0.1:")
        base = line.split(" on ")[1].strip()
        client = openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0)
        r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == "one"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _genai(emu: Emulator, key: str = "gm-test") -> Any:
    from google import genai
    from google.genai import types

    opts = types.HttpOptions(base_url=emu.base_url, api_version="v1beta")
    return genai.Client(api_key=key, http_options=opts)


def test_gemini_generate_stream_and_cached_contents(emu: Emulator) -> None:
    from google.genai import errors, types

    client = _genai(emu)
    config = types.GenerateContentConfig(system_instruction=SYSTEM)
    first = client.models.generate_content(model="gemini-2.5-flash", contents="hello there", config=config)
    assert first.text == "echo: hello there"
    chunks = list(
        client.models.generate_content_stream(model="gemini-2.5-flash", contents="hello there", config=config)
    )
    assert "".join(c.text or "" for c in chunks) == "echo: hello there"
    body = emu.requests[0]
    sim = Simulator()
    expected = [sim.feed(10.0, "gemini", body, org="o", model="gemini-2.5-flash").usage for _ in range(2)]
    meta = [first.usage_metadata, chunks[-1].usage_metadata]
    assert [(m.prompt_token_count, m.cached_content_token_count or 0) for m in meta if m] == [
        (u.input_tokens, u.cache_read_tokens) for u in expected
    ]
    assert expected[1].cache_read_tokens > 1000 and chunks[-1].usage_metadata.candidates_token_count
    assert emu.paths[1] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"

    cached = client.caches.create(
        model="gemini-2.5-flash",
        config=types.CreateCachedContentConfig(system_instruction=SYSTEM, ttl="120s"),
    )
    assert cached.name in emu.cached_contents and cached.usage_metadata.total_token_count > 1000
    answer = client.models.generate_content(
        model="gemini-2.5-flash", contents="q", config=types.GenerateContentConfig(cached_content=cached.name)
    )
    assert answer.usage_metadata.cached_content_token_count == cached.usage_metadata.total_token_count
    client.caches.delete(name=cached.name)
    assert emu.cached_contents == []
    with pytest.raises(errors.ClientError) as ei:  # a deleted cache is refused, as Gemini does
        client.models.generate_content(
            model="gemini-2.5-flash",
            contents="q",
            config=types.GenerateContentConfig(cached_content=cached.name),
        )
    assert ei.value.code == 403
    assert client.models.get(model="gemini-2.5-flash").input_token_limit == 1048576
    r = httpx.post(emu.base_url + "/v1beta/models/gemini-2.5-flash:generateContent", json={"contents": []})
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"


def test_a_busy_port_is_one_line_not_a_traceback() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "promptcache.cli", "emulate", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        f"promptcache emulate: cannot listen on 127.0.0.1:{port}: the port is already in use "
        "(pick another with --port, or --port 0 for any free port)\n"
    )


def test_a_bad_script_is_named(tmp_path: Path) -> None:
    script = tmp_path / "turns.jsonl"
    script.write_text('{"text": "hi"}\n{"tool_calls": [{"arguments": {}}]}\n')
    done = subprocess.run(
        [sys.executable, "-m", "promptcache.cli", "emulate", "--port", "0", "--script", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(
        f"promptcache emulate: {script}: turn 2: field 'tool_calls[0].name': Field required; each turn is"
    )


def test_light_mode_reads_a_repeated_prefix_by_bytes_and_streams() -> None:
    """Light mode (load tests): provider-shaped usage from the bytes as sent, per organization."""
    with Emulator(port=0, light=True) as light:
        client = _openai(light, "key-light")
        system = {"role": "system", "content": SYSTEM}
        first = client.chat.completions.create(
            model="gpt-4o", messages=[system, {"role": "user", "content": "one"}]
        ).usage
        second = client.chat.completions.create(
            model="gpt-4o", messages=[system, {"role": "user", "content": "two"}]
        ).usage
        other_org = (
            _openai(light, "key-other")
            .chat.completions.create(model="gpt-4o", messages=[system, {"role": "user", "content": "two"}])
            .usage
        )
        # A line on top that changes (a clock) leaves no common prefix.
        moved = client.chat.completions.create(
            model="gpt-4o",
            messages=[
                {"role": "system", "content": "Now: 10:00\n" + SYSTEM},
                {"role": "user", "content": "x"},
            ],
        ).usage
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=[
                    {"role": "system", "content": "Now: 10:00\n" + SYSTEM},
                    {"role": "user", "content": "y"},
                ],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert first is not None and second is not None and other_org is not None and moved is not None
    raw = json.dumps({"messages": [system, {"role": "user", "content": "one"}], "model": "gpt-4o"})
    assert abs(first.prompt_tokens - len(raw) / 4) < 50  # ~4 bytes a token, as sent
    assert first.prompt_tokens_details is not None and first.prompt_tokens_details.cached_tokens == 0
    cached = second.prompt_tokens_details.cached_tokens if second.prompt_tokens_details else 0
    assert cached >= 1024 and cached % 128 == 0 and cached < second.prompt_tokens
    assert other_org.prompt_tokens_details is not None and other_org.prompt_tokens_details.cached_tokens == 0
    assert moved.prompt_tokens_details is not None and moved.prompt_tokens_details.cached_tokens == 0
    last = chunks[-1].usage
    assert last is not None and last.prompt_tokens_details is not None
    assert last.prompt_tokens_details.cached_tokens >= 1024  # same prefix as the request before
