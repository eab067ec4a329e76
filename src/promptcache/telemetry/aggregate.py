"""Per-(tenant, model, agent, entry type) aggregates, and their persisted record in the store.

:class:`StatsAggregator` is an observer that sums events; :func:`publish` writes its figures
into the configured store so that ``promptcache stats`` in another process can read them.

The persisted-stats record
--------------------------
Stored through the ordinary :class:`TieredStore` API, in a reserved namespace no cache key can
collide with (cache keys are SHA-256 of a key contract; these are SHA-256 of the strings below):

* ``sha256("promptcache:stats:v1:writer:" + writer_id)`` — one :class:`PersistedStats` JSON
  document per writing process (``writer_id`` = host, pid and a random suffix). Each process
  only ever overwrites its own record, so concurrent writers never lose each other's figures.
  TTL 30 days: a writer that stops publishing ages out.
* ``sha256("promptcache:stats:v1:index")`` — a JSON list of writer ids. A writer adds itself
  once (read, add, write, flush, read back; retried with jitter if a concurrent writer won).

Both are stored with tenant ``*promptcache*`` and entry type ``promptcache.stats``; the index
is read from the shared tier (L2) directly so an in-process L1 copy never hides other writers.
Figures are cumulative since the writer started: the reader sums the writers' latest records.

Two kinds of writer share this layout (``origin``): ``telemetry`` records come from
:func:`publish` of a :class:`StatsAggregator`; ``cache`` records are written by every
``PromptCache`` on its own (see :mod:`promptcache.stats`: usage figures per tenant and model,
periodically, at ``close()`` and at exit). A reader that finds both from one process counts the
usage once (:func:`dedupe`).
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import threading
import time
import uuid
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from promptcache.figures import NANO, Totals
from promptcache.pseudonym import tenant_label
from promptcache.telemetry.events import Event, LookupEvent, PrepareEvent, ProviderCallEvent, UsageEvent

__all__ = [
    "INDEX_KEY",
    "STATS_ENTRY_TYPE",
    "STATS_TENANT",
    "PersistedStats",
    "StatsAggregator",
    "StatsRecord",
    "dedupe",
    "process_id",
    "publish",
    "publish_record",
    "read_stats",
    "writer_key",
]

STATS_TENANT = "*promptcache*"
STATS_ENTRY_TYPE = "promptcache.stats"
STATS_TTL_S = 30 * 24 * 3600
#: Entry type of provider prompt caching (the prompt prefix), next to the artifact caches' types.
PROMPT = "prompt_prefix"


def _h(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


INDEX_KEY = _h("promptcache:stats:v1:index")


def writer_key(writer_id: str) -> str:
    """The store key of ``writer_id``'s record."""
    return _h("promptcache:stats:v1:writer:" + writer_id)


class StatsRecord(Totals):
    """Cumulative :class:`~promptcache.figures.Totals` of one (tenant, model, agent, entry type).

    For ``prompt_prefix``: ``calls`` are prepared requests, ``hits`` those whose prefix was
    unchanged, tokens and money come from recorded provider usage. For artifact caches:
    ``hits``/``misses``/``denied``/``stale`` count calls. ``miss_reasons`` are counted by enum
    value (:class:`~promptcache.figures.PrefixMissReason`, :class:`~promptcache.figures.LookupReason`).
    """

    tenant: str
    model: str = ""
    agent: str = ""
    entry_type: str

    @property
    def hit_rate(self) -> float:
        """Hits over lookups (prefix unchanged over prepared requests for ``prompt_prefix``)."""
        return self.lookup_hit_rate


class PersistedStats(BaseModel):
    """One writer's record in the store (schema version 1)."""

    model_config = ConfigDict(extra="forbid")

    v: int = 1
    writer: str
    origin: Literal["telemetry", "cache"] = Field(
        default="telemetry", description="who wrote it: a StatsAggregator, or a PromptCache's own recorder"
    )
    process: str = Field(default="", description="host:pid of the writing process")
    started_at: float
    updated_at: float
    rows: list[StatsRecord] = Field(default_factory=list)


def process_id() -> str:
    """``host:pid`` of this process, as written in its records."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _writer_id() -> str:
    return f"{process_id()}:{uuid.uuid4().hex[:8]}"


class StatsAggregator:
    """An observer summing events per (tenant, model, agent, entry type). Thread-safe."""

    def __init__(self, writer_id: str | None = None) -> None:
        """Start empty; ``writer_id`` names this process's record (generated when omitted)."""
        self.writer_id = writer_id or _writer_id()
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str, str, str], StatsRecord] = {}
        self._registered = False

    def _row(self, tenant: str, model: str, agent: str, entry_type: str) -> StatsRecord:
        k = (tenant, model, agent, entry_type)
        r = self._rows.get(k)
        if r is None:
            r = self._rows[k] = StatsRecord(tenant=tenant, model=model, agent=agent, entry_type=entry_type)
        return r

    def on_event(self, event: Event) -> None:
        """Add ``event`` to the figures."""
        with self._lock:
            if isinstance(event, PrepareEvent):
                r = self._row(event.tenant, event.model, event.agent, PROMPT)
                r.calls += 1
                if event.prefix_changed:
                    r.misses += 1
                    for cause in event.miss_causes:
                        r.count_reason(cause.value)
                else:
                    r.hits += 1
            elif isinstance(event, UsageEvent):
                r = self._row(event.tenant, event.model, event.agent, PROMPT)
                r.usage_calls += 1
                r.input_tokens += event.input_tokens
                r.cache_read_tokens += event.cache_read_tokens
                r.cache_write_tokens += event.cache_write_tokens
                r.output_tokens += event.output_tokens
                r.cost_nusd += round(event.cost_usd * NANO)
                r.cost_avoided_nusd += round(event.cost_avoided_usd * NANO)
            elif isinstance(event, ProviderCallEvent):
                if event.provider_miss_reason is not None:
                    r = self._row(tenant_label(event.tenant), event.model, event.agent, PROMPT)
                    r.count_reason(event.provider_miss_reason.value)
            elif isinstance(event, LookupEvent):
                r = self._row(event.tenant, "", event.agent, event.entry_type)
                r.calls += 1
                if event.hit:
                    r.hits += 1
                else:
                    if event.denied:
                        r.denied += 1
                    else:
                        r.misses += 1
                    r.count_reason(event.reason.value)
                if event.stale:
                    r.stale += 1

    def snapshot(self) -> PersistedStats:
        """The figures so far as the persisted record."""
        with self._lock:
            rows = [r.model_copy(deep=True) for _, r in sorted(self._rows.items())]
        return PersistedStats(
            writer=self.writer_id,
            process=process_id(),
            started_at=self.started_at,
            updated_at=time.time(),
            rows=rows,
        )


def _read_shared(store: Any, key: str) -> bytes | None:
    # The shared tier, not L1: our own L1 copy of the index would hide other writers.
    # Dropping the L1 copy first makes the router read L2 (blobs and decryption included).
    if getattr(store, "l2", None) is not None:
        store.l1.delete(key)
    entry = store.get(key, tenant=STATS_TENANT)
    if entry is None:
        return None
    payload: bytes | None = entry.payload
    return payload


def _read_index(store: Any) -> list[str]:
    raw = _read_shared(store, INDEX_KEY)
    if raw is None:
        return []
    try:
        ids = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    return [str(i) for i in ids] if isinstance(ids, list) else []


def _put(store: Any, key: str, payload: bytes) -> None:
    store.put(key, payload, tenant=STATS_TENANT, entry_type=STATS_ENTRY_TYPE, ttl_s=STATS_TTL_S)


def _register(store: Any, writer_id: str, attempts: int = 5) -> bool:
    for i in range(attempts):
        ids = _read_index(store)
        if writer_id in ids:
            return True
        _put(store, INDEX_KEY, orjson.dumps([*ids, writer_id][-1024:]))
        store.flush()
        # The index is read, extended and written back, so a writer that read it just before
        # us overwrites our entry a moment later: look again only after such a write would
        # have landed, and go round again if it did.
        time.sleep(random.uniform(0.02, 0.06))
        if writer_id in _read_index(store):
            return True
        time.sleep(random.uniform(0.005, 0.05) * (i + 1))
    return False


def publish_record(store: Any, record: PersistedStats, *, registered: bool = False) -> bool:
    """Write one writer's ``record`` into ``store`` and flush; returns whether it is in the index.

    ``registered``: the writer already found itself in the index (skips the read-modify-write).
    """
    # Figures still at zero are left out: a reader of an older version (which forbids fields it
    # does not know) can then read every record whose new figures were never used.
    _put(store, writer_key(record.writer), record.model_dump_json(exclude_defaults=True).encode())
    store.flush()
    return registered or _register(store, record.writer)


def publish(aggregator: StatsAggregator, store: Any) -> PersistedStats:
    """Write ``aggregator``'s figures into ``store`` (a ``TieredStore``) and flush; returns them."""
    snap = aggregator.snapshot()
    aggregator._registered = publish_record(store, snap, registered=aggregator._registered)
    return snap


def dedupe(records: list[PersistedStats]) -> list[PersistedStats]:
    """``records`` without the ``cache`` records of processes that also published usage by telemetry.

    An instrumented cache feeds both its own recorder and the telemetry aggregator the same
    provider usage; counting both would double it.
    """
    with_usage = {
        r.process for r in records if r.origin == "telemetry" and any(row.usage_calls for row in r.rows)
    }
    return [r for r in records if r.origin != "cache" or r.process not in with_usage]


def read_stats(store: Any) -> list[PersistedStats]:
    """Every writer's latest record in ``store`` (expired or unreadable ones left out)."""
    out = []
    for wid in _read_index(store):
        raw = _read_shared(store, writer_key(wid))
        if raw is None:
            continue
        try:
            out.append(PersistedStats.model_validate_json(raw))
        except ValueError:
            continue  # another schema version or a damaged record: skip, never fail the report
    return out
