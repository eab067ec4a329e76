"""Where the bundled real-world fixtures live: provider recordings and agent prompts made by others.

These files ship inside the package (``promptcache/lab/data/real/``), so the demo, ``promptcache bench
traces``, the benchmarks and the tests find them in a bare clone and in an installed wheel alike.
``data/real/SOURCES.md`` names the upstream repository, commit and licence of every file.

Example::

    >>> from promptcache.lab.bundled import AGENTS
    >>> (AGENTS / "tau_bench_airline_system_prompt.md").is_file()
    True
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["AGENTS", "CASSETTES", "DECODED", "REAL"]

#: The root of the bundled real fixtures (``SOURCES.md`` there gives provenance and licences).
REAL = Path(__file__).resolve().parent / "data" / "real"
#: Real agent material: tau-bench airline/retail policies, tools and trajectories; SWE-agent prompts.
AGENTS = REAL / "agents"
#: vcrpy cassettes recorded against the real Anthropic, OpenAI, Bedrock and Gemini APIs.
CASSETTES = REAL / "cassettes"
#: The same interactions with their bodies decoded to readable JSON.
DECODED = REAL / "decoded"
