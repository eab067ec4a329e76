"""An agent's history is analysed once: a request pays per message only for what it appended.

The correctness side (a long-lived cache gives what a fresh one gives, under edits in place,
number/bool flips, truncation, interleaved conversations and forks) is held by the property
tests in ``test_core_conversations.py``; these check the work saved is really saved.
"""

from __future__ import annotations

from typing import Any

import pytest
from core_bodies import FORMATS, make_body

from promptcache import PromptCache
from promptcache.pipeline.analyse import Analyser


@pytest.fixture
def analysed(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every message the analyser looks at one by one, in order."""
    seen: list[Any] = []
    real = Analyser.message

    def spy(self: Analyser, fmt: Any, adapter: Any, msg: Any, current: bool) -> Any:
        seen.append(msg)
        return real(self, fmt, adapter, msg, current)

    monkeypatch.setattr(Analyser, "message", spy)
    return seen


def _conv(n: int) -> list[tuple[str, str]]:
    return [("user" if i % 2 == 0 else "assistant", f"message {i}") for i in range(n)]


def test_an_appended_turn_costs_only_the_new_messages(analysed: list[Any]) -> None:
    cache = PromptCache()
    body = make_body("openai-chat", "Be brief.", [], _conv(21))
    cache.prepare_request(body, format="openai-chat")
    assert len(analysed) == 21  # the first request: every message
    analysed.clear()
    body["messages"] += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "next"}]
    cache.prepare_request(body, format="openai-chat")
    # last call's current turn became history, plus the assistant's answer; then the new turn
    assert [m["content"] for m in analysed] == ["message 20", "ok", "next"]


def test_an_edit_inside_the_history_is_analysed_again(analysed: list[Any]) -> None:
    cache = PromptCache()
    body = make_body("openai-chat", "Be brief.", [], _conv(21))
    first = cache.prepare_request(body, format="openai-chat").plan
    analysed.clear()
    body["messages"][3]["content"] = "edited"  # messages[0] is the system prompt: "message 2"
    second = cache.prepare_request(body, format="openai-chat").plan
    assert {"role": "user", "content": "edited"} in analysed
    assert second.conversation_key != first.conversation_key


def test_interleaved_conversations_keep_their_own_history(analysed: list[Any]) -> None:
    cache = PromptCache()
    a = make_body("openai-chat", "Be brief.", [], [("user", "conversation A"), *_conv(21)[1:]])
    b = make_body("openai-chat", "Be brief.", [], [("user", "conversation B"), *_conv(21)[1:]])
    for body in (a, b):
        cache.prepare_request(body, format="openai-chat")
    for body in (a, b):
        body["messages"] += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "next"}]
    analysed.clear()
    for body in (a, b):
        cache.prepare_request(body, format="openai-chat")
    # per conversation: its last turn, the answer, the new turn (and nothing of the other's)
    assert len(analysed) == 6


def _messages(fmt: str, body: dict[str, Any]) -> list[Any]:
    return list(body.get("messages") or body.get("input") or body.get("contents") or [])


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_turn_become_history_is_analysed_as_history(fmt: str) -> None:
    """The history form derived from a current turn's analysis is the analysis as history."""
    from promptcache.formats import parse_format
    from promptcache.pipeline.analyse import analyse_message, history_form
    from promptcache.wire import get_adapter

    conv = [("user", "plain"), ("assistant", "line one\r\nline two"), ("user", 'password = "hunter2!x"')]
    msgs = _messages(fmt, make_body(fmt, "Be brief.", [], conv))
    if fmt == "openai-chat":
        msgs.append({"role": "tool", "tool_call_id": "call_1", "content": '{"ok": true}'})
    if fmt == "anthropic-messages":
        result = {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}
        msgs.append({"role": "user", "content": [result]})
    wf = parse_format(fmt)
    adapter = get_adapter(wf)
    for msg in msgs:
        as_history = analyse_message(wf, adapter, msg, False)
        assert history_form(analyse_message(wf, adapter, msg, True)) == as_history


def test_the_last_turn_is_not_analysed_again_as_history(monkeypatch: pytest.MonkeyPatch) -> None:
    import promptcache.pipeline.analyse as analyse

    calls: list[bool] = []
    real = analyse.analyse_message

    def spy(fmt: Any, adapter: Any, msg: Any, current: bool) -> Any:
        calls.append(current)
        return real(fmt, adapter, msg, current)

    monkeypatch.setattr(analyse, "analyse_message", spy)
    cache = PromptCache()
    cache.prepare_request(make_body("openai-chat", "Be brief.", [], _conv(3)), format="openai-chat")
    calls.clear()
    cache.prepare_request(make_body("openai-chat", "Be brief.", [], _conv(5)), format="openai-chat")
    assert calls == [False, True]  # the new assistant message and the new turn; not message 2
