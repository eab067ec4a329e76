"""Cache hit rate per scenario and arm on the tau-bench traces (OpenAI and Anthropic rules, simulated).

``run()`` builds every scenario trace (:mod:`promptcache.lab.traces`) for the airline and
retail prefixes, simulates each against OpenAI and Anthropic with
``promptcache.lab.bench.run_hitrate`` and checks the issue's targets:

* promptcache's cached fraction ≥ 0.95 × the oracle's on every scenario;
* promptcache ≥ ``as_sent`` on the clean traces;
* on Anthropic, promptcache ≥ ``langchain_middleware`` on every trace.
"""

from __future__ import annotations

import warnings
from typing import Any

from promptcache.lab.bench import run_hitrate
from promptcache.lab.traces import SCENARIOS, build_trace

PROVIDERS = ("openai", "anthropic")
DOMAINS = ("airline", "retail")


def run() -> dict[str, Any]:
    """Every scenario × provider × domain: arms, ratios to the oracle, and the targets met or missed."""
    results: dict[str, Any] = {}
    misses: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # model-deprecation notices from the SDKs
        for domain in DOMAINS:
            for scenario in SCENARIOS:
                lines = build_trace(scenario, domain=domain)
                for provider in PROVIDERS:
                    r = run_hitrate(lines, provider)  # type: ignore[arg-type]
                    name = f"{domain}/{scenario}/{provider}"
                    arms = {k: v.model_dump() for k, v in r.arms.items()}
                    pc = r.arms["promptcache"].cached_fraction
                    ratio = r.ratio_to_oracle("promptcache")
                    checks = {"promptcache_ge_0.95_oracle": ratio >= 0.95}
                    if scenario == "clean":
                        checks["promptcache_ge_as_sent"] = pc >= r.arms["as_sent"].cached_fraction
                    if "langchain_middleware" in r.arms:
                        checks["promptcache_ge_langchain"] = (
                            pc >= r.arms["langchain_middleware"].cached_fraction
                        )
                    misses += [f"{name}: {c}" for c, ok in checks.items() if not ok]
                    results[name] = {
                        "model": r.model,
                        "requests": r.requests,
                        "arms": arms,
                        "ratio_to_oracle": {k: round(r.ratio_to_oracle(k), 4) for k in r.arms},
                        "targets": checks,
                    }
    return {"scenarios": results, "targets_missed": misses, "all_targets_met": not misses}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
