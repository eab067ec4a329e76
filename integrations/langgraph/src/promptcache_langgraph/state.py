"""The ``cache_metrics`` state channel."""

from __future__ import annotations

from typing import Annotated, NotRequired

# typing_extensions, as LangGraph and LangChain use it: a typing.TypedDict cannot be mixed
# with their state classes (metaclass conflict).
from typing_extensions import TypedDict

from promptcache.metrics import CacheMetrics, merge_cache_metrics

__all__ = ["CacheMetricsState"]


class CacheMetricsState(TypedDict):
    """Mix into a graph's state schema: ``class State(MessagesState, CacheMetricsState): ...``.

    Nodes write a :class:`CacheMetrics` holding only *their own* calls (``cache_node`` does it);
    the reducer merges them into the run's figures.
    """

    cache_metrics: NotRequired[Annotated[CacheMetrics, merge_cache_metrics]]
