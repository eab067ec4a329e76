"""The L3 offload wrapper's reads, written once.

``tiers/_async/`` holds the source; ``tiers/_sync/`` is generated from it (scripts/gen_sync.py).
:class:`promptcache.tiers.offload.BlobOffload` joins both forms and holds the rule itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from promptcache.tiers.breaker import CircuitBreaker, TierSkipped
from promptcache.tiers.entry import Entry

__all__ = ["AsyncOffloadReads"]


class _Offload(Protocol):
    @property
    def inner(self) -> Any: ...

    @property
    def blobs(self) -> CircuitBreaker[Any] | None: ...

    async def _afetch(self, raw: Entry) -> Entry | None: ...


class AsyncOffloadReads:
    """Reads that follow an entry's blob digest back to L3."""

    async def _afetch(self: _Offload, raw: Entry) -> Entry | None:
        if raw.blob is None:
            return raw
        if self.blobs is None:
            return None
        try:
            data = await self.blobs.acall("get_blob", raw.blob)
        except TierSkipped:
            return None
        return None if data is None else raw.model_copy(update={"payload": data})

    async def aget(self: _Offload, key: str) -> Entry | None:
        """The entry under ``key`` with its payload, wherever it lives."""
        raw = await self.inner.aget(key)
        return None if raw is None else await self._afetch(raw)

    async def aget_many(self: _Offload, keys: Sequence[str]) -> dict[str, Entry]:
        """See :meth:`get`, in one round trip to L2."""
        found = {k: await self._afetch(raw) for k, raw in (await self.inner.aget_many(keys)).items()}
        return {k: e for k, e in found.items() if e is not None}
