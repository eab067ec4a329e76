"""Fixtures shared by the LangChain and LangGraph tests (each test module imports them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from promptcache.lab.bundled import AGENTS

CLOCK_LINE = "The current time is 2024-05-15 15:00:00 EST."


def _load(name: str) -> Any:
    path = AGENTS / name
    if not path.exists():
        pytest.skip(f"real agent fixture {name} not found at {AGENTS}")
    return json.loads(path.read_text()) if name.endswith(".json") else path.read_text()


@pytest.fixture(scope="session")
def airline_policy() -> str:
    """The real tau-bench airline system prompt (with its clock line)."""
    text: str = _load("tau_bench_airline_system_prompt.md")
    assert CLOCK_LINE in text
    return text


@pytest.fixture(scope="session")
def airline_tools() -> list[dict[str, Any]]:
    """The real tau-bench airline tool schemas (OpenAI function format)."""
    tools: list[dict[str, Any]] = _load("tau_bench_airline_tools.json")
    return tools


@pytest.fixture(scope="session")
def trajectory() -> list[dict[str, Any]]:
    """A real recorded GPT-4o airline trajectory (task 2): system, user, assistant, tool messages."""
    runs = _load("tau_bench_airline_gpt4o_trajectories_sample.json")
    run = next(r for r in runs if r["task_id"] == 2)
    traj: list[dict[str, Any]] = run["traj"]
    return traj


@pytest.fixture
def emulator() -> Iterator[Any]:
    """A fresh provider emulator on an OS-chosen loopback port."""
    emulate = pytest.importorskip("promptcache.lab.emulate")
    with emulate.Emulator(port=0) as emu:
        yield emu
