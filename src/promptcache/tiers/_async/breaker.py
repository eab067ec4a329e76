"""The circuit breaker's guarded store interface, written once.

``tiers/_async/`` holds the source; ``tiers/_sync/`` is generated from it (scripts/gen_sync.py).
:class:`promptcache.tiers.breaker.CircuitBreaker` joins both forms; how a call is guarded
(``call`` and ``acall``) is where sync and asyncio really differ, so that stays there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from promptcache.tiers.entry import Entry

__all__ = ["AsyncGuardedStore"]


class _Guard(Protocol):
    async def acall(self, method: str, *args: Any) -> Any: ...


class AsyncGuardedStore:
    """The store reads and deletes, each through the guard."""

    async def aget(self: _Guard, key: str) -> Entry | None:
        """See :meth:`Store.get`."""
        out: Entry | None = await self.acall("get", key)
        return out

    async def aget_many(self: _Guard, keys: Sequence[str]) -> dict[str, Entry]:
        """See :meth:`Store.get_many`."""
        out: dict[str, Entry] = await self.acall("get_many", keys)
        return out

    async def adelete(self: _Guard, key: str) -> None:
        """See :meth:`Store.delete`."""
        await self.acall("delete", key)

    async def atag_generations(self: _Guard, tags: Sequence[str]) -> dict[str, int]:
        """See :meth:`Store.tag_generations`."""
        out: dict[str, int] = await self.acall("tag_generations", list(tags))
        return out
