"""The forwarding every store wrapper inherits, written once.

``tiers/_async/`` holds the source; ``tiers/_sync/`` is generated from it (scripts/gen_sync.py).
:class:`promptcache.tiers.wrapper.Forwarding` joins both forms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from promptcache.tiers.entry import Entry

__all__ = ["AsyncForwarding"]


class AsyncForwarding:
    """Forward the store's reads, deletes and invalidations to ``inner``."""

    inner: Any

    async def aget(self, key: str) -> Entry | None:
        """See :meth:`promptcache.tiers.base.Store.get`."""
        out: Entry | None = await self.inner.aget(key)
        return out

    async def aget_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """See :meth:`promptcache.tiers.base.Store.get_many`."""
        out: dict[str, Entry] = await self.inner.aget_many(keys)
        return out

    async def adelete(self, key: str) -> None:
        """See :meth:`promptcache.tiers.base.Store.delete`."""
        await self.inner.adelete(key)

    async def atag_generations(self, tags: Sequence[str]) -> dict[str, int]:
        """See :meth:`promptcache.tiers.base.Store.tag_generations`."""
        out: dict[str, int] = await self.inner.atag_generations(tags)
        return out

    async def ainvalidate_tag(self, tag: str) -> int:
        """See :meth:`promptcache.tiers.base.Store.invalidate_tag`."""
        out: int = await self.inner.ainvalidate_tag(tag)
        return out
