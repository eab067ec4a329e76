"""``CacheStats``: the running aggregate of every call a ``PromptCache`` observed, per tenant and model.

The figures are :class:`~promptcache.figures.Totals` (one per tenant and model); ``StatsRow``
and ``CacheStats`` are their read-only view in dollars, and the store record is the same
``Totals`` with its keys.

Every framework integration feeds the same recorder (``StatsRecorder.record``), so a user sees
one set of figures whichever framework made the call. Until ``PromptCache.stats()`` exists,
reach a cache's recorder with :func:`recorder_for`:

>>> from promptcache import PromptCache
>>> from promptcache.usage import CacheUsage
>>> cache = PromptCache()
>>> rec = recorder_for(cache)
>>> rec.record("acme", CacheUsage(provider="openai", model="gpt-4o", input_tokens=1420,
...                               cache_read_tokens=1280, output_tokens=100))
>>> s = rec.snapshot()
>>> (s.total.calls, s.total.cache_read_tokens, s.get("acme", "gpt-4o").input_tokens)
(1, 1280, 1420)

Recording into the store
------------------------
A ``PromptCache`` also writes its figures into its store, so that ``promptcache stats`` in
another process shows them with no extra call: a :class:`StatsPersister` writes one record per
cache (the layout of :mod:`promptcache.telemetry.aggregate`, ``origin="cache"``) at most every
:data:`PERSIST_INTERVAL_S` seconds from a background thread, at ``close()`` and at interpreter
exit. A model call never waits for the store, and a store fault is logged, never raised.
Only counts, tokens and money per tenant and model are written: no prompt text, no tool
arguments, nothing a key could be derived from. Turn it off with ``PromptCache(record_stats=False)``
or ``PROMPTCACHE_RECORD_STATS=0`` in the environment.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from promptcache.figures import NANO, CallFigures, Totals, figures_from_usage
from promptcache.usage import CacheUsage

if TYPE_CHECKING:
    from promptcache.telemetry.aggregate import PersistedStats

__all__ = [
    "MAX_ROWS",
    "OTHER_TENANT",
    "PERSIST_INTERVAL_S",
    "RECORD_STATS_ENV",
    "CacheStats",
    "StatsPersister",
    "StatsRecorder",
    "StatsRow",
    "persist_stats",
    "recorder_for",
    "recording_enabled",
]

log = logging.getLogger(__name__)

RECORD_STATS_ENV = "PROMPTCACHE_RECORD_STATS"
"""Environment switch: ``0``, ``false``, ``no`` or ``off`` stops caches writing figures into the store."""

PERSIST_INTERVAL_S = 10.0
"""Longest a recorded call waits before a background write puts it in the store."""


class StatsRow(BaseModel):
    """Aggregate figures of one (tenant, model) pair, or of everything (``total``)."""

    model_config = ConfigDict(frozen=True)

    tenant: str | None = None
    model: str | None = None
    calls: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cost_avoided_usd: float = 0.0
    unpriced_calls: int = Field(default=0, description="calls whose model has no catalog price")

    @property
    def hit_rate(self) -> float:
        """Share of prompt tokens read from the provider's cache."""
        return self.cache_read_tokens / self.input_tokens if self.input_tokens else 0.0

    @classmethod
    def of(cls, totals: Totals, *, tenant: str | None = None, model: str | None = None) -> StatsRow:
        """The row showing ``totals`` (money in dollars) under ``tenant`` and ``model``."""
        return cls(
            tenant=tenant,
            model=model,
            calls=totals.calls,
            input_tokens=totals.input_tokens,
            cache_read_tokens=totals.cache_read_tokens,
            cache_write_tokens=totals.cache_write_tokens,
            output_tokens=totals.output_tokens,
            cost_usd=totals.cost_usd,
            cost_avoided_usd=totals.cost_avoided_usd,
            unpriced_calls=totals.unpriced_calls,
        )

    def totals(self) -> Totals:
        """The row's figures as :class:`~promptcache.figures.Totals` (money back in exact nano-USD)."""
        return Totals(
            calls=self.calls,
            usage_calls=self.calls,
            input_tokens=self.input_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            output_tokens=self.output_tokens,
            cost_nusd=round(self.cost_usd * NANO),
            cost_avoided_nusd=round(self.cost_avoided_usd * NANO),
            unpriced_calls=self.unpriced_calls,
        )


class CacheStats(BaseModel):
    """A snapshot of a recorder: one row per (tenant, model) and the total."""

    model_config = ConfigDict(frozen=True)

    rows: list[StatsRow] = Field(default_factory=list)
    total: StatsRow = Field(default_factory=StatsRow)

    def get(self, tenant: str, model: str | None) -> StatsRow:
        """The row of ``tenant`` on ``model`` (an empty row when there is none)."""
        for r in self.rows:
            if r.tenant == tenant and r.model == model:
                return r
        return StatsRow(tenant=tenant, model=model)

    def for_tenant(self, tenant: str) -> StatsRow:
        """Every model of ``tenant`` added up."""
        return _sum([r for r in self.rows if r.tenant == tenant], tenant=tenant, model=None)


def _sum(rows: list[StatsRow], *, tenant: str | None, model: str | None) -> StatsRow:
    return StatsRow.of(Totals.sum(r.totals() for r in rows), tenant=tenant, model=model)


MAX_ROWS = 10_000
"""Most (tenant, model) rows a recorder keeps; see :class:`StatsRecorder`."""

OTHER_TENANT = "(other)"
"""The tenant of the row that adds up the figures of rows a full recorder let go."""


class StatsRecorder:
    """Thread-safe running totals per (tenant, model). Cheap to call on every model call.

    Memory is bounded: at most ``max_rows`` (tenant, model) rows (:data:`MAX_ROWS`). When a new
    pair arrives at a full recorder, the row recorded least recently is added into one row of
    tenant :data:`OTHER_TENANT` (model ``None``) and let go: the totals stay exact, and the
    pairs in use keep their own rows. About 1.2 kB per row, so 12 MB at most by default.
    """

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        """Start empty, keeping at most ``max_rows`` rows (at least 1)."""
        if max_rows < 1:
            raise ValueError(f"max_rows: {max_rows!r}; keep at least one row")
        self._lock = threading.Lock()
        self.max_rows = max_rows
        # In order of last record: the first row is the one let go when a new pair arrives.
        self._rows: OrderedDict[tuple[str, str | None], Totals] = OrderedDict()
        self._other: Totals | None = None
        #: Called after every record (outside the lock); a :class:`StatsPersister` sets it.
        self.on_record: Callable[[], None] | None = None

    def record(self, tenant: str, usage: CacheUsage, *, figures: CallFigures | None = None) -> None:
        """Add one provider call's ``usage`` under ``tenant`` (priced with the packaged catalog).

        ``figures``: the call's figures when the caller already priced ``usage`` with
        :func:`~promptcache.metrics.figures_from_usage` (pricing is the costly part).
        """
        # Pricing happens outside the lock: it is the slow part and needs no shared state.
        f = figures if figures is not None else figures_from_usage(usage, call_id="", tenant=tenant)
        key = (tenant, usage.model)
        rows = self._rows
        with self._lock:
            row = rows.get(key)
            if row is None:
                if len(rows) >= self.max_rows:
                    _, oldest = rows.popitem(last=False)
                    if self._other is None:
                        self._other = Totals()
                    self._other.add(oldest)
                row = rows[key] = Totals()
            else:
                rows.move_to_end(key)
            row.add_call(f)
        hook = self.on_record
        if hook is not None:
            hook()

    def snapshot(self) -> CacheStats:
        """The figures so far (a consistent copy; recording may go on meanwhile)."""
        with self._lock:
            items = self._items()
            rows = [StatsRow.of(t, tenant=tenant, model=model) for (tenant, model), t in items]
            total = StatsRow.of(Totals.sum(t for _, t in items))
        return CacheStats(rows=rows, total=total)

    def _items(self) -> list[tuple[tuple[str, str | None], Totals]]:
        """Every row in report order, the :data:`OTHER_TENANT` row included (under the lock)."""
        items = sorted(self._rows.items(), key=_row_order)
        if self._other is not None:
            items.append(((OTHER_TENANT, None), self._other))
        return items

    def __len__(self) -> int:
        """How many (tenant, model) rows are kept (the :data:`OTHER_TENANT` row not counted)."""
        return len(self._rows)

    def reset(self) -> None:
        """Forget every figure (tests, or a new reporting period)."""
        with self._lock:
            self._rows.clear()
            self._other = None

    def persisted(self, writer_id: str, started_at: float) -> PersistedStats:
        """The figures as a ``PersistedStats`` record (``origin="cache"``), money exact in nano-USD."""
        from promptcache.pseudonym import tenant_label
        from promptcache.telemetry.aggregate import PROMPT, PersistedStats, StatsRecord, process_id

        # Written to the store: tenants by their keyed hash (the in-memory snapshot keeps names).

        with self._lock:
            rows = [
                StatsRecord(
                    tenant=tenant if tenant == OTHER_TENANT else tenant_label(tenant),
                    model=model or "",
                    entry_type=PROMPT,
                    **t.model_dump(),
                )
                for (tenant, model), t in self._items()
            ]
        return PersistedStats(
            writer=writer_id,
            origin="cache",
            process=process_id(),
            started_at=started_at,
            updated_at=time.time(),
            rows=rows,
        )


def _row_order(item: tuple[tuple[str, str | None], Any]) -> tuple[str, str]:
    (tenant, model), _ = item
    return (tenant, model or "")


_recorders: weakref.WeakKeyDictionary[Any, StatsRecorder] = weakref.WeakKeyDictionary()
_recorders_lock = threading.Lock()


def recorder_for(cache: Any) -> StatsRecorder:
    """The recorder attached to ``cache`` (a ``PromptCache``), created on first use.

    A ``PromptCache`` holds its own (it is read on every model call: an attribute, where a
    weak-keyed lookup makes a weak reference per call); any other object's is keyed weakly,
    so a recorder lives exactly as long as its cache.
    """
    own = getattr(cache, "_stats", None)
    if type(own) is StatsRecorder:
        return own
    rec = _recorders.get(cache)
    if rec is None:
        with _recorders_lock:
            rec = _recorders.get(cache)
            if rec is None:
                rec = _recorders[cache] = StatsRecorder()
    return rec


def recording_enabled(option: bool | None = None) -> bool:
    """Whether a cache writes its figures into its store: ``option`` if given, else the environment."""
    if option is not None:
        return option
    return os.environ.get(RECORD_STATS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class _Writer:
    """The one background thread of the process that runs every persister's due writes.

    Scheduling a write is a lock and a heap push: no thread is started on the call path (a
    thread per write interval, started by the model call that recorded first, cost that call
    the new thread's start, which a busy machine can make milliseconds).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, StatsPersister]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, persister: StatsPersister, delay_s: float) -> None:
        """Run ``persister._tick()`` on the writer thread ``delay_s`` from now."""
        with self._cond:
            heapq.heappush(self._due, (time.monotonic() + delay_s, next(self._seq), persister))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="promptcache-stats", daemon=True)
                self._thread.start()
            else:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._due and self._due[0][0] <= now:
                        persister = heapq.heappop(self._due)[2]
                        break
                    self._cond.wait(self._due[0][0] - now if self._due else None)
            try:
                persister._tick()
            except Exception as exc:  # one persister's fault must not stop the others' writes
                log.debug("promptcache: stats write failed: %s", exc)


_writer = _Writer()


class StatsPersister:
    """Writes one cache's figures into its store, off the call path.

    The first call recorded after a write schedules the next one ``interval_s`` later, on the
    process's one stats thread. ``close()`` and interpreter exit write what is left.
    The cache is held weakly: a persister never keeps a cache alive.
    """

    def __init__(
        self, cache: Any, recorder: StatsRecorder, *, interval_s: float = PERSIST_INTERVAL_S
    ) -> None:
        """Attach to ``recorder`` (the cache's) and write into ``cache.store``."""
        from promptcache.telemetry.aggregate import _writer_id

        self.interval_s = interval_s
        self.writer_id = _writer_id()
        self.started_at = time.time()
        self._cache = weakref.ref(cache)
        self._recorder = recorder
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._scheduled = False
        self._dirty = False
        self._closed = False
        self._registered = False
        recorder.on_record = self.notify
        _live.add(self)

    def notify(self) -> None:
        """A call was recorded: make sure a write is scheduled (cheap when one already is)."""
        self._dirty = True
        if self._scheduled or self._closed:
            return
        with self._lock:
            if not self._scheduled and not self._closed:
                self._scheduled = True
                _writer.schedule(self, self.interval_s)

    def _tick(self) -> None:
        with self._lock:
            self._scheduled = False
            if self._closed:
                return  # close() wrote what was left
        if not self.flush() and self._cache() is not None:
            self.notify()  # the store refused (busy, down): try again one interval later

    def flush(self) -> bool:
        """Write the figures now if any changed; False when the store could not take them."""
        with self._write_lock:
            if not self._dirty:
                return True
            cache = self._cache()
            if cache is None:
                return False
            from promptcache.telemetry.aggregate import publish_record

            self._dirty = False
            try:
                record = self._recorder.persisted(self.writer_id, self.started_at)
                self._registered = publish_record(cache.store, record, registered=self._registered)
            except Exception as exc:  # a store fault must never reach the app; the next write retries
                self._dirty = True
                log.debug("promptcache: stats not written to the store: %s", exc)
                return False
            return True

    def close(self) -> None:
        """Write what is left and stop (later calls are no longer written)."""
        with self._lock:
            self._closed = True
        self.flush()
        _live.discard(self)
        if self._recorder.on_record == self.notify:
            self._recorder.on_record = None


_live: weakref.WeakSet[StatsPersister] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A forked worker (gunicorn --preload, multiprocessing) is another writer: with the parent's
    # id it would overwrite the parent's record, and the parent's stats thread does not exist here.
    from promptcache.telemetry.aggregate import _writer_id

    global _writer
    _writer = _Writer()
    for p in list(_live):
        p.writer_id = _writer_id()
        p._registered = False
        p._scheduled = False
        p._lock = threading.Lock()
        p._write_lock = threading.Lock()
        if p._dirty:
            p.notify()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _flush_at_exit() -> None:
    for p in list(_live):
        try:
            p.close()
        except Exception:  # exit must not fail because a store went away first
            continue


def persist_stats(cache: Any, enabled: bool | None = None) -> StatsPersister | None:
    """A persister for ``cache``'s recorder, or None when recording is switched off."""
    if not recording_enabled(enabled):
        return None
    return StatsPersister(cache, recorder_for(cache))
