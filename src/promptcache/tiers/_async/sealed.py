"""The sealing wrapper's reads, written once.

``tiers/_async/`` holds the source; ``tiers/_sync/`` is generated from it (scripts/gen_sync.py).
:class:`promptcache.tiers.sealed.Sealed` joins both forms and holds the rule itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from promptcache.tiers.entry import Entry

__all__ = ["AsyncSealedReads"]


class _Sealed(Protocol):
    @property
    def inner(self) -> Any: ...

    def open(self, entry: Entry) -> Entry | None: ...


class AsyncSealedReads:
    """Reads that open what ``inner`` holds."""

    async def aget(self: _Sealed, key: str) -> Entry | None:
        """The plaintext entry under ``key``, or ``None``."""
        raw = await self.inner.aget(key)
        return None if raw is None else self.open(raw)

    async def aget_many(self: _Sealed, keys: Sequence[str]) -> dict[str, Entry]:
        """See :meth:`get`, in one round trip."""
        opened = {k: self.open(raw) for k, raw in (await self.inner.aget_many(keys)).items()}
        return {k: e for k, e in opened.items() if e is not None}
