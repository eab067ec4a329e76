"""Fixtures for the LangChain integration tests (defined in conftest_lc_fixtures, shared with LangGraph's)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest_lc_fixtures import airline_policy, airline_tools, emulator, trajectory

__all__ = ["airline_policy", "airline_tools", "emulator", "trajectory"]
