"""Agents we did not write: every arm over the agents corpus (``promptcache bench agents``).

``run()`` simulates each corpus trace (:mod:`promptcache.lab.corpus`) on OpenAI automatic,
OpenAI explicit and Anthropic for every arm (:mod:`promptcache.lab.bench_agents`) and lists,
without failing, where promptcache is below a baseline in cached share or input cost: the
figures are evidence for the engine's next decisions, not a gate.
"""

from __future__ import annotations

import warnings
from typing import Any

from promptcache.lab.bench_agents import render_table, run_agents


def run() -> dict[str, Any]:
    """Every trace × provider × arm, the markdown table, and promptcache's losses to a baseline."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # model-deprecation notices from the SDKs
        report = run_agents()
    return {
        "traces": report.model_dump(mode="json")["traces"],
        "table": render_table(report),
        "promptcache_below_a_baseline": report.losses(),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
