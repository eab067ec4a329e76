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

from collections.abc import Sequence
from typing import Any

from promptcache.tiers.breaker import CircuitBreaker, TierSkipped
from promptcache.tiers.entry import Entry
from promptcache.tiers.wrapper import Forwarding

__all__ = ["BlobOffload"]


def _resolved(raw: Entry, data: bytes | None) -> Entry | None:
    return None if data is None else raw.model_copy(update={"payload": data})


class BlobOffload(Forwarding):
    """Keep large payloads in ``blobs`` (a guarded blob store, or ``None``: no L3)."""

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

    def _fetch(self, raw: Entry) -> Entry | None:
        if raw.blob is None:
            return raw
        if self.blobs is None:
            return None
        try:
            return _resolved(raw, self.blobs.call("get_blob", raw.blob))
        except TierSkipped:
            return None

    async def _afetch(self, raw: Entry) -> Entry | None:
        if raw.blob is None:
            return raw
        if self.blobs is None:
            return None
        try:
            return _resolved(raw, await self.blobs.acall("get_blob", raw.blob))
        except TierSkipped:
            return None

    def get(self, key: str) -> Entry | None:
        """The entry under ``key`` with its payload, wherever it lives."""
        raw = self.inner.get(key)
        return None if raw is None else self._fetch(raw)

    async def aget(self, key: str) -> Entry | None:
        """See :meth:`get`."""
        raw = await self.inner.aget(key)
        return None if raw is None else await self._afetch(raw)

    def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """See :meth:`get`, in one round trip to L2."""
        found = {k: self._fetch(raw) for k, raw in self.inner.get_many(keys).items()}
        return {k: e for k, e in found.items() if e is not None}

    async def aget_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """See :meth:`get_many`."""
        found = {k: await self._afetch(raw) for k, raw in (await self.inner.aget_many(keys)).items()}
        return {k: e for k, e in found.items() if e is not None}
