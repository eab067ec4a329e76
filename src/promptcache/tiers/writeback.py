"""``WriteBack``: writes below L1 go on a bounded background queue, as a store wrapper.

Design rule (DESIGN.md, "Failure behaviour"): *write-back fails → drop it, never
retry on the hot path.* ``put`` returns at once: the entry is queued and a
daemon thread writes it (sealing, L3 offload and the L2 write all run there,
off the caller's thread). A full queue drops the write; a failed write is
dropped; both are counted (``writeback_dropped``/``writeback_failed`` and the
tier's ``dropped``). Nothing is retried.

A delete is not queued: it reaches the tier now, and a put of the same key that
was queued before it is discarded, so a queued write cannot resurrect what was
deleted after it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from promptcache.tiers._async.writeback import AsyncWriteBackDelete
from promptcache.tiers._sync.writeback import SyncWriteBackDelete
from promptcache.tiers.base import StatsCounter
from promptcache.tiers.breaker import TierSkipped
from promptcache.tiers.entry import Entry, key_digest
from promptcache.tiers.wrapper import Forwarding

__all__ = ["WriteBack"]

log = logging.getLogger("promptcache.tiers")


class WriteBack(SyncWriteBackDelete, AsyncWriteBackDelete, Forwarding):
    """Queue ``put`` for ``inner``; reads, deletes and invalidations go straight through."""

    def __init__(
        self,
        inner: Any,
        *,
        count: Callable[[str], None],
        tier_counters: StatsCounter,
        queue_size: int = 10_000,
    ) -> None:
        """``count(name)`` adds to the router's counters, ``tier_counters`` are the tier's."""
        super().__init__(inner)
        self._count = count
        self._tier = tier_counters
        self.queue: queue.Queue[tuple[Entry, int] | None] = queue.Queue(queue_size)
        self._cond = threading.Condition()
        self._pending = 0
        self._seq = 0
        self._deleted: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="promptcache-writeback", daemon=True)
        self._thread.start()

    def put(self, entry: Entry) -> None:
        """Queue ``entry`` for the tier; drop it (counted) when the queue is full."""
        with self._cond:
            self._seq += 1
            seq = self._seq
            self._pending += 1
        try:
            self.queue.put_nowait((entry, seq))
            self._count("writeback_queued")
        except queue.Full:
            self._done()
            self._count("writeback_dropped")
            self._tier.add("dropped")

    def cut(self, key: str) -> None:
        """Discard the puts of ``key`` queued so far (it is being deleted)."""
        with self._cond:
            self._deleted[key] = self._seq

    def _done(self) -> None:
        with self._cond:
            self._pending -= 1
            if self._pending == 0:
                self._deleted.clear()
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            op = self.queue.get()
            if op is None:
                return
            entry, seq = op
            try:
                with self._cond:
                    cut = self._deleted.get(entry.key)
                if cut is None or seq > cut:
                    self.inner.put(entry)
            except TierSkipped:
                self._count("writeback_failed")
                self._tier.add("dropped")
            except Exception:
                self._count("writeback_failed")
                self._tier.add("dropped")
                log.exception("write-back of %s failed", key_digest(entry.key))
            finally:
                self._done()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued write has been attempted; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Flush (bounded) and stop the thread; later puts are not written."""
        self.flush(timeout)
        try:
            self.queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("write-back queue still full at close")
        self._thread.join(timeout)
