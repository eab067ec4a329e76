"""Consecutive tau-bench airline calls share a byte-identical prefix after rewriting (and not before)."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from promptcache.canonical import canonical_json
from promptcache.engine import PromptCache
from promptcache.lab.bundled import AGENTS

VOL = "<volatile_context>"


def _load() -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
    trajs = json.loads((AGENTS / "tau_bench_airline_gpt4o_trajectories_sample.json").read_text())
    system = (AGENTS / "tau_bench_airline_system_prompt.md").read_text()
    tools = json.loads((AGENTS / "tau_bench_airline_tools.json").read_text())
    return trajs, system, tools


def _openai_calls(traj: list[dict[str, Any]], system: str, tools: list[Any]) -> list[dict[str, Any]]:
    rng = random.Random(1234)
    calls = []
    for i, m in enumerate(traj):
        if i == 0 or m["role"] != "assistant":
            continue
        ts = copy.deepcopy(tools)
        rng.shuffle(ts)
        sys_i = f"{system}\nCurrent time: 2024-05-15 15:{i % 60:02d}:07\n"
        calls.append(
            {
                "model": "gpt-4o",
                "messages": [{"role": "system", "content": sys_i}, *copy.deepcopy(traj[1:i])],
                "tools": ts,
            }
        )
    return calls


def _to_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    system = body["messages"][0]["content"]
    tools = [
        {
            "name": t["function"]["name"],
            "description": t["function"]["description"],
            "input_schema": t["function"]["parameters"],
        }
        for t in body["tools"]
    ]
    msgs: list[dict[str, Any]] = []
    for m in body["messages"][1:]:
        if m["role"] == "assistant":
            content: list[dict[str, Any]] = []
            if m.get("content"):
                content.append({"type": "text", "text": m["content"]})
            for c in m.get("tool_calls") or []:
                content.append(
                    {
                        "type": "tool_use",
                        "id": c["id"],
                        "name": c["function"]["name"],
                        "input": json.loads(c["function"]["arguments"]),
                    }
                )
            role = "assistant"
        elif m["role"] == "tool":
            content = [{"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": m["content"]}]
            role = "user"
        else:
            content = [{"type": "text", "text": m["content"]}]
            role = "user"
        if msgs and msgs[-1]["role"] == role:
            msgs[-1]["content"].extend(content)
        else:
            msgs.append({"role": role, "content": content})
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": system,
        "tools": tools,
        "messages": msgs,
    }


def _strip(value: Any) -> Any:
    # cache_control markers are not part of the cached bytes (and move between calls)
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _units(fmt: str, body: dict[str, Any]) -> list[str]:
    """Provider rendering order (tools, system, messages) as canonical JSON units."""
    b = _strip(body)
    units = [canonical_json(t).decode() for t in b.get("tools", [])]
    if fmt == "openai-chat":
        for m in b["messages"]:
            units.append(canonical_json(m).decode())
        return units
    s = b["system"]
    units += [canonical_json({"system": s}).decode()]
    for m in b["messages"]:
        units.append("role:" + m["role"])
        c = m["content"]
        for p in [{"type": "text", "text": c}] if isinstance(c, str) else c:
            units.append(canonical_json(p).decode())
    return units


def _stable(units: list[str]) -> list[str]:
    for k, u in enumerate(units):
        if VOL in u:
            return units[:k]
    return units


def _shares_prefix(prev: list[str], cur: list[str]) -> bool:
    head = "\n".join(_stable(prev))
    return "\n".join(cur).startswith(head)


@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic-messages"])
@pytest.mark.parametrize("which", [0, 2])
def test_consecutive_calls_share_prefix(fmt: str, which: int) -> None:
    trajs, system, tools = _load()
    calls = _openai_calls(trajs[which]["traj"], system, tools)
    if fmt == "anthropic-messages":
        calls = [_to_anthropic(c) for c in calls]
    assert len(calls) >= 5
    pc = PromptCache()
    prepared = [pc.prepare_request(c, format=fmt, tenant="airline") for c in calls]
    rewritten = [_units(fmt, p.body) for p in prepared]
    n_tools = len(tools)
    # A detected value moves only once the family has seen it change: the first
    # call keeps its clock line in place, the second moves it (the one miss),
    # and every later call extends the one before it.
    first_system = json.dumps(prepared[0].body, ensure_ascii=False)
    assert "Current time: 2024-05-15 15:" in first_system.split(VOL)[0]
    assert not any("Current time" in f.text for f in prepared[0].plan.fragments)
    assert any(c.cause == "volatile_value" for c in prepared[1].plan.explain().changes)
    for k in range(2, len(calls)):
        prev, cur = rewritten[k - 1], rewritten[k]
        stable_prev = _stable(prev)
        # the shared part covers all tools, the system prompt and the previous history
        n_hist_prev = len(calls[k - 1]["messages"]) - (1 if fmt == "openai-chat" else 0)
        assert len(stable_prev) >= n_tools + 1 + n_hist_prev - 1, k
        assert _shares_prefix(prev, cur), f"call {k} does not extend call {k - 1}"
        assert prepared[k].plan.prefix_key == prepared[1].plan.prefix_key
        assert any("Current time: 2024-05-15 15:" in f.text for f in prepared[k].plan.fragments)
    raw = [_units(fmt, c) for c in calls]
    assert not any(_shares_prefix(raw[k - 1], raw[k]) for k in range(1, len(raw)))
