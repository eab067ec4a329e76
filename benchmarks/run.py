"""``make bench``: run every benchmark and write one JSON report.

Each benchmark module exposes ``run() -> dict``; figures are ratios measured
in the same run (these machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from typing import Any

MODULES = [
    "benchmarks.bench_core",
    "benchmarks.bench_tiers",
    "benchmarks.bench_hitrate",
    "benchmarks.bench_agents",
    "benchmarks.bench_overhead",
    "benchmarks.bench_gateway",
]


def main() -> int:
    """Run the benchmarks; print the JSON report and write it to ``--out``."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench-results.json")
    args = ap.parse_args()
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": {},
    }
    failed = False
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # benchmark not written yet
            raise
        try:
            report["results"][name.split(".")[-1]] = mod.run()
        except Exception:  # a broken benchmark is reported, the others still run
            failed = True
            report["results"][name.split(".")[-1]] = {"error": traceback.format_exc(limit=3)}
    text = json.dumps(report, indent=2)
    print(text)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
