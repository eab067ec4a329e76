"""``CachingChatModel`` is transparent to structured output and tool binding (issue 20, item 4).

For every ``method=`` of ``with_structured_output`` (OpenAI: ``json_schema``, ``function_calling``,
``json_mode``; Anthropic: ``function_calling``, ``json_schema``) and for ``bind_tools`` with a
forced ``tool_choice``, the unwrapped model and the wrapped one send to the emulator; the wrapped
body must be ``prepare_request`` of the unwrapped one (the same request mechanism:
``response_format``, ``tools``, ``tool_choice``, ``output_config``), and both parse the same answer.
The emulator plays the model with the same scripted answer for both (JSON text or a tool call).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from helpers_lc import base_url, make_model, wire_format
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from promptcache_langchain import CachingChatModel
from pydantic import BaseModel

from promptcache import PromptCache

Emulator = pytest.importorskip("promptcache.lab.emulate").Emulator

CFG = {"configurable": {"tenant_id": "acme"}}
ANSWER = {"name": "Mia Li", "age": 33}


class Person(BaseModel):
    """A passenger of the airline."""

    name: str
    age: int


# (provider, method, how the model answers, the request fields that say the mechanism)
CASES = [
    ("openai", "json_schema", "text", ("response_format",)),
    ("openai", "function_calling", "tool", ("tools", "tool_choice", "parallel_tool_calls")),
    ("openai", "json_mode", "text", ("response_format",)),
    ("anthropic", "function_calling", "tool", ("tools", "tool_choice")),
    ("anthropic", "json_schema", "text", ("output_config", "output_format")),
]


def _turn(answer: str) -> dict[str, Any]:
    if answer == "tool":
        return {"tool_calls": [{"name": "Person", "arguments": ANSWER}]}
    return {"text": json.dumps(ANSWER)}


@pytest.fixture
def messages(airline_policy: str) -> list[Any]:
    return [SystemMessage(airline_policy), HumanMessage("Who is on reservation ZFA04Y? Answer as JSON.")]


@pytest.fixture(scope="module")
def airline_policy() -> str:
    from promptcache.lab.bundled import AGENTS

    return (AGENTS / "tau_bench_airline_system_prompt.md").read_text()


def _emulator(turn: dict[str, Any], n: int) -> Iterator[Any]:
    with Emulator(port=0, script=[turn] * n) as emu:
        yield emu


def _same_mechanism(emu: Any, provider: str, fields: tuple[str, ...], tool: str = "Person") -> None:
    sent_bare, sent = emu.requests[-2], emu.requests[-1]
    expected = PromptCache().prepare_request(sent_bare, format=wire_format(provider), tenant="acme").body
    assert sent == expected
    assert any(f in sent_bare for f in fields)
    for f in fields:
        # The mechanism itself is the unwrapped model's (promptcache only adds a cache hint, on
        # the last tool, which the full comparison above covers).
        if f == "tools":
            assert [{k: v for k, v in t.items() if k != "cache_control"} for t in sent[f]] == sent_bare[f]
        else:
            assert sent.get(f) == sent_bare.get(f)
    if provider == "openai" and "tool_choice" in sent:
        assert sent["tool_choice"] != "required"
    if provider == "anthropic" and "tool_choice" in sent:
        assert sent["tool_choice"]["type"] == "tool" and sent["tool_choice"]["name"] == tool


@pytest.mark.parametrize("include_raw", [False, True], ids=["parsed", "include_raw"])
@pytest.mark.parametrize(
    ("provider", "method", "answer", "fields"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
async def test_structured_output_is_the_inner_models_own(
    messages: list[Any], provider: str, method: str, answer: str, fields: tuple[str, ...], include_raw: bool
) -> None:
    for emu in _emulator(_turn(answer), 4):
        url = base_url(emu, provider)
        bare = make_model(provider, url, "k").with_structured_output(
            Person, method=method, include_raw=include_raw
        )
        cache = PromptCache()
        wrapped = CachingChatModel(make_model(provider, url, "k"), cache).with_structured_output(
            Person, method=method, include_raw=include_raw
        )
        for call in ("invoke", "ainvoke"):
            if call == "invoke":
                want, got = bare.invoke(messages), wrapped.invoke(messages, config=CFG)
            else:
                want, got = await bare.ainvoke(messages), await wrapped.ainvoke(messages, config=CFG)
            _same_mechanism(emu, provider, fields)
            if include_raw:
                assert got["parsing_error"] is None and want["parsing_error"] is None
                assert isinstance(got["raw"], AIMessage)
                assert got["raw"].response_metadata["promptcache"]["tenant"] == "acme"
                want, got = want["parsed"], got["parsed"]
            assert got == want == Person(**ANSWER)
        assert cache.stats().for_tenant("acme").calls == 2


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_bind_tools_with_a_forced_choice_is_the_inner_models_own(messages: list[Any], provider: str) -> None:
    @tool
    def get_reservation(reservation_id: str) -> str:
        """Get a reservation by its id."""
        return "{}"

    turn = {"tool_calls": [{"name": "get_reservation", "arguments": {"reservation_id": "ZFA04Y"}}]}
    for emu in _emulator(turn, 2):
        url = base_url(emu, provider)
        bare = make_model(provider, url, "k").bind_tools([get_reservation], tool_choice="get_reservation")
        wrapped = CachingChatModel(make_model(provider, url, "k"), PromptCache()).bind_tools(
            [get_reservation], tool_choice="get_reservation"
        )
        want, got = bare.invoke(messages), wrapped.invoke(messages, config=CFG)
        _same_mechanism(emu, provider, ("tools", "tool_choice"), tool="get_reservation")
        assert got.tool_calls[0]["args"] == want.tool_calls[0]["args"] == {"reservation_id": "ZFA04Y"}
