"""The write-back wrapper's delete, written once.

``tiers/_async/`` holds the source; ``tiers/_sync/`` is generated from it (scripts/gen_sync.py).
:class:`promptcache.tiers.writeback.WriteBack` joins both forms and holds the rule itself.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["AsyncWriteBackDelete"]


class _WriteBack(Protocol):
    @property
    def inner(self) -> Any: ...

    def cut(self, key: str) -> None: ...


class AsyncWriteBackDelete:
    """A delete that reaches the tier now and discards the queued puts of its key."""

    async def adelete(self: _WriteBack, key: str) -> None:
        """Delete ``key`` in the tier now; queued puts of it are discarded."""
        self.cut(key)
        await self.inner.adelete(key)
