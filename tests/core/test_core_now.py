"""A value that gives the request's own time moves from the family's first call (issue 22,
decision 2): a clock to the minute changes by the next minute, so keeping it in place until its
first change costs a full miss. Dates alone, and dates that are not now (a policy's fixed
"current time", an example), stay where they are until seen changing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core_bodies import make_body
from hypothesis import given, settings
from hypothesis import strategies as st

from promptcache import PromptCache
from promptcache.pipeline.learning import NOW_TOLERANCE_S, states_now

NOW = datetime(2026, 12, 7, 9, 58, 12, tzinfo=UTC)
POLICY = "You are a booking agent.\nFollow the refund policy below.\n" + "Refunds take 5 days.\n" * 40


def _system(clock_line: str) -> str:
    return f"{POLICY}{clock_line}\nBe brief."


def _moved(cache: PromptCache, system: str, turn: int = 0) -> list[str]:
    conv = [("user", f"question {turn}")]
    plan = cache.prepare_request(make_body("openai-chat", system, [], conv), format="openai-chat").plan
    return [f.text for f in plan.fragments]


def _clock(at: list[float]) -> PromptCache:
    return PromptCache(clock=lambda: at[0])


def test_a_clock_giving_now_moves_from_the_first_call_and_keeps_moving() -> None:
    at = [NOW.timestamp()]
    cache = _clock(at)
    first = _moved(cache, _system(f"## Current Time\n{NOW:%Y-%m-%d %H:%M} (Monday)"))
    assert first == [f"{NOW:%Y-%m-%d %H:%M}"]
    # The agent froze the clock for a long turn: no longer now, still moved (no flip).
    at[0] += 3600
    assert _moved(cache, _system(f"## Current Time\n{NOW:%Y-%m-%d %H:%M} (Monday)"), 1) == [
        f"{NOW:%Y-%m-%d %H:%M}"
    ]


def test_values_that_are_not_now_stay_until_seen_changing() -> None:
    at = [NOW.timestamp()]
    for line in (
        f"Current date: {NOW:%Y-%m-%d}",  # a date alone: changes once a day
        "The current time is 2024-05-15 15:00:00 EST.",  # tau-bench's fixed time
        "Example: 2024-01-15T14:30:25",  # an example in the instructions
    ):
        cache = _clock(at)
        assert _moved(cache, _system(line)) == [], line
        assert _moved(cache, _system(line), 1) == [], line


def test_without_its_own_time_a_family_learns_the_clock_by_change() -> None:
    # A clock an hour off (another time zone than the process's and UTC) is not recognised as
    # now: it moves at its first change, as any detected value does.
    at = [NOW.timestamp()]
    cache = _clock(at)
    off = NOW + timedelta(hours=5)
    assert _moved(cache, _system(f"Time: {off:%Y-%m-%d %H:%M}")) == []
    at[0] += 60
    moved = _moved(cache, _system(f"Time: {off + timedelta(minutes=1):%Y-%m-%d %H:%M}"), 1)
    assert moved == [f"Time: {off + timedelta(minutes=1):%Y-%m-%d %H:%M}"]


@settings(max_examples=200, deadline=None)
@given(
    delta=st.floats(-3 * 86400, 3 * 86400, allow_nan=False),
    fmt=st.sampled_from(["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S", "epoch"]),
)
def test_states_now_is_the_distance_to_now(delta: float, fmt: str) -> None:
    value_at = NOW + timedelta(seconds=delta)
    text: Any = str(int(value_at.timestamp())) if fmt == "epoch" else value_at.strftime(fmt)
    got = states_now(f"now: {text}", NOW.timestamp())
    local = abs(value_at.replace(tzinfo=None).timestamp() - NOW.timestamp()) <= NOW_TOLERANCE_S + 60
    if abs(delta) <= NOW_TOLERANCE_S - 60:  # minus the minute a value to the minute drops
        assert got
    elif abs(delta) > NOW_TOLERANCE_S + 60 and not (fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S") and local):
        assert not got
