"""Bad input ends in a clear error naming the field or a counted miss: never a crash, never data loss."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.reliability_badinput import run_cases

from . import _path  # noqa: F401

# Cases that were bugs when this harness first ran, fixed since; each must stay fixed.
FIXED = (
    "l2_entry_foreign_envelope",  # an unreadable entry is now overwritten on the next write
    "wire_anthropic_body_as_gemini",  # a body of another format is refused, naming it
    "wire_openai_chat_body_as_responses",
    "wire_lone_surrogate_system",  # a WireFormatError naming the block, not a bare UnicodeEncodeError
    "wire_responses_input_item_not_object",  # found by the fuzzer: was an AttributeError
)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in run_cases(Path(tmp_path_factory.mktemp("bad")))}


def test_every_case_ran(cases: dict[str, dict[str, object]]) -> None:
    assert len(cases) >= 30


def test_bad_input_outcomes(cases: dict[str, dict[str, object]]) -> None:
    bad = {n: (c["outcome"], c["detail"]) for n, c in cases.items() if not c["ok"]}
    assert bad == {}


@pytest.mark.parametrize("name", FIXED)
def test_formerly_buggy_cases_stay_fixed(name: str, cases: dict[str, dict[str, object]]) -> None:
    assert cases[name]["ok"], cases[name]["detail"]
