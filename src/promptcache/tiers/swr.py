"""``StaleWhileRevalidate``: serve a just-expired entry while one background refresh runs.

A read-through store wrapper. Applies only to the entry types listed
(``types``): an entry of such a type is stamped to stay servable ``window_s``
past its TTL (``stale_until``); a caller served a stale entry gets it at once
and one refresh (a fill through ``inner``) per (tenant, key) runs in the
background. Design rules (DESIGN.md): an invalidated entry is never served,
stale window or not (the router's tag check comes first); a failed refresh is
dropped and logged, never retried on the hot path (*write-back fails → drop it*).

The rule is written once, for asyncio (``_async/swr.py``); the sync methods are
generated from it (``_sync/swr.py``, scripts/gen_sync.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from promptcache.tiers._async.swr import AsyncStaleWhileRevalidate
from promptcache.tiers._sync.swr import SyncStaleWhileRevalidate
from promptcache.tiers.concurrency import Background
from promptcache.tiers.entry import Entry

__all__ = ["StaleWhileRevalidate"]


class StaleWhileRevalidate(SyncStaleWhileRevalidate, AsyncStaleWhileRevalidate):
    """Wrap ``inner`` (a :class:`~promptcache.tiers.readthrough.ReadThrough`): stale reads for ``types``."""

    def __init__(
        self,
        inner: Any,
        *,
        count: Callable[[str], None],
        types: Iterable[str] = (),
        window_s: float = 60.0,
    ) -> None:
        """Serve entries of ``types`` up to ``window_s`` past their TTL; ``count("swr_served")``."""
        self.inner = inner
        self._count = count
        self.types = frozenset(types)
        self.window_s = window_s
        self.background = Background("swr")

    def applies(self, entry_type: str) -> bool:
        """Whether entries of ``entry_type`` may be served stale."""
        return entry_type in self.types

    def stamp(self, entry: Entry) -> Entry:
        """``entry`` with its stale window, when its type has one."""
        if entry.expires_at is not None and entry.entry_type in self.types:
            return entry.model_copy(update={"stale_until": entry.expires_at + self.window_s})
        return entry

    def close(self) -> None:
        """Wait for the refreshes running in threads; drop the queued ones."""
        self.background.close()
