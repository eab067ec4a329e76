"""``Forwarding``: the base of the store wrappers, which forwards what a wrapper does not change.

A wrapper takes a store and is a store (the shape LangGraph's ``serde/encrypted.py``
gives a serializer): it overrides the methods its rule is about and inherits the
rest from here, so each wrapper's module holds its rule and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from promptcache.tiers.entry import Entry

__all__ = ["Forwarding"]


class Forwarding:
    """Forward every store method, sync and asyncio, to ``inner``."""

    def __init__(self, inner: Any) -> None:
        """Wrap ``inner`` (a store, or another wrapper)."""
        self.inner = inner

    def get(self, key: str) -> Entry | None:
        """See :meth:`promptcache.tiers.base.Store.get`."""
        out: Entry | None = self.inner.get(key)
        return out

    async def aget(self, key: str) -> Entry | None:
        """See :meth:`promptcache.tiers.base.Store.get`."""
        out: Entry | None = await self.inner.aget(key)
        return out

    def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """See :meth:`promptcache.tiers.base.Store.get_many`."""
        out: dict[str, Entry] = self.inner.get_many(keys)
        return out

    async def aget_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """See :meth:`promptcache.tiers.base.Store.get_many`."""
        out: dict[str, Entry] = await self.inner.aget_many(keys)
        return out

    def put(self, entry: Entry) -> None:
        """See :meth:`promptcache.tiers.base.Store.put`."""
        self.inner.put(entry)

    def delete(self, key: str) -> None:
        """See :meth:`promptcache.tiers.base.Store.delete`."""
        self.inner.delete(key)

    async def adelete(self, key: str) -> None:
        """See :meth:`promptcache.tiers.base.Store.delete`."""
        await self.inner.adelete(key)

    def tag_generations(self, tags: Sequence[str]) -> dict[str, int]:
        """See :meth:`promptcache.tiers.base.Store.tag_generations`."""
        out: dict[str, int] = self.inner.tag_generations(tags)
        return out

    async def atag_generations(self, tags: Sequence[str]) -> dict[str, int]:
        """See :meth:`promptcache.tiers.base.Store.tag_generations`."""
        out: dict[str, int] = await self.inner.atag_generations(tags)
        return out

    def invalidate_tag(self, tag: str) -> int:
        """See :meth:`promptcache.tiers.base.Store.invalidate_tag`."""
        out: int = self.inner.invalidate_tag(tag)
        return out

    async def ainvalidate_tag(self, tag: str) -> int:
        """See :meth:`promptcache.tiers.base.Store.invalidate_tag`."""
        out: int = await self.inner.ainvalidate_tag(tag)
        return out
