"""The ``linear`` section of ``make reliability`` measures what it says (its figures are ratios of one run,
so no time is asserted here: only that each case is the case it claims to be)."""

from __future__ import annotations

from benchmarks.reliability_linear import SHAPES, memory_at, prompt, time_ratio

from . import _path  # noqa: F401


def test_the_prompts_hold_what_they_say() -> None:
    for shape in SHAPES:
        text = prompt(100_000, 2_500, shape=shape)
        assert len(text) == 99_999 and text.count("2024-") == 2_500
        assert ("\n" in text) == (shape != "one_line") and text.isascii() == (shape != "non_ascii")


def test_staying_values_stay_and_moving_values_move() -> None:
    staying = time_ratio(100_000, 2_500, runs=2)
    moving = time_ratio(100_000, 1_000, moving=True, runs=2)  # at the relocation bound: all move
    assert staying["processed"] and staying["moved_values"] == 0
    assert moving["processed"] and moving["moved_values"] == 1_000 and moving["relocated"]
    assert staying["ratio"] > 0 and moving["ratio"] > 0


def test_moving_values_above_the_bound_stay_in_place_and_are_counted() -> None:
    over = time_ratio(100_000, 2_500, moving=True, runs=2)
    assert over["processed"] and over["moved_values"] == 0 and not over["relocated"]
    assert over["degradations"].get("too_many_volatile", 0) > 0


def test_memory_is_measured_over_tables_that_stop_growing() -> None:
    res = memory_at(3_000)
    assert res["tenants"] == 3_000 and res["stats_rows"] == 3_100  # and the 100 warm-up tenants: all kept
    assert res["families"] <= 4_096 and res["key_contracts"] <= 4_096
    assert res["mb_held"] > 0
