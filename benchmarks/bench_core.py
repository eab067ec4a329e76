"""Benchmark of ``prepare_request`` on a ~16k-token agent request.

The request is built from real material in ``promptcache/lab/data/real/agents`` (``promptcache.lab.bundled``):
a ~2k-token system prompt (the tau-bench airline and retail policies), 30
real tool schemas (airline 14 + retail 16), ~4k tokens of retrieved documents
returned by a search tool, ~3k tokens of real conversation history and a
short user turn.

Figures are ratios against a floor measured in the same run: "orjson
canonical dump + SHA-256 of every block", the least any canonicalizing cache
must do. ``cold`` is a request whose blocks promptcache has never seen (a new
``PromptCache`` each time; its construction and the body's deep copy are timed
alone and subtracted);
``warm`` is the next call of the same agent, unchanged static blocks and
history (the same string and dict objects, as a framework passes them) and a
new user turn; ``warm_copied`` is the same with every object deep-copied (a
body freshly parsed from JSON); ``warm_shuffled_tools`` the same call with the tool
list in a new order each time; ``warm_growing_history`` an agent loop, each call resending
the conversation with last call's tool call and its result appended; ``warm_interleaved``
the warm call of 8 conversations of the agent interleaved, as a server runs them for one
tenant, and ``warm_interleaved_per_user_system`` the same with each conversation's system
prompt naming its customer.

Every call runs the whole pipeline; "warm" only means its blocks are in the analysis memo
(each costs a lookup: its JSON dump and a dict access). The only target is ``cold_ratio``:
the overhead budget that matters is a ratio to the framework call
(:mod:`benchmarks.bench_overhead`), not a floor of microseconds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import statistics
import time
from typing import Any

import orjson

from promptcache.engine import PromptCache
from promptcache.lab.bundled import AGENTS
from promptcache.tokens import counter_for_model


def build_request() -> dict[str, Any]:
    """The ~16k-token openai-chat request described in the module docstring."""
    airline = (AGENTS / "tau_bench_airline_system_prompt.md").read_text()
    retail = (AGENTS / "tau_bench_retail_system_prompt.md").read_text()
    system = airline + "\n\n" + retail[: 8200 - len(airline)]
    tools = json.loads((AGENTS / "tau_bench_airline_tools.json").read_text())
    tools += json.loads((AGENTS / "tau_bench_retail_tools.json").read_text())
    trajs = json.loads((AGENTS / "tau_bench_airline_gpt4o_trajectories_sample.json").read_text())
    history: list[dict[str, Any]] = []
    size = 0
    for m in trajs[2]["traj"][1:]:
        if size > 12_000 and m["role"] == "assistant" and not m.get("tool_calls"):
            break
        history.append(m)
        size += len(json.dumps(m))
    docs = "\n\n".join(
        f"[doc {i}] " + chunk
        for i, chunk in enumerate(
            (AGENTS / "swe_agent_07_fcalling_system_prompt.md").read_text().split("\n\n")
            + retail[8200 - len(airline) :].split("\n\n")
            + json.loads((AGENTS / "swe_agent_07_fcalling_templates.json").read_text())
            .get("instance_template", "")
            .split("\n\n")
        )
    )
    call = {"id": "call_docs_1", "type": "function", "function": {"name": "search_docs", "arguments": "{}"}}
    history += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_docs_1", "content": docs[:16_000]},
    ]
    return {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": system}, *history, {"role": "user", "content": "ok"}],
        "tools": tools,
        "temperature": 0,
    }


def _floor(body: dict[str, Any]) -> None:
    for block in [*body["messages"], *body["tools"]]:
        hashlib.sha256(orjson.dumps(block, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _time(fn: Any, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000.0  # microseconds


def run(n: int = 300) -> dict[str, Any]:
    """Measure floor, cold, warm and warm_copied; return JSON-serializable figures."""
    body = build_request()
    tokens = counter_for_model("gpt-4o", "openai").count(orjson.dumps(body).decode())
    floor_us = _time(lambda: _floor(body), n)

    def cold() -> None:
        PromptCache().prepare_request(copy.deepcopy(body), format="openai-chat")

    # Deep-copying is not promptcache's work, and constructing the facade is done once per
    # process, not per request: time both alone and subtract them.
    copy_us = _time(lambda: copy.deepcopy(body), n // 3)
    new_cache_us = _time(PromptCache, n // 3)
    cold_us = _time(cold, n // 3) - copy_us - new_cache_us

    warm_cache = PromptCache()
    warm_cache.prepare_request(body, format="openai-chat")
    turn = [0]

    def warm() -> None:
        turn[0] += 1
        b = {**body, "messages": [*body["messages"][:-1], {"role": "user", "content": f"turn {turn[0]}"}]}
        warm_cache.prepare_request(b, format="openai-chat")

    warm_us = _time(warm, n)
    # The same agent with its tool list reshuffled on every call (a cache killer real apps
    # have): the prefix is rebuilt each time, from tools and messages analysed before.
    rng = random.Random(0)

    def shuffled() -> None:
        turn[0] += 1
        tools = list(body["tools"])
        rng.shuffle(tools)
        b = {
            **body,
            "tools": tools,
            "messages": [*body["messages"][:-1], {"role": "user", "content": f"turn {turn[0]}"}],
        }
        warm_cache.prepare_request(b, format="openai-chat")

    shuffled_us = _time(shuffled, n)
    # An agent loop: each call resends the conversation with last call's answer (a tool call)
    # and the tool's result appended, the result being the new turn. Restarts every 40 steps
    # so the request stays ~16k tokens.
    grown: list[Any] = []
    loop_cache = PromptCache()  # an agent of its own: this loop is not a fork of the calls above
    loop_cache.prepare_request(body, format="openai-chat")

    def growing() -> None:
        turn[0] += 1
        if not grown or len(grown) >= 80:
            grown[:] = body["messages"]
        call_id = f"call_{turn[0]}"
        grown.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": "get_reservation_details",
                            "arguments": '{"reservation_id": "8JX2WO"}',
                        },
                    }
                ],
            }
        )
        grown.append(
            {"role": "tool", "tool_call_id": call_id, "content": f'{{"status": "ok", "step": {turn[0]}}}'}
        )
        loop_cache.prepare_request({**body, "messages": list(grown)}, format="openai-chat")

    growing_us = _time(growing, n)
    # A server running 8 conversations of this agent for one tenant, their calls interleaved:
    # each its own history (first messages differ), each call a new turn of one of them.
    others = []
    for j in range(8):
        conv = [dict(m) for m in body["messages"][1:-1]]
        conv[0]["content"] = f"[conversation {j}] {conv[0]['content']}"
        others.append(conv)
    served = PromptCache()

    def interleaved() -> None:
        turn[0] += 1
        conv = others[turn[0] % len(others)]
        msgs = [body["messages"][0], *conv, {"role": "user", "content": f"turn {turn[0]}"}]
        served.prepare_request({**body, "messages": msgs}, format="openai-chat")

    for _ in range(2 * len(others)):  # each conversation's first call
        interleaved()
    interleaved_us = _time(interleaved, n)
    # The same, each conversation's system prompt naming its customer (its own prefix).
    per_user = PromptCache()
    systems = [
        {"role": "system", "content": f"{body['messages'][0]['content']}\nCustomer: c{j}"} for j in range(8)
    ]

    def interleaved_per_user() -> None:
        turn[0] += 1
        j = turn[0] % len(others)
        msgs = [systems[j], *others[j], {"role": "user", "content": f"turn {turn[0]}"}]
        per_user.prepare_request({**body, "messages": msgs}, format="openai-chat")

    for _ in range(4 * len(others)):  # first calls, and the family learning the customer line
        interleaved_per_user()
    per_user_us = _time(interleaved_per_user, n)
    copied = [copy.deepcopy(body) for _ in range(n)]
    it = iter(copied)
    warm_copied_us = _time(lambda: warm_cache.prepare_request(next(it), format="openai-chat"), n)
    return {
        "request": {
            "tokens_o200k": tokens,
            "bytes": len(orjson.dumps(body)),
            "tools": len(body["tools"]),
            "messages": len(body["messages"]),
        },
        "floor_us": round(floor_us, 1),
        "cold_us": round(cold_us, 1),
        "warm_us": round(warm_us, 1),
        "warm_copied_us": round(warm_copied_us, 1),
        "warm_shuffled_tools_us": round(shuffled_us, 1),
        "warm_growing_history_us": round(growing_us, 1),
        "warm_interleaved_us": round(interleaved_us, 1),
        "warm_interleaved_per_user_system_us": round(per_user_us, 1),
        "subtracted_from_cold_us": {"deepcopy": round(copy_us, 1), "PromptCache()": round(new_cache_us, 1)},
        "cold_ratio": round(cold_us / floor_us, 3),
        "warm_ratio": round(warm_us / floor_us, 3),
        "warm_copied_ratio": round(warm_copied_us / floor_us, 3),
        "warm_shuffled_tools_ratio": round(shuffled_us / floor_us, 3),
        "warm_growing_history_ratio": round(growing_us / floor_us, 3),
        "warm_interleaved_ratio": round(interleaved_us / floor_us, 3),
        "warm_interleaved_per_user_system_ratio": round(per_user_us / floor_us, 3),
        "targets": {"cold_ratio": 1.2},
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
