"""Anthropic mid-conversation tool changes (issue 23, item 2): with
``PromptCache(mid_conversation_tools=True)``, a tool added or removed inside a conversation is
expressed as a ``tool_addition`` / ``tool_removal`` block in a system message (the added tool
declared with ``defer_loading``) on the models the catalog lists, so the cached prefix is read
across the change; without it, the rewritten tools block is a full miss.

The real ``anthropic`` SDK talks to promptcache's emulator (which renders deferred tools where a
``tool_addition`` offers them, and refuses a system message on a model without the capability).
Bodies are checked with the SDK's own request TypedDicts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types.beta import (
    BetaMessageParam,
    BetaRequestToolAdditionBlockParam,
    BetaRequestToolRemovalBlockParam,
    BetaTextBlockParam,
    BetaToolParam,
)
from anthropic.types.beta.message_create_params import MessageCreateParamsNonStreaming
from pydantic import TypeAdapter

from promptcache import PromptCache
from promptcache.lab.emulate import Emulator
from promptcache.lab.simulate import Simulator
from promptcache.llm_bridge import CallContext, use_call
from promptcache.providers.mid_conversation import TOOL_CHANGES_BETA, ConversationState, apply_changes
from promptcache.transport import wrap_http_client

SYSTEM = "You are a support agent for an airline. Follow the policy below.\n" + "Rule: be kind. " * 400
SCHEMA = {"type": "object", "properties": {"reservation_id": {"type": "string"}}}
GET = {"name": "get_reservation", "description": "Look a reservation up.", "input_schema": SCHEMA}
CANCEL = {"name": "cancel_reservation", "description": "Cancel a reservation.", "input_schema": SCHEMA}
BAGS = {"name": "update_baggages", "description": "Set the number of bags.", "input_schema": SCHEMA}
PARAMS = TypeAdapter(MessageCreateParamsNonStreaming)
ADDITION = TypeAdapter(BetaRequestToolAdditionBlockParam)
REMOVAL = TypeAdapter(BetaRequestToolRemovalBlockParam)
TOOL = TypeAdapter(BetaToolParam)
TEXT = TypeAdapter(BetaTextBlockParam)
MESSAGE = TypeAdapter(BetaMessageParam)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


def _conversation(emu: Emulator, cache: PromptCache, model: str) -> list[CallContext]:
    """Three turns: GET only, then CANCEL and BAGS added, then CANCEL removed."""
    http = wrap_http_client(None)
    client = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="k", http_client=http)
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "I want to change my flight"}]
    out = []
    for tools, reply in (([GET], "Which one?"), ([GET, CANCEL, BAGS], "Done."), ([GET, BAGS], "Ok.")):
        ctx = CallContext(cache=cache, tenant="acme")
        with use_call(ctx):
            client.messages.create(model=model, max_tokens=32, system=SYSTEM, tools=tools, messages=msgs)
        out.append(ctx)
        msgs = [*msgs, {"role": "assistant", "content": reply}, {"role": "user", "content": "next"}]
    return out


def _valid(body: dict[str, Any]) -> None:
    PARAMS.validate_python(body)
    for tool in body["tools"]:
        TOOL.validate_python(tool)
    blocks = {"tool_addition": ADDITION, "tool_removal": REMOVAL, "text": TEXT}
    for m in body["messages"]:
        if m["role"] == "system":
            MESSAGE.validate_python(m)
            for blk in m["content"]:
                blocks[blk["type"]].validate_python(blk)


def test_the_cache_is_read_across_a_tool_addition_and_removal(emu: Emulator) -> None:
    calls = _conversation(emu, PromptCache(mid_conversation_tools=True), "claude-opus-5-5")
    reads = [c.usage.cache_read_tokens if c.usage else -1 for c in calls]
    assert reads[0] == 0 and reads[1] > 1500 and reads[2] > reads[1]
    second, third = emu.requests[1], emu.requests[2]
    for body in (second, third):
        _valid(body)
        # The tools block as first sent leads; the added ones are deferred after it.
        assert [t["name"] for t in body["tools"]] == [
            "get_reservation",
            "cancel_reservation",
            "update_baggages",
        ]
        assert [t.get("defer_loading", False) for t in body["tools"]] == [False, True, True]
    changes = [m for m in third["messages"] if m["role"] == "system"]
    assert [[(b["type"], b["tool"]["name"]) for b in m["content"]] for m in changes] == [
        [("tool_addition", "cancel_reservation"), ("tool_addition", "update_baggages")],
        [("tool_removal", "cancel_reservation")],
    ]
    # Each change stays where it happened: the second turn's system message is resent as it was.
    at = [i for i, m in enumerate(second["messages"]) if m["role"] == "system"]
    assert at == [len(second["messages"]) - 1]
    assert third["messages"][at[0]] == second["messages"][at[0]]
    assert "tool_change" in [h.kind for h in calls[1].plan.hints]
    assert any("added mid-conversation" in d for d in calls[1].plan.decisions)


def test_without_the_option_the_rewritten_tools_block_is_a_full_miss(emu: Emulator) -> None:
    calls = _conversation(emu, PromptCache(), "claude-opus-5-5")
    assert calls[1].usage is not None and calls[1].usage.cache_read_tokens == 0
    assert all(m["role"] != "system" for m in emu.requests[1]["messages"])


def test_models_without_the_capability_keep_todays_behaviour(emu: Emulator) -> None:
    # Sonnet 5 takes no mid-conversation system message ("not available on Claude Sonnet 5").
    calls = _conversation(emu, PromptCache(mid_conversation_tools=True), "claude-sonnet-5")
    assert all(u is not None for u in (c.usage for c in calls))  # never a 400
    assert all(m["role"] != "system" for b in emu.requests for m in b["messages"])


def test_the_emulator_refuses_what_the_api_refuses(emu: Emulator) -> None:
    client = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="k")
    system_msg: Any = {"role": "system", "content": "Be brief."}
    with pytest.raises(anthropic.BadRequestError, match="not supported"):
        client.messages.create(
            model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}, system_msg]
        )
    undeclared: Any = {
        "role": "system",
        "content": [{"type": "tool_addition", "tool": {"type": "tool_reference", "name": "x"}}],
    }
    with pytest.raises(anthropic.BadRequestError, match="not declared"):
        client.messages.create(
            model="claude-opus-5-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}, undeclared]
        )


class _Recording(httpx.HTTPTransport):
    """A real HTTP transport that remembers the ``anthropic-beta`` header of what it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.betas: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.betas.append(request.headers.get("anthropic-beta", ""))
        return super().handle_request(request)


def test_the_beta_header_goes_with_the_changes(emu: Emulator) -> None:
    wire = _Recording()
    http = wrap_http_client(httpx.Client(transport=wire))
    client = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="k", http_client=http)
    cache = PromptCache(mid_conversation_tools=True)
    msgs: list[Any] = [{"role": "user", "content": "hi"}]
    for tools in ([GET], [GET, CANCEL]):
        with use_call(CallContext(cache=cache, tenant="acme")):
            client.messages.create(
                model="claude-opus-5-5", max_tokens=8, system=SYSTEM, tools=tools, messages=msgs
            )
        msgs = [*msgs, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
    assert TOOL_CHANGES_BETA not in wire.betas[0] and TOOL_CHANGES_BETA in wire.betas[-1]


def test_a_changed_definition_starts_over() -> None:
    body = {"tools": [GET], "messages": [{"role": "user", "content": "a"}]}
    _, state, _ = apply_changes(body, None, tools=True, system=False)
    assert isinstance(state, ConversationState)
    changed = {**GET, "description": "Another description."}
    later = {
        "tools": [changed],
        "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    }
    out, state2, notes = apply_changes(later, state, tools=True, system=False)
    assert out is later and state2 is not None and state2.changes == []
    assert notes and "changed its definition" in notes[0]


def test_the_simulator_renders_a_deferred_tool_where_it_is_offered() -> None:
    sim = Simulator()
    base = {
        "model": "claude-opus-5-5",
        "system": SYSTEM,
        "tools": [GET],
        "messages": [{"role": "user", "content": "a"}],
    }
    deferred = {**base, "tools": [GET, {**CANCEL, "defer_loading": True}]}
    a = sim.feed(0.0, "anthropic-messages", base)
    b = sim.feed(1.0, "anthropic-messages", deferred)
    assert a.usage.input_tokens == b.usage.input_tokens  # not rendered until offered


def _system_conversation(
    emu: Emulator, cache: PromptCache, model: str, systems: list[str]
) -> list[CallContext]:
    http = wrap_http_client(None)
    client = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="k", http_client=http)
    msgs: list[Any] = [{"role": "user", "content": "I want to change my flight"}]
    out = []
    for system in systems:
        ctx = CallContext(cache=cache, tenant="acme")
        with use_call(ctx):
            client.messages.create(model=model, max_tokens=32, system=system, tools=[GET], messages=msgs)
        out.append(ctx)
        msgs = [*msgs, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "next"}]
    return out


VERIFIED = SYSTEM + "\nThe user is now verified: you may show reservation details."


def test_text_appended_to_the_system_prompt_becomes_a_system_message(emu: Emulator) -> None:
    cache = PromptCache(mid_conversation_system=True)
    calls = _system_conversation(emu, cache, "claude-opus-5-5", [SYSTEM, VERIFIED, VERIFIED])
    reads = [c.usage.cache_read_tokens if c.usage else -1 for c in calls]
    assert reads[0] == 0 and reads[1] > 1500 and reads[2] > reads[1]
    second, third = emu.requests[1], emu.requests[2]
    for body in (second, third):
        _valid(body)
        assert [b["text"] for b in body["system"]] == [SYSTEM]  # the start of the prompt as first sent
    added = [m for m in third["messages"] if m["role"] == "system"]
    assert added == [
        {"role": "system", "content": [{"type": "text", "text": VERIFIED[len(SYSTEM) :].strip()}]}
    ]
    assert "system_message" in [h.kind for h in calls[1].plan.hints]


def test_without_the_option_an_appended_system_line_is_a_miss(emu: Emulator) -> None:
    calls = _system_conversation(emu, PromptCache(), "claude-opus-5-5", [SYSTEM, VERIFIED])
    assert calls[1].usage is not None and calls[1].usage.cache_read_tokens == 0


def test_an_edited_system_prompt_starts_over(emu: Emulator) -> None:
    edited = "You are a terse agent.\n" + SYSTEM
    cache = PromptCache(mid_conversation_system=True)
    calls = _system_conversation(emu, cache, "claude-opus-5-5", [SYSTEM, edited])
    assert all(m["role"] != "system" for m in emu.requests[1]["messages"])
    assert any("edited, not appended" in d for d in calls[1].plan.decisions)


def test_system_messages_only_on_models_that_take_them(emu: Emulator) -> None:
    calls = _system_conversation(
        emu, PromptCache(mid_conversation_system=True), "claude-sonnet-5", [SYSTEM, VERIFIED]
    )
    assert calls[1].usage is not None  # no 400: nothing was sent the model refuses
    assert all(m["role"] != "system" for b in emu.requests for m in b["messages"])


@pytest.mark.parametrize(
    ("model", "changed"),
    [("claude-opus-5-5", True), ("claude-opus-5-5@20260922", False), ("us.anthropic.claude-opus-5-5", False)],
    ids=["claude-api", "vertex", "bedrock"],
)
def test_tool_changes_only_where_the_beta_header_can_go(model: str, changed: bool) -> None:
    # The beta header is added by the httpx seam, which serves the Claude API; Vertex and Bedrock
    # clients go through the anthropic SDK's middleware, so their requests keep today's tools.
    cache = PromptCache(mid_conversation_tools=True)
    msgs: list[Any] = [{"role": "user", "content": "hi"}]
    cache.prepare_request(
        {"model": model, "system": SYSTEM, "tools": [GET], "messages": msgs}, format="anthropic-messages"
    )
    msgs = [*msgs, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
    body = {"model": model, "system": SYSTEM, "tools": [GET, CANCEL], "messages": msgs}
    out = cache.prepare_request(body, format="anthropic-messages").body
    assert any(m["role"] == "system" for m in out["messages"]) is changed
