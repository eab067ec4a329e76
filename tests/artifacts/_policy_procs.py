"""Child processes of the two-policy tests (spawned: must be importable)."""

from __future__ import annotations

from typing import Any

from promptcache import PromptCache
from promptcache.artifacts import ToolSpec


def store_under(location: str, policy: dict[str, Any], q: Any) -> None:
    """Store one tool output holding an e-mail address under ``policy`` in ``location``."""
    cache = PromptCache(policy, store=location, record_stats=False)
    try:
        spec = ToolSpec(name="get_contact", side_effect="read_only")
        res = cache.tools.call(spec, {"id": 7}, lambda id: {"mail": "jane.doe@example.com"}, tenant="acme")
        cache.store.flush()
        q.put("stored" if res.lookup.stored else res.lookup.why)
    finally:
        cache.close()
