"""Replays of the LlamaIndex cassettes, with nothing listening: a ``VectorStoreIndex`` query engine and
a ``FunctionAgent`` with the tau-bench airline tools, on LlamaIndex's own OpenAI and Anthropic LLMs
after ``promptcache_llamaindex.enable(cache)``.

The query engine runs on Gemini too (LlamaIndex's ``GoogleGenAI`` over google-genai), and the
structured-output calls (``structured_predict``, its async and streamed twins,
``as_structured_llm``) on OpenAI and Anthropic.

The cassettes (``cassettes/li_<scenario>_<provider>__emulator.yaml``) were recorded once by
``record_cassettes_li.py`` against promptcache's own provider emulator. The LLMs point at a
closed loopback port and vcrpy answers, matching method + path + JSON body: each request the
CachingLLM rewrote must be exactly the recorded one. Then: the caching features of those bodies,
and the instrumentation handler's metrics and ``cache.stats()`` equal to the usage the recorded
responses (JSON and SSE) reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import li_shared_path  # noqa: F401  (puts the shared cassette helpers on sys.path)
import pytest
import yaml
from emulator_cassettes import (
    BaseUrls,
    check_cassette_file,
    closed_base_url,
    emulator_vcr,
    recorded_bodies,
    recorded_paths,
    recorded_usages,
    totals,
)
from li_fixtures import AIRLINE_POLICY, GEMINI_MODEL
from record_cassettes_li import (
    CASSETTES,
    FARE_TEXT,
    Fare,
    cassette_name,
    run_function_agent,
    run_query_engine,
    run_structured,
)
from vcr.serializers import yamlserializer

from promptcache import PromptCache
from promptcache.stats import recorder_for

EPHEMERAL = {"type": "ephemeral"}


async def _replay(scenario: str, provider: str, run: Any, calls: int) -> tuple[dict[str, Any], Path, Any]:
    path = CASSETTES / cassette_name(scenario, provider)
    check_cassette_file(path)
    cache = PromptCache()
    with emulator_vcr(CASSETTES).use_cassette(path.name) as cassette:
        out = await run(provider, BaseUrls(closed_base_url()), cache)
    assert cassette.play_count == len(cassette) == calls and cassette.all_played
    return out, path, cache


def _model_usages(handler: Any) -> list[dict[str, int]]:
    records = [r for r in handler.cache_metrics.records.values() if r.kind == "model"]
    return [
        {
            "input": r.input_tokens,
            "read": r.cache_read_tokens,
            "write": r.cache_write_tokens,
            "output": r.output_tokens,
        }
        for r in records
    ]


def _assert_metrics(handler: Any, cache: PromptCache, tenant: str, usages: list[dict[str, int]]) -> None:
    """Per call and in total, the handler and cache.stats() hold exactly the recorded usage."""
    expected = totals(usages)
    assert _model_usages(handler) == usages
    m = handler.cache_metrics
    assert (m.input_tokens, m.cache_read_tokens, m.cache_write_tokens, m.output_tokens) == (
        expected["input"],
        expected["read"],
        expected["write"],
        expected["output"],
    )
    row = recorder_for(cache).snapshot().for_tenant(tenant)
    assert (
        row.calls,
        row.input_tokens,
        row.cache_read_tokens,
        row.cache_write_tokens,
        row.output_tokens,
    ) == (
        len(usages),
        expected["input"],
        expected["read"],
        expected["write"],
        expected["output"],
    )
    assert expected["read"] > 0  # the recorded provider did read the prefix back


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_query_engine_replays_cassette(
    provider: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(tmp_path))
    out, path, cache = await _replay("query_engine", provider, run_query_engine, 3)
    bodies, usages = recorded_bodies(path), recorded_usages(path)
    assert [b["stream"] for b in bodies] == [False, False, True]  # query, aquery, streamed query
    assert all("Gold members get three" in json.dumps(b) for b in bodies)  # the retrieved passage
    assert bodies[0]["messages"] == bodies[1]["messages"] == bodies[2]["messages"]
    if provider == "openai":
        keys = {b["prompt_cache_key"] for b in bodies}
        assert len(keys) == 1 and keys.pop().startswith("pc-")
        assert [m["role"] for m in bodies[0]["messages"]] == ["system", "system", "user"]
        assert bodies[0]["messages"][0]["content"] == AIRLINE_POLICY  # the Settings.llm system prompt
        assert "cache_control" not in json.dumps(bodies)
    else:
        for b in bodies:
            # The system prompt keeps its breakpoint (a known LlamaIndex gap, closed), and the
            # question's block carries the second one.
            assert "prompt_cache_key" not in b
            assert b["system"][0]["text"].startswith(AIRLINE_POLICY.rstrip())
            assert b["system"][-1]["cache_control"] == EPHEMERAL
            assert b["messages"][-1]["content"][-1]["cache_control"] == EPHEMERAL
            assert json.dumps(b).count("cache_control") == 2
    answers = out["answers"]
    assert answers[0] and answers[0] == answers[1] == answers[2]  # the streamed answer too
    _assert_metrics(out["handler"], cache, "acme", usages)
    # Retrieval: computed once, then served twice by promptcache's retrieval cache.
    assert out["retriever"].retrieval_cache.stats().hits == 2
    assert out["handler"].cache_metrics.local_hits >= 1


def _last_tool_result(provider: str, body: dict[str, Any]) -> str:
    last = body["messages"][-1]
    if provider == "openai":
        assert last["role"] == "tool"
        return str(last["content"])
    (block,) = last["content"]
    assert block["type"] == "tool_result"
    return str(block["content"][0]["text"])


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_function_agent_replays_cassette(
    provider: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(tmp_path))
    out, path, cache = await _replay("function_agent", provider, run_function_agent, 5)
    bodies, usages = recorded_bodies(path), recorded_usages(path)
    assert all(b["stream"] is True for b in bodies)  # FunctionAgent streams: usage read from SSE
    # The tools are byte-identical on every turn: one stable cached prefix.
    assert all(json.dumps(b["tools"]) == json.dumps(bodies[0]["tools"]) for b in bodies)
    assert len(bodies[0]["tools"]) == 14
    if provider == "openai":
        keys = {b["prompt_cache_key"] for b in bodies}
        assert len(keys) == 1 and keys.pop().startswith("pc-")
        assert bodies[0]["messages"][0] == {"role": "system", "content": AIRLINE_POLICY}
        assert "cache_control" not in json.dumps(bodies)
    else:
        for i, b in enumerate(bodies):
            assert "prompt_cache_key" not in b
            assert b["system"][-1]["cache_control"] == EPHEMERAL, i
            assert b["tools"][-1]["cache_control"] == EPHEMERAL, i
            assert all("cache_control" not in t for t in b["tools"][:-1]), i
            # ... and one breakpoint at the end of the conversation so far: 3 in all.
            assert "cache_control" in json.dumps(b["messages"][-1]["content"][-1]), i
            assert json.dumps(b).count("cache_control") == 3, i
    # Tool turns as recorded: read, cached read (never reaches the backend), write, fresh read.
    results = [json.loads(_last_tool_result(provider, b)) for b in bodies[1:]]
    assert [r["total_baggages"] for r in results] == [1, 1, 2, 2]
    backend = out["backend"]
    assert [n for n, _ in backend.calls].count("get_reservation_details") == 2
    assert backend.bags["ZFA04Y"] == 2 and "2 checked bags" in out["result"]
    tool_records = [r for r in out["handler"].cache_metrics.records.values() if r.kind == "tool"]
    assert sum(r.local_hit for r in tool_records) == 1
    _assert_metrics(out["handler"], cache, "mia", usages)


def _gpt56_tool_result(body: dict[str, Any]) -> str:
    items = body.get("messages") or body["input"]
    last = items[-1]
    if last.get("type") == "function_call_output":
        out = last["output"]
        return str(out if isinstance(out, str) else out[0]["text"])
    assert last["role"] == "tool"
    return str(last["content"])


def _breakpoints(body: dict[str, Any]) -> list[int]:
    items = body.get("messages") or body["input"]
    found = []
    for i, it in enumerate(items):
        parts = it.get("output") if it.get("type") == "function_call_output" else it.get("content")
        if isinstance(parts, list) and any(
            "prompt_cache_breakpoint" in p for p in parts if isinstance(p, dict)
        ):
            found.append(i)
    return found


@pytest.mark.parametrize("provider", ["openai_gpt56", "responses_gpt56"])
async def test_function_agent_gpt56_replays_cassette(
    provider: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """gpt-5.6-sol through LlamaIndex's OpenAI (Chat Completions) and OpenAIResponses: the
    system prompt (sent as a developer message) ends with an explicit breakpoint, implicit mode
    covers the growing conversation, and the figures carry the recorded writes and reads, the
    writes priced at 1.25x the input rate."""
    monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(tmp_path))
    out, path, cache = await _replay("function_agent", provider, run_function_agent, 5)
    bodies, usages = recorded_bodies(path), recorded_usages(path)
    for i, b in enumerate(bodies):
        items = b.get("messages") or b["input"]
        assert items[0]["role"] == "developer" and _breakpoints(b)[0] == 0, i
        assert items[0]["content"][0]["text"] == AIRLINE_POLICY, i
        assert 1 <= len(_breakpoints(b)) <= 3, i  # implicit mode keeps one of the 4 slots
        assert all(items[j].get("role") != "assistant" for j in _breakpoints(b)), i
        assert "prompt_cache_retention" not in b and "prompt_cache_options" not in b, i
        assert b["prompt_cache_key"].startswith("pc-"), i
    results = [json.loads(_gpt56_tool_result(b)) for b in bodies[1:]]
    assert [r["total_baggages"] for r in results] == [1, 1, 2, 2]
    _assert_metrics(out["handler"], cache, "mia", usages)
    assert all(u["write"] > 0 for u in usages) and all(u["read"] > 0 for u in usages[1:])
    dollars = sum(
        (u["input"] - u["read"] - u["write"]) * 5.0 + u["read"] * 0.5 + u["write"] * 6.25 + u["output"] * 30.0
        for u in usages
    )
    assert out["handler"].cache_metrics.cost_usd == pytest.approx(dollars / 1e6, abs=1e-8)


def _gemini_usages(path: Path) -> list[dict[str, int]]:
    """Each recorded Gemini answer's usage, read straight from the wire JSON / SSE ``data:`` lines
    (the last ``usageMetadata`` of a stream is the whole call's)."""
    data = yaml.load(path.read_text(), Loader=yamlserializer._CassetteLoader)
    out = []
    for interaction in data["interactions"]:
        text = interaction["response"]["body"]["string"]
        text = text.decode() if isinstance(text, bytes) else str(text)
        chunks = [json.loads(text)] if text.lstrip().startswith("{") else []
        chunks += [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
        meta = chunks[-1]["usageMetadata"]
        out.append(
            {
                "input": meta["promptTokenCount"],
                "read": meta.get("cachedContentTokenCount", 0),
                "write": 0,
                "output": meta.get("candidatesTokenCount", 0) + meta.get("thoughtsTokenCount", 0),
            }
        )
    return out


async def test_gemini_query_engine_replays_cassette(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(tmp_path))
    out, path, cache = await _replay("query_engine", "gemini", run_query_engine, 3)
    bodies, usages = recorded_bodies(path), _gemini_usages(path)
    assert [p.split("?")[0] for p in recorded_paths(path)] == [
        f"v1beta/models/{GEMINI_MODEL}:generateContent",
        f"v1beta/models/{GEMINI_MODEL}:generateContent",
        f"v1beta/models/{GEMINI_MODEL}:streamGenerateContent",
    ]
    assert bodies[0] == bodies[1] == bodies[2]
    body = bodies[0]
    # Static first: the Settings.llm system prompt is the whole systemInstruction; the retrieved
    # passage and the question come after it, in contents. Gemini caching needs no request hint.
    assert body["systemInstruction"]["parts"] == [{"text": AIRLINE_POLICY}]
    assert "Gold members get three" in json.dumps(body["contents"])
    assert body["contents"][-1]["parts"][-1]["text"].rstrip().endswith("Answer:")
    assert not {"cachedContent", "prompt_cache_key", "cache_control"} & set(json.dumps(body).split('"'))
    assert usages[0]["read"] == 0 and usages[1]["read"] == usages[2]["read"] > 1000  # streamed too
    answers = out["answers"]
    assert answers[0] and answers[0] == answers[1] == answers[2]
    _assert_metrics(out["handler"], cache, "acme", usages)
    records = [r for r in out["handler"].cache_metrics.records.values() if r.kind == "model"]
    assert {(r.provider, r.model) for r in records} == {("gemini", GEMINI_MODEL)}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_structured_outputs_replay_cassette(
    provider: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """structured_predict, astructured_predict, stream_structured_predict and as_structured_llm
    go through the wrapped LLM's own structured-output request, rewritten and recorded."""
    monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(tmp_path))
    out, path, cache = await _replay("structured", provider, run_structured, 4)
    bodies, usages = recorded_bodies(path), recorded_usages(path)
    assert out["results"] == [Fare(route="SFO-JFK", fare_usd=210)] * 4
    assert all("tools" not in b for b in bodies), "not LlamaIndex's generic tool-calling program"
    assert all(FARE_TEXT in json.dumps(b["messages"]) for b in bodies)
    if provider == "openai":
        assert [b["stream"] for b in bodies] == [False, False, True, False]
        assert all(b["response_format"]["type"] == "json_schema" for b in bodies)
        keys = {b["prompt_cache_key"] for b in bodies}
        assert len(keys) == 1 and keys.pop().startswith("pc-")
        assert bodies[0]["messages"][0] == {"role": "system", "content": AIRLINE_POLICY}
        assert bodies[2]["stream_options"] == {"include_usage": True}  # so the stream reports reads
    else:
        # anthropic's beta.messages.parse: the schema goes out as output_config.format.
        assert [p.split("?")[0] for p in recorded_paths(path)] == ["v1/messages"] * 4
        for b in bodies:
            assert b["output_config"]["format"]["type"] == "json_schema"
            assert b["system"][0]["text"].startswith(AIRLINE_POLICY.rstrip()[:500])
            assert b["system"][-1]["cache_control"] == EPHEMERAL
            assert json.dumps(b).count("cache_control") == 2
    assert out["messages"][0].content == AIRLINE_POLICY, "the caller's messages are never mutated"
    _assert_metrics(out["handler"], cache, "acme", usages)
