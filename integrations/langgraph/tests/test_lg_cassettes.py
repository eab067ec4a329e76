"""Replays of the ``StateGraph`` + ``CachingChatModel`` + ``ToolNode`` cassettes, with nothing listening.

The cassettes (``cassettes/lg_state_graph_<provider>__emulator.yaml``) were recorded once by
``record_cassettes_lg.py`` against promptcache's own provider emulator playing tau-bench airline
task 2. The graph's real ChatOpenAI / ChatAnthropic points at a closed loopback port and vcrpy
answers, matching method + path + JSON body: each rewritten request must be exactly the recorded
one. Then: the caching features of those bodies, and the graph's final ``cache_metrics``,
``cache.stats()`` and every answer's ``response_metadata["promptcache"]`` equal to the usage the
recorded responses reported.
"""

from __future__ import annotations

from typing import Any

import lc_tests_path  # noqa: F401  (must come before the shared helpers)
import pytest
from emulator_cassettes import (
    BaseUrls,
    airline,
    check_cassette_file,
    closed_base_url,
    emulator_vcr,
    recorded_bodies,
    recorded_usages,
    totals,
)
from langchain_core.messages import AIMessage
from promptcache_langgraph import CacheMetrics
from record_cassettes_lg import CASSETTES, build_graph, cassette_name, run_graph
from test_lc_cassettes import assert_request_features
from test_lg_graph import STOP

from promptcache import PromptCache
from promptcache.stats import recorder_for


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_state_graph_replays_cassette(
    provider: str, use_async: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(tmp_path))
    path = CASSETTES / cassette_name(provider)
    check_cassette_file(path)
    traj, _ = airline()
    usages = recorded_usages(path)
    expected = totals(usages)

    cache = PromptCache()
    graph = build_graph(provider, BaseUrls(closed_base_url()), cache, use_async)
    with emulator_vcr(CASSETTES).use_cassette(path.name) as cassette:
        final = await run_graph(graph, use_async)
    assert cassette.play_count == len(cassette) == 6 and cassette.all_played
    # Every request matched a recorded body exactly, so the recorded bodies are the sent ones.
    assert_request_features(provider, recorded_bodies(path), traj[0]["content"])
    assert final["messages"][-1].content == traj[STOP - 1]["content"]

    m: CacheMetrics = final["cache_metrics"]
    got = {"input": m.input_tokens, "read": m.cache_read_tokens, "write": m.cache_write_tokens}
    assert (m.calls, {**got, "output": m.output_tokens}) == (6, expected)
    assert m.cache_read_tokens > 0 and m.cost_avoided_usd > 0
    assert {r.tenant for r in m.records.values()} == {"acme"}
    # The channel and cache.stats() agree: cache_node and CachingChatModel did not count twice.
    row = recorder_for(cache).snapshot().for_tenant("acme")
    assert (row.calls, row.input_tokens, row.cache_read_tokens, row.cache_write_tokens) == (
        6,
        expected["input"],
        expected["read"],
        expected["write"],
    )
    metas = [msg.response_metadata["promptcache"] for msg in final["messages"] if isinstance(msg, AIMessage)]
    per_call = [
        {
            k: x[f]
            for k, f in (
                ("input", "input_tokens"),
                ("read", "cache_read_tokens"),
                ("write", "cache_write_tokens"),
                ("output", "output_tokens"),
            )
        }
        for x in metas
    ]
    assert per_call == usages
    assert [x["relocated_values"] for x in metas] == [0, 1, 1, 1, 1, 1]
