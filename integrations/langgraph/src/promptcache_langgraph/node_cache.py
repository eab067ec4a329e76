"""``node_cache``: LangGraph's node cache, with replayed runs reported as local hits.

LangGraph's node cache (``g.compile(cache=...)`` and a node's ``CachePolicy``) stores a node's
writes and, on a hit, applies them again without running the node. The ``cache_metrics`` channel
is one of those writes: replayed as stored, it would report the stored run's provider calls and
cost again in a run that made no provider call. Only the cache knows a value is a replay, so the
fix sits there: wrap the cache the graph is compiled with.

>>> from langgraph.cache.memory import InMemoryCache
>>> graph = builder.compile(cache=node_cache(InMemoryCache()))  # doctest: +SKIP

Every value read back from the wrapped cache has its ``cache_metrics`` write restated by the
core (:func:`promptcache.rerun.replayed`): one local hit per stored call (no tokens, no cost;
the cost it avoided), under an id of its own. Everything else is the wrapped cache's, unchanged:
what it stores, its serializer, TTLs, namespaces and ``clear``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.cache.base import BaseCache, FullKey, Namespace
from langgraph.cache.memory import InMemoryCache

from promptcache.llm_bridge import new_call_id
from promptcache.rerun import replayed

__all__ = ["NodeCache", "node_cache"]

log = logging.getLogger(__name__)


class NodeCache(BaseCache[Any]):
    """A LangGraph ``BaseCache`` over ``inner`` whose replays report local hits (see the module)."""

    def __init__(self, inner: BaseCache[Any], *, channel: str = "cache_metrics") -> None:
        """Serve from ``inner``; restate the ``channel`` write of every value it serves."""
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.channel = channel

    def _replay(self, writes: Any) -> Any:
        # A node's cached writes: (channel, value) pairs, as LangGraph's serializer gives them back.
        if not isinstance(writes, Sequence) or isinstance(writes, str | bytes):
            return writes
        replay_id = new_call_id()
        out: list[Any] = []
        for w in writes:
            if isinstance(w, Sequence) and len(w) == 2 and w[0] == self.channel and w[1] is not None:
                try:
                    out.append((w[0], replayed(w[1], replay_id=replay_id)))
                    continue
                except (TypeError, ValueError):
                    # Not figures promptcache wrote (another channel of that name): served as stored,
                    # as without this wrapper, rather than failing the run.
                    log.warning(
                        "promptcache: a node-cache replay's %r write is not cache figures", self.channel
                    )
            out.append(w)
        return out

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        """The cached writes for ``keys``, their figures restated as local hits."""
        return {k: self._replay(v) for k, v in self.inner.get(keys).items()}

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        """Async :meth:`get`."""
        return {k: self._replay(v) for k, v in (await self.inner.aget(keys)).items()}

    def set(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        """Store in ``inner``, as is."""
        self.inner.set(pairs)

    async def aset(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        """Async :meth:`set`."""
        await self.inner.aset(pairs)

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        """Clear ``inner``."""
        self.inner.clear(namespaces)

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        """Async :meth:`clear`."""
        await self.inner.aclear(namespaces)


def node_cache(inner: BaseCache[Any] | None = None, *, channel: str = "cache_metrics") -> NodeCache:
    """``inner`` (default: a new ``InMemoryCache``) for ``compile(cache=...)``, with replays
    reported as local hits in ``channel`` instead of as the provider calls they stored."""
    return NodeCache(inner if inner is not None else InMemoryCache(), channel=channel)
