"""Linear time and bounded memory (issue 19, item 7), measured as ratios in one run.

Time: ``prepare_request`` on a system prompt of 1 MB holding 25k timestamps, against
``json.dumps`` of the same body (the issue's bar: at most 50x), and at 0.5, 1 and 2 MB to show
the time per MB stays flat (a quadratic pass doubles it with each doubling), in the shapes of
:data:`SHAPES`, with the timestamps staying and moving. 25k values are above the relocation
bound (``PromptCache(max_relocated_values=...)``, 1,000 by default): such a text is sent in
place, not relocated. So the bar is also held where relocation runs in full: 1 MB holding as
many values as the bound, all of them moving (``at_bound``). Each body is new to the cache (no
memo hit), and each figure is the median of runs in CPU time of the thread (the machine may be
shared), each run timing ``json.dumps`` (best of 5) right before ``prepare_request``.

Memory: the in-process tables that grow with tenants and models (the usage figures per tenant
and model, the key contracts, the prefix families), filled with 100k tenants, measured with
``tracemalloc`` against the same cache before; see :func:`memory_at`.
"""

from __future__ import annotations

import gc
import json
import logging
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

#: The issue's bar: prepare_request of the 1 MB case within this many json.dumps of the body.
MAX_RATIO = 50.0

#: How the prompt is laid out: a timestamp on each 40-character line; the same text on one
#: line (a per-span scan of the span's line was quadratic too); and lines after one non-ASCII
#: character (the scanner mapped byte offsets back to characters from the start, per hit).
SHAPES = ("lines", "one_line", "non_ascii")


def prompt(n_bytes: int, n_timestamps: int, *, shape: str = "lines", salt: str = "", year: int = 2024) -> str:
    """A system prompt of ``n_bytes`` characters holding ``n_timestamps`` timestamps (in ``year``)."""
    per = n_bytes // n_timestamps
    lines = []
    for i in range(n_timestamps):
        stamp = f"{year}-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(7 * i) % 60:02d}"
        line = f"{salt}event {i:06d} at {stamp} ok"
        lines.append(line.ljust(per - 1, ".")[: per - 1])
    text = (" " if shape == "one_line" else "\n").join(lines)
    return "Café log\n" + text[9:] if shape == "non_ascii" else text


def body(
    n_bytes: int, n_timestamps: int, *, shape: str = "lines", salt: str = "", year: int = 2024
) -> dict[str, Any]:
    """An OpenAI Chat body whose system prompt is :func:`prompt`."""
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": prompt(n_bytes, n_timestamps, shape=shape, salt=salt, year=year)},
            {"role": "user", "content": "What happened last?"},
        ],
    }


def _best(fn: Callable[[], Any], runs: int) -> float:
    # CPU time of this thread, not wall time: on a shared machine, time spent waiting for a
    # core would inflate the long measurement far more than the short one
    best = float("inf")
    for _ in range(runs):
        t = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t)
    return best


def time_ratio(
    n_bytes: int, n_timestamps: int, *, shape: str = "lines", moving: bool = False, runs: int = 3
) -> dict[str, Any]:
    """Best ``prepare_request`` time over best ``json.dumps`` time, for bodies new to the cache.

    Staying (the default): the text around the timestamps changes from call to call, the
    timestamps do not, so the family keeps them in place (what a first call does too).
    ``moving``: every timestamp changes on every call (a new year each call), so from the
    second call on the family moves all of them out of the prefix: a fragment each, and
    the volatile block listing them.
    """
    from promptcache import PromptCache

    cache = PromptCache(record_stats=False)
    # the packaged catalog is read once per process, on the first request: not part of the figure
    cache.prepare_request(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, format="openai-chat"
    )
    bodies = [
        body(n_bytes, n_timestamps, shape=shape, year=2000 + i)
        if moving
        else body(n_bytes, n_timestamps, shape=shape, salt=f"r{i} ")
        for i in range(runs + 1)
    ]
    cache.prepare_request(bodies[0], format="openai-chat")  # the family's first call: values seen once
    # Each run times json.dumps (best of 5) just before prepare_request, so that both see the
    # same load on the machine; the figure is the median run. A new body each run: the
    # content-keyed memo would answer a repeated one in one lookup.
    pairs = []
    for b in bodies[1:]:
        dumps = _best(lambda b=b: json.dumps(b), 5)
        prepare = _best(lambda b=b: cache.prepare_request(b, format="openai-chat"), 1)
        pairs.append((prepare / dumps, dumps, prepare))
    ratio, dumps, prepare = sorted(pairs)[len(pairs) // 2]
    fastest = min(p for _, _, p in pairs)  # the run least disturbed (a full collection, the machine)
    plan = cache.prepare_request(bodies[-1], format="openai-chat").plan  # what the last call moved
    return {
        "bytes": len(json.dumps(bodies[0])),
        "timestamps": n_timestamps,
        "shape": shape,
        "moving": moving,
        "moved_values": len(plan.fragments),
        "relocated": not any("not relocated" in d for d in plan.decisions),
        "degradations": cache.degradations(),
        "json_dumps_ms": round(dumps * 1000, 2),
        "prepare_request_ms": round(prepare * 1000, 1),
        "ratio": round(ratio, 1),
        "ratios": [round(r, 1) for r, _, _ in pairs],
        "ms_per_mb": round(prepare * 1000 / (n_bytes / 1e6), 1),
        "fastest_ms_per_mb": round(fastest * 1000 / (n_bytes / 1e6), 1),
        "processed": not any("passed through" in d for d in plan.decisions),
    }


def linear_time(quick: bool) -> dict[str, Any]:
    """The 1 MB case against the bar, and the time per MB at 0.5, 1 and 2 MB in every shape.

    Passes when every 1 MB case, the values staying (the issue's case, and what every first call
    does) or moving (a new year on every call), is processed and within :data:`MAX_RATIO`; so is
    the 1 MB case holding as many values as the relocation bound, every one of them moving and
    relocated (a fragment and a line of the volatile block each); and the time per MB is flat in
    every case (linear: at most 1.5x from 0.5 to 2 MB, where a quadratic pass gives 4x).
    """
    from promptcache.pipeline.analyse import MAX_RELOCATED_VALUES

    runs = 3 if quick else 5
    sizes = (0.5, 1.0, 2.0)
    combos = [(shape, False) for shape in SHAPES] + [("lines", True), ("one_line", True)]
    # Each case's cache warns once that its text is above the relocation bound: expected here,
    # and counted in each case's "degradations".
    engine_log = logging.getLogger("promptcache.engine")
    level = engine_log.level
    engine_log.setLevel(logging.ERROR)
    try:
        cases = [
            time_ratio(int(mb * 1_000_000), int(mb * 25_000), shape=shape, moving=moving, runs=runs)
            for shape, moving in combos
            for mb in sizes
        ]
    finally:
        engine_log.setLevel(level)

    def name(c: dict[str, Any]) -> str:
        return f"{c['shape']}, {'moving' if c['moving'] else 'staying'}"

    # Growth from the fastest run of each size: a full collection of the garbage collector
    # lands in some runs and not others, which is noise here, not size.
    per_mb: dict[str, list[float]] = {}
    for c in cases:
        per_mb.setdefault(name(c), []).append(c["fastest_ms_per_mb"])
    growth = {k: round(v[-1] / v[0], 2) for k, v in per_mb.items()}
    one_mb = {name(c): c for c in cases if c["timestamps"] == 25_000}
    at_bound = time_ratio(1_000_000, MAX_RELOCATED_VALUES, shape="lines", moving=True, runs=runs)
    one_mb["at_bound, moving"] = at_bound
    return {
        "ratio_1mb": max(c["ratio"] for c in one_mb.values()),
        "ratio_1mb_by_case": {k: c["ratio"] for k, c in one_mb.items()},
        "max_ratio": MAX_RATIO,
        "ms_per_mb_growth_0_5_to_2mb": growth,
        "cases": [*cases, at_bound],
        "passed": all(c["ratio"] <= MAX_RATIO and c["processed"] for c in one_mb.values())
        and at_bound["relocated"]
        and at_bound["moved_values"] == MAX_RELOCATED_VALUES
        and all(g <= 1.5 for g in growth.values()),
    }


def memory_at(n_tenants: int) -> dict[str, Any]:
    """Memory the in-process tables hold after ``n_tenants`` tenants each made one call, by tracemalloc.

    Each tenant prepares a request and records its usage on one ``PromptCache`` (what an
    integration does per model call), on a model of its own every tenth call. The growth is
    measured over the first and the second half separately: bounded tables stop growing, so
    the second half adds (next to) nothing.
    """
    from promptcache import PromptCache
    from promptcache.usage import CacheUsage

    cache = PromptCache(record_stats=False)

    def call(i: int) -> None:
        tenant = f"tenant-{i:07d}"
        model = f"gpt-4o-ft-{i}" if i % 10 == 0 else "gpt-4o"
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": "You help. Current date: 2024-05-15"},
                {"role": "user", "content": f"hi from {tenant}"},
            ],
        }
        cache.prepare_request(body, format="openai-chat", tenant=tenant)
        usage = CacheUsage(
            provider="openai", model=model, input_tokens=1000, cache_read_tokens=500, output_tokens=10
        )
        cache.record_usage(usage, tenant=tenant)

    for i in range(100):  # imports, the catalog, the first memo entries: not per tenant
        call(n_tenants + i)
    half = n_tenants // 2
    gc.collect()
    tracemalloc.start(1)
    try:
        start = tracemalloc.get_traced_memory()[0]
        for i in range(half):
            call(i)
        gc.collect()
        middle = tracemalloc.get_traced_memory()[0]
        for i in range(half, n_tenants):
            call(i)
        gc.collect()
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stats_rows = len(cache._stats)
    return {
        "tenants": n_tenants,
        "mb_held": round((end - start) / 1e6, 1),
        "mb_first_half": round((middle - start) / 1e6, 1),
        "mb_second_half": round((end - middle) / 1e6, 1),
        "mb_peak": round((peak - start) / 1e6, 1),
        "stats_rows": stats_rows,
        "families": len(cache._families),
        "key_contracts": len(cache._contracts),
    }


def bounded_memory(quick: bool) -> dict[str, Any]:
    """Memory at 100k tenants (40k with ``quick``); passes when the second half adds at most
    a tenth of what the first did (an unbounded table adds as much again)."""
    res = memory_at(40_000 if quick else 100_000)
    res["passed"] = res["mb_second_half"] <= 0.1 * max(res["mb_first_half"], 1.0)
    return res
