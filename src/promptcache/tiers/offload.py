"""``BlobOffload``: the L2 → L3 step of the tier chain, as a store wrapper.

A payload of ``threshold`` bytes or more is written to the blob store (L3) and
the L2 entry keeps only its digest; a read follows the digest back. Design rule
(DESIGN.md, "Failure behaviour"): *L3 unavailable → skip the tier, count
``tier_skipped``*: a blob that cannot be fetched (L3 skipped by its
:class:`~promptcache.tiers.breaker.CircuitBreaker`, or gone) makes the entry a
miss; a blob that cannot be written fails the write, which the write-back drops.

An entry read through here keeps ``blob`` set next to its payload: it records
that the bytes came from L3, so that the chain can report the tier that served
them, and is cleared before the entry reaches L1.
"""

from __future__ import annotations

from typing import Any

from promptcache.tiers._async.offload import AsyncOffloadReads
from promptcache.tiers._sync.offload import SyncOffloadReads
from promptcache.tiers.breaker import CircuitBreaker
from promptcache.tiers.entry import Entry
from promptcache.tiers.wrapper import Forwarding

__all__ = ["BlobOffload"]


class BlobOffload(SyncOffloadReads, AsyncOffloadReads, Forwarding):
    """Keep large payloads in ``blobs`` (a guarded blob store, or ``None``: no L3).

    Writes are here; reads are written once in ``_async/offload.py`` (the sync form generated).
    """

    def __init__(self, inner: Any, *, blobs: CircuitBreaker[Any] | None, threshold: int) -> None:
        """Offload payloads of ``threshold`` bytes or more to ``blobs``."""
        super().__init__(inner)
        self.blobs = blobs
        self.threshold = threshold

    def put(self, entry: Entry) -> None:
        """Write ``entry``, its payload moved to L3 when large (raises when L3 is skipped)."""
        payload = entry.payload or b""
        if self.blobs is not None and len(payload) >= self.threshold:
            digest = self.blobs.call("put_blob", payload)
            entry = entry.model_copy(update={"payload": None, "blob": digest, "size": len(payload)})
        self.inner.put(entry)
