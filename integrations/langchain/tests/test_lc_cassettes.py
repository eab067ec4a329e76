"""Replays of the ``create_agent`` + ``PromptCacheMiddleware`` cassettes, with nothing listening.

The cassettes (``cassettes/lc_create_agent_<provider>__emulator.yaml``) were recorded once by
``record_cassettes_lc.py`` against promptcache's own provider emulator playing tau-bench airline
task 2. Here a real ChatOpenAI / ChatAnthropic points at a closed loopback port and vcrpy answers;
requests are matched on method + path + JSON body, so every request the middleware rewrites must
be exactly the recorded one or the replay fails. On those bodies we then assert the caching
features, and that the agent's final ``cache_metrics``, ``cache.stats()`` and each answer's
``response_metadata["promptcache"]`` carry exactly the usage the recorded responses reported.
"""

from __future__ import annotations

import json
from typing import Any

import emulator_cassettes as ec
import pytest
from helpers_lc import CLOCK_LINE, VOLATILE_OPEN, clock_relocated, has_clock, system_text
from langchain_core.messages import AIMessage
from record_cassettes_lc import CASSETTES, build_agent, cassette_name, run_agent
from test_lc_agent import STOP

from promptcache import PromptCache
from promptcache.metrics import CacheMetrics
from promptcache.stats import recorder_for


def _clock(minute: int) -> str:
    return f"The current time is 2024-05-15 15:{minute:02d}:00 EST."


def assert_request_features(provider: str, bodies: list[dict[str, Any]], policy: str) -> None:
    """The caching features of the six rewritten agent requests (tau-bench task 2, two user turns)."""
    assert len(bodies) == 6
    # Call 0: the clock has not been seen to move yet, so it stays where the prompt put it.
    assert _clock(0) in system_text(bodies[0]) and VOLATILE_OPEN not in json.dumps(bodies[0])
    stable = policy.replace(CLOCK_LINE + "\n", "")  # the policy, its clock line cut out
    for i, body in enumerate(bodies[1:], start=1):
        # From call 1 on: the clock left the system prefix for the <volatile_context> block, which
        # holds this call's own minute; the system prefix is the policy minus its clock line.
        assert clock_relocated(body), i
        assert system_text(body) == stable and not has_clock(system_text(body)), i
        text = json.dumps(body)
        assert text.count(VOLATILE_OPEN) == 1 and json.dumps(_clock(i))[1:-1] in text, i
    if provider == "openai_gpt56":
        assert_gpt56_features(bodies)
        return
    if provider == "openai":
        keys = [b["prompt_cache_key"] for b in bodies]
        assert all(k.startswith("pc-") for k in keys)
        # One tenant, one stable prefix once the clock is out: one routing key from call 1 on.
        assert len(set(keys[1:])) == 1 and keys[0] != keys[1]
        assert "cache_control" not in json.dumps(bodies)
        return
    for i, body in enumerate(bodies):
        assert "prompt_cache_key" not in body
        ephemeral = {"type": "ephemeral"}
        assert body["system"][-1]["cache_control"] == ephemeral, i
        assert body["tools"][-1]["cache_control"] == ephemeral, i
        assert all("cache_control" not in t for t in body["tools"][:-1]), i
        blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
        marked = [j for j, b in enumerate(blocks) if "cache_control" in b]
        assert len(marked) == 1, i  # one breakpoint on the conversation: 3 in all (limit: 4)
        if i >= 1:  # the volatile block comes after the last breakpoint: outside the cached prefix
            (vol,) = [j for j, b in enumerate(blocks) if VOLATILE_OPEN in b.get("text", "")]
            assert vol > marked[0], i


def _parts(item: dict[str, Any]) -> Any:
    return item.get("output") if item.get("type") == "function_call_output" else item.get("content")


def assert_gpt56_features(bodies: list[dict[str, Any]]) -> None:
    """gpt-5.6-sol through ChatOpenAI (which speaks the Responses API to it): explicit
    breakpoints on the system prefix and the conversation, never on assistant output, at most 4;
    explicit mode once the clock sits in the volatile block; never retention beside options."""
    for i, body in enumerate(bodies):
        items = body["input"]
        marked = [
            j
            for j, it in enumerate(items)
            if isinstance(_parts(it), list) and any("prompt_cache_breakpoint" in p for p in _parts(it))
        ]
        assert marked[0] == 0 and 1 <= len(marked) <= 4, i  # the system prefix ends with one
        assert all(items[j].get("role") != "assistant" for j in marked), i
        assert "prompt_cache_retention" not in body, i
        if i >= 1:  # the volatile block exists: explicit mode, its tail is never written
            assert body["prompt_cache_options"] == {"mode": "explicit"}, i
            (vol,) = [j for j, it in enumerate(items) if VOLATILE_OPEN in json.dumps(it)]
            assert max(marked) < vol, i
        if i >= 2:  # where the previous request wrote, so that it is read back
            assert len(marked) >= 3, i


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("provider", ["openai", "openai_gpt56", "anthropic"])
async def test_create_agent_replays_cassette(
    provider: str, use_async: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(tmp_path))
    path = CASSETTES / cassette_name(provider)
    ec.check_cassette_file(path)
    traj, _ = ec.airline()
    usages = ec.recorded_usages(path)
    expected = ec.totals(usages)

    cache = PromptCache()
    agent = build_agent(provider, ec.BaseUrls(ec.closed_base_url()), cache)
    with ec.emulator_vcr(CASSETTES).use_cassette(path.name) as cassette:
        final = await run_agent(agent, use_async)
    assert cassette.play_count == len(cassette) == 6 and cassette.all_played
    # Every request matched a recorded body exactly, so the recorded bodies are the sent ones.
    assert_request_features(provider, ec.recorded_bodies(path), traj[0]["content"])
    assert final["messages"][-1].text == traj[STOP - 1]["content"]  # the recorded last answer

    m: CacheMetrics = final["cache_metrics"]
    assert m.calls == 6
    assert (m.input_tokens, m.cache_read_tokens, m.cache_write_tokens, m.output_tokens) == (
        expected["input"],
        expected["read"],
        expected["write"],
        expected["output"],
    )
    assert m.cache_read_tokens > 0 and m.cost_avoided_usd > 0
    assert {r.tenant for r in m.records.values()} == {"acme"}
    row = recorder_for(cache).snapshot().for_tenant("acme")
    assert (
        row.calls,
        row.input_tokens,
        row.cache_read_tokens,
        row.cache_write_tokens,
        row.output_tokens,
    ) == (
        6,
        expected["input"],
        expected["read"],
        expected["write"],
        expected["output"],
    )
    # Each answer says, in response_metadata["promptcache"], exactly what its response reported.
    answers = [msg for msg in final["messages"] if isinstance(msg, AIMessage)]
    metas = [a.response_metadata["promptcache"] for a in answers]
    assert [
        {
            "input": x["input_tokens"],
            "read": x["cache_read_tokens"],
            "write": x["cache_write_tokens"],
            "output": x["output_tokens"],
        }
        for x in metas
    ] == usages
    assert [x["tenant"] for x in metas] == ["acme"] * 6
    assert [x["relocated_values"] for x in metas] == [0, 1, 1, 1, 1, 1]
    if provider == "openai_gpt56":
        # Writes are read from the Responses usage and priced at gpt-5.6-sol's write rate
        # ($6.25 per million, 1.25x input; reads $0.50, input $5, output $30).
        assert expected["write"] > 0 and expected["read"] > 0
        dollars = sum(
            (u["input"] - u["read"] - u["write"]) * 5.0
            + u["read"] * 0.5
            + u["write"] * 6.25
            + u["output"] * 30.0
            for u in usages
        )
        assert m.cost_usd == pytest.approx(dollars / 1e6, abs=1e-8)
        # After the first turn each call reads what the previous one wrote and writes its new tail.
        assert all(u["read"] > 0 and u["write"] < 600 for u in usages[2:])
    if provider == "openai":
        bodies = ec.recorded_bodies(path)
        # The routing key sent is the one the answer reports.
        assert all(
            x["routing_key"].startswith(b["prompt_cache_key"][3:]) for x, b in zip(metas, bodies, strict=True)
        )
