"""LangGraph tests reuse the LangChain tests' fixtures and helpers (emulator, tau-bench data)."""

from __future__ import annotations

import sys
from pathlib import Path

_LC_TESTS = Path(__file__).resolve().parents[2] / "langchain" / "tests"
sys.path.insert(0, str(_LC_TESTS))

from conftest_lc_fixtures import airline_policy, airline_tools, emulator, trajectory  # noqa: E402

__all__ = ["airline_policy", "airline_tools", "emulator", "trajectory"]
