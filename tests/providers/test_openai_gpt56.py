"""GPT-5.6 explicit breakpoints on the bodies PromptCache sends, checked against the installed
``openai`` SDK's own request types and against the prompt-caching guide
(developers.openai.com/api/docs/guides/prompt-caching, read 2026-12-07).

The SDK's request params are TypedDicts; pydantic validates them with ``TypeAdapter``, and a key
the type does not know is dropped from the validated value, so "validated == sent" means every
key we send, at every depth, is one the SDK models (a misplaced ``prompt_cache_breakpoint``
fails it, as the last test shows).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import completion_create_params
from openai.types.responses import response_create_params
from pydantic import TypeAdapter, ValidationError

from promptcache.engine import PromptCache
from promptcache.lab.emulate import Emulator
from promptcache.llm_bridge import HINT_REJECTIONS, CallContext, use_call
from promptcache.pricing import cost
from promptcache.providers.gateways import PROFILES, adapt_for_gateway
from promptcache.transport import wrap_http_client

LONG = "\n".join(f"Rule {i}: be courteous and precise about fares and baggage." for i in range(120))
BP = {"mode": "explicit"}
IMAGE = "https://example.com/boarding-pass.png"

CHAT = TypeAdapter(completion_create_params.CompletionCreateParamsNonStreaming)
RESPONSES = TypeAdapter(response_create_params.ResponseCreateParamsNonStreaming)


def _materialize(value: Any) -> Any:
    # The SDK types declare Iterable fields; pydantic validates those lazily, as it iterates.
    if isinstance(value, dict):
        return {k: _materialize(v) for k, v in value.items()}
    if isinstance(value, list | tuple | Iterator) or type(value).__name__ == "ValidatorIterator":
        return [_materialize(v) for v in value]
    return value


def _accepted(adapter: TypeAdapter[Any], body: dict[str, Any]) -> None:
    assert _materialize(adapter.validate_python(body)) == body


def _marked(body: dict[str, Any]) -> list[tuple[int, str, dict[str, Any]]]:
    """(item index, item role or type, part) of every part carrying a breakpoint."""
    key = "messages" if "messages" in body else "input"
    found = []
    for i, item in enumerate(body.get(key) or []):
        parts = item.get("output") if item.get("type") == "function_call_output" else item.get("content")
        for part in parts if isinstance(parts, list) else []:
            if isinstance(part, dict) and "prompt_cache_breakpoint" in part:
                found.append((i, str(item.get("role") or item.get("type")), part))
    return found


def _chat_turns(model: str) -> list[dict[str, Any]]:
    """An agent's growing chat conversation: images, tool calls and results, a clock line."""
    system = {"role": "system", "content": LONG + "\nCurrent time: 2024-03-05T10:{:02d}:00Z"}
    user1 = {
        "role": "user",
        "content": [
            {"type": "text", "text": "Is my bag allowed?"},
            {"type": "image_url", "image_url": {"url": IMAGE}},
        ],
    }
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_reservation", "arguments": '{"id":"ZFA04Y"}'},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": "c1", "content": '{"bags": 1}'}
    answer = {"role": "assistant", "content": "You have one bag."}
    user2 = {"role": "user", "content": "Add a second one."}
    tools = [{"type": "function", "function": {"name": "get_reservation", "parameters": {"type": "object"}}}]
    convs = [[user1], [user1, call, result], [user1, call, result, answer, user2]]
    return [
        {
            "model": model,
            "tools": tools,
            "messages": [{**system, "content": system["content"].format(i)}, *conv],
        }
        for i, conv in enumerate(convs)
    ]


def _responses_turns(model: str) -> list[dict[str, Any]]:
    dev = {"role": "developer", "content": LONG}
    user1 = {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Is my bag allowed?"},
            {"type": "input_image", "image_url": IMAGE, "detail": "auto"},
        ],
    }
    call = {
        "type": "function_call",
        "call_id": "c1",
        "name": "get_reservation",
        "arguments": '{"id":"ZFA04Y"}',
    }
    result = {"type": "function_call_output", "call_id": "c1", "output": '{"bags": 1}'}
    answer = {"role": "assistant", "content": "You have one bag."}
    user2 = {"role": "user", "content": "Add a second one. Time: 2024-03-05T10:0{}:00Z"}
    tools = [
        {"type": "function", "name": "get_reservation", "parameters": {"type": "object"}, "strict": False}
    ]
    convs = [[user1], [user1, call, result], [user1, call, result, answer, user2]]
    return [
        {
            "model": model,
            "instructions": "You are the airline's assistant.",
            "tools": tools,
            "input": [dev, *[{**m, "content": m["content"].format(i)} if m is user2 else m for m in conv]],
            "prompt_cache_options": {"mode": "explicit"},
        }
        for i, conv in enumerate(convs)
    ]


@pytest.mark.parametrize("model", ["gpt-5.6-sol", "gpt-5.6-luna", "gpt-6.2-sol"])
def test_chat_bodies_are_accepted_by_the_sdk_and_follow_the_rules(model: str) -> None:
    cache = PromptCache()
    sent = [cache.prepare_request(b, format="openai-chat", tenant="acme").body for b in _chat_turns(model)]
    for body in sent:
        _accepted(CHAT, body)
        marks = _marked(body)
        assert 1 <= len(marks) <= 4
        # Never on assistant turns; prompt_cache_retention never next to prompt_cache_options.
        assert all(role in {"system", "developer", "user", "tool"} for _, role, _ in marks)
        assert not ("prompt_cache_retention" in body and "prompt_cache_options" in body)
    # The static prefix ends with a breakpoint on every turn (the clock line moved after it).
    assert all(_marked(b)[0][0] == 0 for b in sent)


def test_responses_bodies_are_accepted_by_the_sdk_and_mark_tool_results() -> None:
    cache = PromptCache()
    sent = [
        cache.prepare_request(b, format="openai-responses", tenant="acme").body
        for b in _responses_turns("gpt-5.6-sol")
    ]
    for body in sent:
        _accepted(RESPONSES, body)
        assert isinstance(body["instructions"], str)  # top-level instructions carry none
        marks = _marked(body)
        assert 1 <= len(marks) <= 4
        assert all(role in {"developer", "user", "function_call_output"} for _, role, _ in marks)
        assert body["prompt_cache_options"] == {"mode": "explicit"}
        assert "prompt_cache_retention" not in body
    # Turn 2 ends in a tool result: in explicit mode its breakpoint sits on the tool output,
    # written as input_text parts (the guide's multi-turn agent example).
    second = sent[1]
    items = second["input"]
    assert items[-1]["type"] == "function_call_output"
    assert items[-1]["output"] == [
        {"type": "input_text", "text": '{"bags": 1}', "prompt_cache_breakpoint": BP}
    ]


def test_explicit_mode_reads_where_the_previous_request_ended() -> None:
    """GPT-5.6 explicit mode looks a prefix up only at the request's own breakpoints (the guide,
    "How prefix matching works"): turn 3 keeps a breakpoint where turn 2 ended (its tool
    result), besides the static end and its own end, or it would write turn 2's tail again."""
    cache = PromptCache()
    preps = [
        cache.prepare_request(b, format="openai-responses", tenant="acme")
        for b in _responses_turns("gpt-5.6-sol")
    ]
    third = preps[2].body
    marked_items = [i for i, _, _ in _marked(third)]
    tool_result = next(i for i, it in enumerate(third["input"]) if it.get("type") == "function_call_output")
    assert tool_result in marked_items
    assert 0 in marked_items  # the developer prefix
    assert len(marked_items) == 3
    hinted = [h for h in preps[2].plan.hints if h.kind == "prompt_cache_breakpoint"]
    assert [h.where for h in hinted] == [
        f"$.input[{i}].{'output' if i == tool_result else 'content'}[0]" for i in marked_items
    ]


@pytest.mark.parametrize("model", ["gpt-5.5", "gpt-4.1", "gpt-4o"])
def test_older_models_keep_todays_behaviour(model: str) -> None:
    body = _chat_turns(model)[0]
    out = PromptCache().prepare_request(body, format="openai-chat", tenant="acme").body
    _accepted(CHAT, out)
    assert _marked(out) == [] and "prompt_cache_options" not in out
    assert out["prompt_cache_key"].startswith("pc-")


def test_the_sdk_check_can_fail() -> None:
    """The check above is not vacuous: a breakpoint the SDK does not model is dropped (and so
    caught), and a wrong mode is refused."""
    good = {
        "model": "gpt-5.6-sol",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "x"}]}],
    }
    _accepted(RESPONSES, good)
    on_output = {
        "model": "gpt-5.6-sol",
        "input": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "a", "annotations": [], "prompt_cache_breakpoint": BP}
                ],
            }
        ],
    }
    with pytest.raises(AssertionError):
        _accepted(RESPONSES, on_output)
    wrong_mode = {
        "model": "gpt-5.6-sol",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "x", "prompt_cache_breakpoint": {"mode": "auto"}}],
            }
        ],
    }
    with pytest.raises(ValidationError):
        _accepted(CHAT, wrong_mode)


# -- fallback: a provider or gateway that does not take the GPT-5.6 fields ---------------------


def _has(value: Any, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(_has(v, key) for v in value.values())
    return isinstance(value, list) and any(_has(v, key) for v in value)


def test_a_server_refusing_the_new_fields_gets_the_request_without_them() -> None:
    """An OpenAI-compatible server that predates GPT-5.6 (here the emulator told to refuse the
    fields, as such servers answer: 400 "Extra inputs are not permitted") gets one refused
    request, then the same request without prompt_cache_options and without any breakpoint,
    tool results included; the call succeeds and the rejection is counted."""
    with Emulator(rejects=["prompt_cache_breakpoint", "prompt_cache_options"]) as server:
        before = HINT_REJECTIONS["hint_rejected"]
        client = openai.OpenAI(
            base_url=server.openai_base_url,
            api_key="k",
            max_retries=0,
            http_client=wrap_http_client(httpx.Client()),
        )
        cache = PromptCache()
        for body in _responses_turns("gpt-5.6-sol")[1:2]:
            with use_call(CallContext(cache=cache, tenant="acme")):
                out = client.responses.create(**body)
            assert out.output_text
        first, second = server.requests[0], server.requests[1]
        assert _has(first, "prompt_cache_breakpoint") and "prompt_cache_options" in first
        assert first["input"][-1]["output"][0]["prompt_cache_breakpoint"] == BP  # the tool result
        assert not _has(second, "prompt_cache_breakpoint") and "prompt_cache_options" not in second
        assert second["input"][-1]["output"] == [{"type": "input_text", "text": '{"bags": 1}'}]
        _accepted(RESPONSES, {k: v for k, v in second.items() if k != "stream"})
        assert HINT_REJECTIONS["hint_rejected"] == before + 1


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_gateways_that_do_not_take_them_get_neither(name: str) -> None:
    profile = PROFILES[name]
    body = (
        PromptCache()
        .prepare_request(_responses_turns("gpt-5.6-sol")[1], format="openai-responses", tenant="acme")
        .body
    )
    assert _has(body, "prompt_cache_breakpoint") and "prompt_cache_options" in body
    out = adapt_for_gateway(body, profile, "openai-responses").body
    assert _has(out, "prompt_cache_breakpoint") == ("prompt_cache_breakpoint" in profile.accepts)
    assert ("prompt_cache_options" in out) == ("prompt_cache_options" in profile.accepts)
    assert not ("prompt_cache_options" in out and "prompt_cache_retention" in out)


# -- writes: read from every answer shape, priced at the write rate -------------------------------


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_cache_writes_are_read_from_answers_and_streams_and_priced(api: str, stream: bool) -> None:
    """cache_write_tokens where the SDK types put them (chat ``usage.prompt_tokens_details``,
    responses ``usage.input_tokens_details``; a chat stream's last chunk, a responses stream's
    ``response.completed``), through the transport into the call's figures, priced at
    gpt-5.6-sol's write rate ($6.25 per million: 1.25x its $5 input)."""
    fmt = "openai-chat" if api == "chat" else "openai-responses"
    with Emulator() as server:
        client = openai.OpenAI(
            base_url=server.openai_base_url,
            api_key="k",
            max_retries=0,
            http_client=wrap_http_client(httpx.Client()),
        )
        ctx = CallContext(cache=PromptCache(), tenant="acme")
        with use_call(ctx):
            if api == "chat":
                body = _chat_turns("gpt-5.6-sol")[0]
                if stream:
                    for _ in client.chat.completions.create(**body, stream=True):
                        pass
                else:
                    client.chat.completions.create(**body)
            else:
                body = _responses_turns("gpt-5.6-sol")[0]
                if stream:
                    for _ in client.responses.create(**body, stream=True):
                        pass
                else:
                    client.responses.create(**body)
        (emulated,) = server.usages
    assert ctx.format_used is not None and ctx.format_used.value == fmt
    usage = ctx.usage
    assert usage is not None and emulated is not None
    assert usage.cache_write_tokens == emulated.cache_write_tokens > 1000
    assert usage.input_tokens == emulated.input_tokens
    priced = cost(usage)
    uncached = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
    assert priced.cache_write == pytest.approx(usage.cache_write_tokens * 6.25 / 1e6)
    assert priced.input == pytest.approx(uncached * 5.0 / 1e6)


@pytest.mark.parametrize(("added", "bridged"), [(20, False), (21, True)])
def test_implicit_mode_bridges_only_past_20_eligible_endings(added: int, bridged: bool) -> None:
    """Implicit mode looks up its own breakpoint and 20 earlier eligible message endings: the
    previous request's end needs an explicit breakpoint only once more endings follow it."""
    dev = {"role": "developer", "content": LONG}
    first = [{"role": "user", "content": "Start."}]
    more = [{"role": "user", "content": f"Step {i}."} for i in range(added)]
    cache = PromptCache()
    for conv in (first, first + more):
        body = {"model": "gpt-5.6-sol", "input": [dev, *conv]}
        out = cache.prepare_request(body, format="openai-responses", tenant="acme").body
    assert "prompt_cache_options" not in out  # implicit mode
    marked = [i for i, _, _ in _marked(out)]
    assert marked[0] == 0
    assert (1 in marked) is bridged  # "Start.", where the first request's implicit write ended
