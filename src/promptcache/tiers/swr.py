"""``StaleWhileRevalidate``: serve a just-expired entry while one background refresh runs.

Applies only to the entry types listed (``swr_types``): an entry of such a type
stays servable ``window_s`` past its TTL (``stale_until``); a caller served a
stale entry gets it at once and one refresh per (tenant, key) runs in the
background. Design rules (DESIGN.md): an invalidated entry is never served,
stale window or not (the tag check comes first); a failed refresh is dropped
and logged, never retried on the hot path (*write-back fails → drop it*).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from promptcache.tiers.entry import Entry, key_digest
from promptcache.tiers.outcome import Produced

__all__ = ["StaleWhileRevalidate"]

log = logging.getLogger("promptcache.tiers")


def _log_failure(key: str, produced: Produced) -> None:
    if produced.error is not None:
        log.warning("background refresh of %s failed (%s)", key_digest(key), type(produced.error).__name__)


class StaleWhileRevalidate:
    """Which entries may be served stale, for how long, and the refreshes in progress."""

    def __init__(self, types: Iterable[str] = (), window_s: float = 60.0) -> None:
        """Serve entries of ``types`` up to ``window_s`` past their TTL."""
        self.types = frozenset(types)
        self.window_s = window_s
        self._lock = threading.Lock()
        self._refreshing: set[tuple[str, str]] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def applies(self, entry_type: str) -> bool:
        """Whether entries of ``entry_type`` may be served stale."""
        return entry_type in self.types

    def stamp(self, entry: Entry) -> Entry:
        """``entry`` with its stale window, when its type has one."""
        if entry.expires_at is not None and entry.entry_type in self.types:
            return entry.model_copy(update={"stale_until": entry.expires_at + self.window_s})
        return entry

    def refresh_later(self, tenant: str, key: str, refresh: Callable[[], Produced]) -> None:
        """Run ``refresh`` in a background thread unless one for this key is running."""
        fk = (tenant, key)
        with self._lock:
            if fk in self._refreshing:
                return
            self._refreshing.add(fk)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(2, thread_name_prefix="promptcache-swr")
            pool = self._pool

        def run() -> None:
            try:
                _log_failure(key, refresh())
            except Exception:
                log.warning("background refresh of %s failed", key_digest(key), exc_info=True)
            finally:
                with self._lock:
                    self._refreshing.discard(fk)

        pool.submit(run)

    def arefresh_later(self, tenant: str, key: str, refresh: Callable[[], Awaitable[Produced]]) -> None:
        """Run ``refresh`` as a task of the running loop unless one for this key is running."""
        fk = (tenant, key)
        with self._lock:
            if fk in self._refreshing:
                return
            self._refreshing.add(fk)

        async def run() -> None:
            try:
                _log_failure(key, await refresh())
            except Exception:
                log.warning("background refresh of %s failed", key_digest(key), exc_info=True)
            finally:
                with self._lock:
                    self._refreshing.discard(fk)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Wait for the refreshes running in threads; drop the queued ones."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
