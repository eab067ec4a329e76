"""Conversations as frameworks send them: objects reused and mutated in place between calls.

``PromptCache`` memoizes each analysed block by its content. Here every request goes to
two caches: one is handed the caller's own objects, mutated in place from call to call,
the other a fresh deep copy of each body. Bodies (byte for byte, key order included),
keys, digests, fragments, hints and explanations must be identical: no memo entry may
go stale when a caller edits an object it sent before.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import orjson
import pytest
from core_bodies import FORMATS, TOOL_SPECS, make_body
from hypothesis import given, settings
from hypothesis import strategies as st

from promptcache.engine import PromptCache
from promptcache.plan import Prepared
from promptcache.policy import Policy

OPS = [
    "user",
    "pii_user",  # data classes on a message: their plan indices shift around the volatile block
    "nfd_user",  # text that needs normalizing: sent as our copy, not the caller's object
    "assistant",
    "same",
    "mutate_old",
    "number_flip",
    "clock",
    "reverse_tools",
    "tool_key_order",
    "truncate",
    "crlf",
]


def _conv_list(fmt: str, body: dict[str, Any]) -> list[Any]:
    field = {"gemini": "contents", "openai-responses": "input"}.get(fmt, "messages")
    conv: list[Any] = body[field]
    return conv


def _set_text(fmt: str, msg: dict[str, Any], text: str) -> None:
    # In place, as a caller editing its own message object would.
    if fmt == "bedrock-converse":
        msg["content"][0]["text"] = text
    elif fmt == "gemini":
        msg["parts"][0]["text"] = text
    else:
        msg["content"] = text


def _message(fmt: str, role: str, text: str) -> dict[str, Any]:
    return _conv_list(fmt, make_body(fmt, "s", [], [(role, text)]))[0]


def _same(a: Prepared, b: Prepared) -> None:
    assert orjson.dumps(a.body) == orjson.dumps(b.body)
    pa, pb = a.plan, b.plan
    assert pa.prefix_key == pb.prefix_key
    assert pa.conversation_key == pb.conversation_key
    assert pa.digests == pb.digests
    assert pa.sections == pb.sections
    labels = [(b.kind, b.trust, b.stability, b.role, b.data_classes) for b in pa.blocks]
    assert labels == [(b.kind, b.trust, b.stability, b.role, b.data_classes) for b in pb.blocks]
    assert pa.data_classes == pb.data_classes
    assert pa.fragments == pb.fragments
    assert pa.hints == pb.hints
    assert pa.decisions == pb.decisions
    assert pa.explain() == pb.explain()
    # Not only equal: right. A block holds an address exactly when its index carries the class
    # (indices shift by one after the volatile block, which sits before the current turn).
    mailed = {i for i, blk in enumerate(pa.blocks) if b"@example.com" in orjson.dumps(blk.content)}
    assert mailed == {i for i, dcs in pa.data_classes.items() if "pii.email" in dcs}
    # Text needing normalization is sent normalized.
    assert "cafe\u0301".encode() not in orjson.dumps(a.body)


# An address keeps content out of provider caches here, so where the first one sits matters.
STRICT = Policy.load(
    {"data_classes": {"pii.email": {"action": "shorten", "max_ttl": 600, "provider_caching": False}}}
)


def _run(fmt: str, ops: list[str], seed: int) -> None:
    rng = random.Random(seed)
    policy = STRICT if seed % 2 else None
    mutated, fresh = PromptCache(policy), PromptCache(policy)
    body = make_body(
        fmt,
        "You are a booking agent.\nCurrent time: 2024-05-01T10:00:00Z\nBe brief.",
        copy.deepcopy(TOOL_SPECS),
        # Under the strict policy the history starts with an address: the first blocked block.
        [("user", "mail jo0@example.com"), ("assistant", "ok"), ("user", "hello")]
        if policy
        else [("user", "hello")],
        model="claude-sonnet-4-5" if fmt in ("anthropic-messages", "bedrock-converse") else "gpt-4o",
    )
    conv = _conv_list(fmt, body)
    n = 0
    for op in ["same", *ops]:
        n += 1
        if op == "user" or (op == "assistant" and conv and conv[-1].get("role") not in ("user",)):
            conv.append(_message(fmt, "user", f"turn {n} " + "x" * rng.randint(0, 30)))
        elif op == "pii_user" and (not conv or conv[-1].get("role") != "user"):
            conv.append(_message(fmt, "user", f"mail me at jo{n}@example.com"))
        elif op == "nfd_user" and (not conv or conv[-1].get("role") != "user"):
            conv.append(_message(fmt, "user", f"cafe\u0301 {n}"))
        elif op == "assistant":
            conv.append(_message(fmt, "assistant", f"answer {n}"))
        elif op == "mutate_old" and len(conv) > 1:
            _set_text(fmt, conv[rng.randrange(len(conv) - 1)], f"edited {n}")
        elif op == "number_flip" and fmt in ("openai-chat", "anthropic-messages"):
            # 1, 1.0 and True are == in Python but are different JSON.
            conv[0]["n"] = [1, 1.0, True][n % 3]
        elif op == "clock":
            new = f"You are a booking agent.\nCurrent time: 2024-05-01T10:{n % 60:02d}:00Z\nBe brief."
            if fmt == "openai-chat":
                body["messages"][0]["content"] = new
            elif fmt == "openai-responses":
                body["instructions"] = new
            elif fmt == "anthropic-messages":
                body["system"] = new
            elif fmt == "bedrock-converse":
                body["system"][0]["text"] = new
            else:
                body["systemInstruction"]["parts"][0]["text"] = new
        elif op == "reverse_tools":
            tools = body["toolConfig"]["tools"] if fmt == "bedrock-converse" else body["tools"]
            if fmt == "gemini":
                tools = tools[0]["functionDeclarations"]
            tools.reverse()  # in place: the same list object, another order
        elif op == "tool_key_order":
            tools = body["toolConfig"]["tools"] if fmt == "bedrock-converse" else body["tools"]
            t = tools[0]
            first = next(iter(t))
            t[first] = t.pop(first)  # in place: same keys and values, another key order
        elif op == "truncate" and len(conv) > 2:
            del conv[-2:]
        elif op == "crlf" and conv:
            _set_text(fmt, conv[-1], f"line one\r\nline two {n}")
        if not conv or conv[-1].get("role") != "user":
            continue  # a request ends with the user's turn (no assistant prefill)
        if fmt == "openai-chat" and len(conv) < 2:
            continue
        copied = copy.deepcopy(body)
        _same(mutated.prepare_request(body, format=fmt), fresh.prepare_request(copied, format=fmt))


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=14), seed=st.integers(0, 2**16))
def test_objects_mutated_in_place_equal_fresh_copies(fmt: str, ops: list[str], seed: int) -> None:
    _run(fmt, ops, seed)


def test_in_place_edit_of_an_old_message_changes_the_conversation_key() -> None:
    cache = PromptCache()
    body = make_body("openai-chat", "Be brief.", [], [("user", "a"), ("assistant", "b"), ("user", "c")])
    first = cache.prepare_request(body, format="openai-chat").plan
    body["messages"][2]["content"] = "edited"  # the same dict object, new content
    second = cache.prepare_request(body, format="openai-chat")
    assert second.plan.conversation_key != first.conversation_key
    assert second.body["messages"][2]["content"] == "edited"


def test_a_number_that_becomes_a_bool_is_a_change() -> None:
    cache = PromptCache()
    body = make_body("openai-chat", "Be brief.", [], [("user", "a"), ("assistant", "b"), ("user", "c")])
    body["messages"][1]["n"] = 1
    first = cache.prepare_request(body, format="openai-chat").plan
    body["messages"][1]["n"] = True  # == 1 in Python, "true" in JSON
    second = cache.prepare_request(body, format="openai-chat").plan
    assert second.digests != first.digests
    assert second.conversation_key != first.conversation_key


def test_a_tool_key_order_change_in_place_switches_tools_to_canonical() -> None:
    cache = PromptCache()
    body = make_body("openai-chat", "Be brief.", copy.deepcopy(TOOL_SPECS), [("user", "a")])
    cache.prepare_request(body, format="openai-chat")
    fn = body["tools"][0]["function"]
    fn["name"] = fn.pop("name")  # same list and dicts, the key moved last
    after = cache.prepare_request(body, format="openai-chat")
    assert after.plan._snapshot is not None and after.plan._snapshot.tools_canonical
    names = [t["function"]["name"] for t in after.body["tools"]]
    assert names == sorted(names)


def test_threads_sharing_a_cache_get_what_a_fresh_cache_gives() -> None:
    # Parallel LangGraph branches on one model and tenant share a cache: each request
    # must still come out exactly as a cache of its own would make it.
    import threading

    cache = PromptCache(memo_entries=64, max_families=4)  # small: eviction runs under contention
    system = "You are a booking agent.\nBe brief."
    requests: list[tuple[int, dict[str, Any]]] = []
    results: dict[int, Prepared] = {}
    errors: list[Exception] = []

    def worker(t: int) -> None:
        conv: list[tuple[str, str]] = []
        try:
            for n in range(40):
                conv += [("user", f"thread {t} turn {n}")]
                body = make_body("anthropic-messages", system, copy.deepcopy(TOOL_SPECS), conv)
                i = t * 1000 + n
                requests.append((i, copy.deepcopy(body)))
                results[i] = cache.prepare_request(body, format="anthropic-messages")
                conv += [("assistant", f"answer {t}.{n}")]
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for i, body in requests:
        full = PromptCache()
        expected = full.prepare_request(body, format="anthropic-messages")
        got = results[i]
        assert got.plan.conversation_key == expected.plan.conversation_key
        assert got.plan.prefix_key == expected.plan.prefix_key
        assert orjson.dumps(got.body) == orjson.dumps(expected.body)


def test_memos_are_bounded_by_the_characters_they_hold() -> None:
    cache = PromptCache(memo_chars=100_000)
    for i in range(40):
        conv = [("user", f"{i} " + "y" * 20_000), ("assistant", "ok"), ("user", "go")]
        cache.prepare_request(make_body("openai-chat", "Be brief.", [], conv), format="openai-chat")
    memo = cache._analyser.memo
    assert memo.chars <= 100_000
    assert memo.chars == sum(size for _, size in memo._d.values())


def test_a_reshuffled_tool_list_shares_one_canonical_tool_set() -> None:
    # An app that sends its tools in a new order on every call gets the canonical tools it
    # already has, and the memo does not keep one entry per order seen.
    cache, fresh = PromptCache(), PromptCache()
    tools = copy.deepcopy(TOOL_SPECS) * 4
    for i, t in enumerate(tools):
        t["name"] = f"{t['name']}_{i}"
    rng = random.Random(3)
    prefixes = set()
    for n in range(40):
        rng.shuffle(tools)
        body = make_body("openai-chat", "Be brief.", list(tools), [("user", f"turn {n}")])
        got = cache.prepare_request(body, format="openai-chat")
        _same(got, fresh.prepare_request(copy.deepcopy(body), format="openai-chat"))
        prefixes.add(got.plan.prefix_key)
    assert len(prefixes) == 1
    sets = [k for k in cache._analyser.memo._d if isinstance(k, tuple) and k[0] == "toolset"]
    assert len(sets) == 1  # one canonical tool set, whatever the order it came in


def test_unchanged_tools_go_out_as_the_callers_own_objects() -> None:
    # A framework that rebuilds its tool dicts per call (create_agent binds tools on every
    # model call) must see its own objects sent, not the first call's, equal as they are; in
    # the canonical (name) order from the first call on, and its list itself when already in it.
    cache = PromptCache()
    body = make_body("openai-chat", "Be brief.", copy.deepcopy(TOOL_SPECS), [("user", "hi")])
    cache.prepare_request(body, format="openai-chat")
    again = {**body, "tools": copy.deepcopy(body["tools"])}
    sent = cache.prepare_request(again, format="openai-chat").body["tools"]
    by_name = sorted(again["tools"], key=lambda t: t["function"]["name"])
    assert by_name != again["tools"], "the tools are already in name order: the test checks less"
    assert len(sent) == len(by_name) and all(s is t for s, t in zip(sent, by_name, strict=True))
    ordered = {**body, "tools": by_name}
    assert cache.prepare_request(ordered, format="openai-chat").body["tools"] is by_name


def _same_as_fresh(policy: Policy | None, bodies: list[dict[str, Any]], fmt: str) -> list[Prepared]:
    """Each body through one cache, and a deep copy of it through another: equal results."""
    mutated, fresh = PromptCache(policy), PromptCache(policy)
    out = []
    for body in bodies:
        got = mutated.prepare_request(body, format=fmt)
        _same(got, fresh.prepare_request(copy.deepcopy(body), format=fmt))
        out.append(got)
    return out


@pytest.mark.parametrize("fmt", ["openai-chat", "openai-responses"])
def test_reused_hints_follow_the_data_classes(fmt: str) -> None:
    # An address in the new turn shortens the policy TTL below 24h: no extended retention
    # on that call, and back to 24h on the next.
    policy = Policy.load(
        {
            "entries": {"prompt_prefix": {"ttl": {"default": "24h"}}},
            "data_classes": {"pii.email": {"action": "shorten", "max_ttl": 600}},
        }
    )
    turns = ["hello", "mail me at jo@example.com", "thanks", "and again"]
    bodies = [
        make_body(fmt, "Be brief.\n" * 400, copy.deepcopy(TOOL_SPECS), [("user", t)], model="gpt-4.1")
        for t in turns
    ]
    # Then the caller sets its own routing key: kept, whatever was placed last time.
    bodies.append({**bodies[-1], "prompt_cache_key": "mine"})
    got = _same_as_fresh(policy, bodies, fmt)
    retention = [p.body.get("prompt_cache_retention") for p in got]
    assert retention == ["24h", None, "24h", "24h", "24h"]
    assert got[-1].body["prompt_cache_key"] == "mine"


def test_hints_that_mark_messages_are_placed_on_every_call() -> None:
    # In explicit mode (here the caller's choice) the newest user message is marked on every
    # call, not the message the previous call marked.
    from promptcache.catalog import load_catalog
    from promptcache.providers import hints

    model = {
        "min_cacheable_tokens": 1024,
        "ttl_options": ["explicit", "24h"],
        "prices": {"input": 5.0, "output": 30.0},
    }
    hints.use_catalog(load_catalog(overrides={"providers": {"openai": {"models": {"gpt-5.6-sol": model}}}}))
    try:
        # A conversation that grows: each call resends the last one's turns and adds one.
        turns: list[tuple[str, str]] = [("user", "question 0"), ("assistant", "answer 0")]
        bodies = []
        for n in range(1, 4):
            turns.append(("user", f"question {n}"))
            body = make_body("openai-chat", "Be brief.\n" * 400, [], list(turns), model="gpt-5.6-sol")
            bodies.append(body | {"prompt_cache_options": {"mode": "explicit"}})
            turns.append(("assistant", f"answer {n}"))
        got = _same_as_fresh(None, bodies, "openai-chat")
        marks = [sum(h.kind == "prompt_cache_breakpoint" for h in p.plan.hints) for p in got]
        assert all(marks[1:])
        assert all(p.body["prompt_cache_options"] == {"mode": "explicit"} for p in got)
        # Without the caller's mode and with nothing to keep out of the cache, implicit mode
        # stays: its own breakpoint ends the newest message, a few tokens further than a part.
        plain = [{k: v for k, v in b.items() if k != "prompt_cache_options"} for b in bodies]
        got = _same_as_fresh(None, plain, "openai-chat")
        assert all("prompt_cache_options" not in p.body for p in got)
        newest = [f"$.messages[{len(b['messages']) - 1}]" for b in plain]
        assert not any(h.where.startswith(w) for p, w in zip(got, newest, strict=True) for h in p.plan.hints)
    finally:
        hints.use_catalog(None)


def _tool_step(fmt: str, conv: list[Any], step: int, result: str) -> None:
    """Append an agent step as a framework would: the model's tool call, then its result."""
    cid = f"call_{step}"
    if fmt == "openai-chat":
        call = {"id": cid, "type": "function", "function": {"name": "get_user", "arguments": '{"id": 7}'}}
        conv.append({"role": "assistant", "content": None, "tool_calls": [call]})
        conv.append({"role": "tool", "tool_call_id": cid, "content": result})
    else:
        conv.append(
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": cid, "name": "get_user", "input": {}}],
            }
        )
        conv.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": cid, "content": result}]}
        )


@pytest.mark.parametrize("policy", [None, STRICT], ids=["default-policy", "strict-policy"])
@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic-messages"])
def test_an_agent_loop_mutating_its_conversation_equals_fresh_copies(fmt: str, policy: Policy | None) -> None:
    # Each call resends the conversation with last call's tool call and its result appended:
    # last call's current turn becomes history. One result carries an address.
    model = "claude-sonnet-4-5" if fmt == "anthropic-messages" else "gpt-4o"
    body = make_body(
        fmt, "You are a booking agent.", copy.deepcopy(TOOL_SPECS), [("user", "hi")], model=model
    )
    conv = _conv_list(fmt, body)
    mutated, fresh = PromptCache(policy), PromptCache(policy)
    for step in range(8):
        result = "mail jo@example.com" if step == 3 else f'{{"user": 7, "step": {step}}}'
        _tool_step(fmt, conv, step, result)
        if step == 5:
            conv.append(_message(fmt, "assistant", "Anything else?"))
            conv.append(_message(fmt, "user", "no, thanks"))
        copied = copy.deepcopy(body)
        _same(mutated.prepare_request(body, format=fmt), fresh.prepare_request(copied, format=fmt))


@pytest.mark.parametrize("per_user_system", [False, True], ids=["one-system", "per-user-system"])
@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=20, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 4), st.sampled_from(["user", "assistant", "edit"])), max_size=30)
)
def test_interleaved_conversations_and_forks_equal_fresh_copies(
    fmt: str, per_user_system: bool, steps: list[tuple[int, str]]
) -> None:
    # A server runs many conversations of one agent for one tenant, some forks sharing a
    # first message. However they interleave, every request gives what a deep copy gives,
    # also when each conversation's system prompt names its customer (the family learns
    # from all of them).
    model = "claude-sonnet-4-5" if fmt in ("anthropic-messages", "bedrock-converse") else "gpt-4o"
    mutated, fresh = PromptCache(), PromptCache()
    firsts = ["book a flight", "cancel my trip", "book a flight", "book a flight", "baggage rules"]
    systems = [
        "You are a booking agent.\n" + (f"Customer: {name}\n" if per_user_system else "") + "Be brief."
        for name in ["Ann", "Bo", "Ann", "Cy", "Dee"]
    ]
    convs = [
        make_body(fmt, system, copy.deepcopy(TOOL_SPECS), [("user", f)], model=model)
        for system, f in zip(systems, firsts, strict=True)
    ]
    for n, (j, op) in enumerate(steps):
        body = convs[j]
        conv = _conv_list(fmt, body)
        if op == "user" and conv[-1].get("role") != "user":
            conv.append(_message(fmt, "user", f"turn {n}"))
        elif op == "assistant" and conv[-1].get("role") == "user":
            conv.append(_message(fmt, "assistant", f"answer {n} of {j}"))
            conv.append(_message(fmt, "user", f"go on {n}"))
        elif op == "edit" and len(conv) > 2:
            _set_text(fmt, conv[-1], f"edited {n}")
        if conv[-1].get("role") != "user":
            continue
        copied = copy.deepcopy(body)
        _same(mutated.prepare_request(body, format=fmt), fresh.prepare_request(copied, format=fmt))


# -- issue 22, decision 5: breakpoints where the conversation changes ----------------------


@given(
    st.integers(1, 30),
    st.integers(0, 30),
    st.integers(0, 8),
    st.integers(0, 6),
)
@settings(max_examples=200, deadline=None)
def test_conversation_change_predicts_what_the_next_request_keeps(
    kept: int, tail: int, rewritten: int, appended: int
) -> None:
    # A conversation that rewrites its last ``rewritten`` messages and appends ``appended`` on
    # every call: the prediction keeps exactly the messages the next call resends unchanged.
    from promptcache.pipeline.learning import conversation_change

    def request(step: int) -> list[str]:
        # ``kept`` fixed messages, then ``tail + step * appended`` that only grow, then the
        # ``rewritten`` ones, different on every step.
        grown = [f"g{i}" for i in range(tail + step * appended)]
        return [f"k{i}" for i in range(kept)] + grown + [f"r{step}.{i}" for i in range(rewritten)]

    first, second, third = request(0), request(1), request(2)
    change = conversation_change(first, second)
    assert change is not None
    resent_next = next((i for i, (a, b) in enumerate(zip(second, third, strict=False)) if a != b), None)
    if rewritten == 0:
        assert change.stable is None  # appends only: the tail breakpoint is read next time
        assert change.resent == len(first)
    elif change.stable is not None:
        # Never past what the next request still sends the same.
        assert resent_next is not None and change.stable <= resent_next
        # And exactly there when the conversation grows by what it rewrites (the agents' case).
        if appended == 0:
            assert change.stable == resent_next
    assert conversation_change([], second) is None


def _anthropic_turns(n: int, rewrite: bool) -> dict[str, Any]:
    """An Anthropic body of ``n`` question/answer turns; ``rewrite``: the newest user message
    carries a reminder the agent takes off on the next call (aider's pattern)."""
    msgs: list[dict[str, Any]] = []
    for i in range(n):
        msgs.append({"role": "user", "content": [{"type": "text", "text": f"question {i} " + "x" * 400}]})
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": f"answer {i} " + "y" * 400}]})
    last = "newest question " + "z" * 400 + (" REMINDER: reply with a diff" if rewrite else "")
    msgs.append({"role": "user", "content": [{"type": "text", "text": last}]})
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": "You are a careful coding agent.\n" * 200,
        "messages": msgs,
    }


def _marked(body: dict[str, Any]) -> list[int]:
    return [
        i
        for i, m in enumerate(body["messages"])
        if any(isinstance(b, dict) and "cache_control" in b for b in m["content"])
    ]


def test_a_rewritten_tail_moves_the_breakpoint_to_what_the_next_call_keeps() -> None:
    # The agent takes the reminder off its last user message on the next call: a breakpoint
    # on it would be written and never read, so it goes on the last message the next call keeps.
    cache = PromptCache()
    first = cache.prepare_request(_anthropic_turns(3, rewrite=True), format="anthropic-messages")
    assert _marked(first.body) == [6]  # nothing known yet: the tail
    second = cache.prepare_request(_anthropic_turns(4, rewrite=True), format="anthropic-messages")
    # The previous call's last message (index 6) came back rewritten: one message from the end
    # is rewritten on each call, so the next call keeps the first 8 of these 9.
    assert _marked(second.body) == [7]
    # A conversation that only appends keeps its tail breakpoint.
    plain = PromptCache()
    plain.prepare_request(_anthropic_turns(3, rewrite=False), format="anthropic-messages")
    grown = _anthropic_turns(3, rewrite=False)
    grown["messages"] += [
        {"role": "assistant", "content": [{"type": "text", "text": "answer 3"}]},
        {"role": "user", "content": [{"type": "text", "text": "one more " + "w" * 400}]},
    ]
    assert _marked(plain.prepare_request(grown, format="anthropic-messages").body) == [8]


def test_a_turn_longer_than_the_lookback_gets_a_breakpoint_where_the_last_call_ended() -> None:
    # Anthropic looks back about 20 blocks from a breakpoint: a turn that adds more (parallel
    # tool calls) would not find the previous call's entry without a breakpoint at its end.
    cache = PromptCache()
    first = _anthropic_turns(2, rewrite=False)
    assert _marked(cache.prepare_request(first, format="anthropic-messages").body) == [4]
    calls = [{"type": "tool_use", "id": f"t{i}", "name": "read", "input": {"i": i}} for i in range(12)]
    results = [{"type": "tool_result", "tool_use_id": f"t{i}", "content": f"r{i}"} for i in range(12)]
    second = copy.deepcopy(first)
    second["messages"] += [{"role": "assistant", "content": calls}, {"role": "user", "content": results}]
    body = cache.prepare_request(second, format="anthropic-messages").body
    assert _marked(body) == [4, 6]
    # 12 blocks added: within the lookback, the tail alone is enough.
    small = copy.deepcopy(first)
    small["messages"] += [
        {"role": "assistant", "content": calls[:6]},
        {"role": "user", "content": results[:6]},
    ]
    fresh = PromptCache()
    fresh.prepare_request(first, format="anthropic-messages")
    assert _marked(fresh.prepare_request(small, format="anthropic-messages").body) == [6]


# -- issue 22, decision 3: no flips mid-conversation ----------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@given(order=st.lists(st.integers(0, 2), min_size=3, max_size=12), shuffle_tools=st.booleans())
@settings(max_examples=25, deadline=None)
def test_a_conversation_keeps_its_layout_while_the_family_learns(
    fmt: str, order: list[int], shuffle_tools: bool
) -> None:
    # Three conversations of one family, interleaved at random. Each has its own session id in
    # the system prompt (constant within it), and the later ones may send the tools reordered:
    # the family learns both from the others, but a conversation's own prefix never flips.
    import uuid

    cache = PromptCache()
    ids = [str(uuid.UUID(int=0x1234 + 7 * c)) for c in range(3)]
    convs: list[list[tuple[str, str]]] = [[("user", f"hello from conversation {c}")] for c in range(3)]
    sent: dict[int, set[str]] = {0: set(), 1: set(), 2: set()}
    for step, c in enumerate(order):
        system = "You are the booking agent.\n" * 40 + f"Session id: {ids[c]}\nBe brief."
        tools = list(reversed(TOOL_SPECS)) if shuffle_tools and c > 0 else TOOL_SPECS
        got = cache.prepare_request(make_body(fmt, system, tools, convs[c]), format=fmt, tenant="t")
        sent[c].add(got.plan.prefix_key)
        convs[c] += [("assistant", f"answer {step}"), ("user", f"question {step}")]
    assert all(len(keys) <= 1 for keys in sent.values())


def test_what_the_family_learned_reaches_new_conversations() -> None:
    # A's session id is kept in place for A; once B shows it differs between conversations, new
    # conversations (C) are sent with it moved out, and share one prefix with B.
    cache = PromptCache()

    def call(session: str, opening: str) -> str:
        system = "You are the booking agent.\n" * 40 + f"Session id: {session}\nBe brief."
        body = make_body("anthropic-messages", system, TOOL_SPECS, [("user", opening)])
        return cache.prepare_request(body, format="anthropic-messages", tenant="t").plan.prefix_key

    a1 = call("0b7c1e52-3f5c-4a7e-9f1e-6c0d2b9a8e11", "I am A")
    b1 = call("5d2f9a30-8c41-4e6b-b2d7-1a9e3c4f5b22", "I am B")
    a2 = call("0b7c1e52-3f5c-4a7e-9f1e-6c0d2b9a8e11", "I am A")
    c1 = call("9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a533", "I am C")
    assert a1 == a2  # no flip for A
    assert b1 == c1 != a1  # the id moved out: B and C share the prefix


# -- issue 22, decision 2: volatility by behaviour, whatever the format ---------------------

_CLOCK_FORMATS = [
    "[{iso}] session clock",
    "now={epoch}",
    "Time: {hms} on Monday 7 December 2026",
]


@given(
    formats=st.lists(st.integers(0, len(_CLOCK_FORMATS) - 1), min_size=4, max_size=8),
    fmt=st.sampled_from(FORMATS),
)
@settings(max_examples=40, deadline=None)
def test_a_clock_that_switches_format_is_learned_and_look_alikes_stay(formats: list[int], fmt: str) -> None:
    # The clock line changes on every call and switches its format between calls: it is moved
    # out from its first change on, and the static dates around it (a policy's effective date,
    # a version) never are.
    cache = PromptCache()
    head = "You are the booking agent.\nPolicy effective 2024-05-15, version 2.3.1.\n" * 20
    moved = []
    for n, f in enumerate(formats):
        epoch = 1765101600 + 61 * n
        clock = _CLOCK_FORMATS[f].format(
            iso=f"2024-03-05T10:{n:02d}:00Z", epoch=epoch, hms=f"10:{n:02d}:{(7 * n) % 60:02d}"
        )
        system = f"{head}{clock}\nBe brief."
        got = cache.prepare_request(make_body(fmt, system, TOOL_SPECS, [("user", f"q{n}")]), format=fmt)
        moved.append([f.text for f in got.plan.fragments])
    # Every fragment moved is the clock, never a static date or version.
    assert all("2024-05-15" not in t and "2.3.1" not in t for frags in moved for t in frags)
    # From the second call on (the first change), the clock is out of the prefix.
    assert all(frags for frags in moved[1:])
