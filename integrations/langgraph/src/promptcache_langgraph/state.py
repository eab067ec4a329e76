"""The ``cache_metrics`` state channel."""

from __future__ import annotations

from typing import Annotated, NotRequired

from promptcache_langchain.channel import CacheMetricsChannel

# typing_extensions, as LangGraph and LangChain use it: a typing.TypedDict cannot be mixed
# with their state classes (metaclass conflict).
from typing_extensions import TypedDict

from promptcache.metrics import CacheMetrics

__all__ = ["CacheMetricsState"]


class CacheMetricsState(TypedDict):
    """Mix into a graph's state schema: ``class State(MessagesState, CacheMetricsState): ...``.

    Nodes write a :class:`CacheMetrics` holding only *their own* calls (``cache_node`` does it);
    the reducer (:func:`merge_cache_metrics`) merges them into the run's figures. A value read
    back from a checkpointer (``graph.get_state(cfg).values["cache_metrics"]``) is a
    :class:`CacheMetrics` too: the channel validates what it restores.
    """

    cache_metrics: NotRequired[Annotated[CacheMetrics, CacheMetricsChannel]]
