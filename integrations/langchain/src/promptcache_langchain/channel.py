"""The ``cache_metrics`` state channel: merged by its reducer, typed again when read back.

LangGraph stores a channel's value in a checkpoint as plain data (:class:`CacheMetrics` is a
plain ``dict`` to its serializer, so no promptcache class has to be allowed for deserializing)
and hands a checkpointed value back exactly as stored: ``get_state(cfg).values["cache_metrics"]``
would be a ``dict`` without ``.summary()``. :class:`CacheMetricsChannel` validates the value
when the channel is restored from a checkpoint, so every reader — ``get_state``,
``get_state_history``, a resumed run, ``stream_mode="values"`` — gets a :class:`CacheMetrics`.

Both ``create_agent``'s state (:class:`~promptcache_langchain.PromptCacheAgentState`) and
LangGraph's ``CacheMetricsState`` declare the channel with it::

    cache_metrics: NotRequired[Annotated[CacheMetrics, CacheMetricsChannel]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from langgraph.channels import BinaryOperatorAggregate

from promptcache.metrics import CacheMetrics, merge_cache_metrics

__all__ = ["CacheMetricsChannel"]


class CacheMetricsChannel(BinaryOperatorAggregate[CacheMetrics]):
    """A ``BinaryOperatorAggregate`` with :func:`merge_cache_metrics` as its reducer, whose
    value read back from a checkpoint is a :class:`CacheMetrics`, as the live value is."""

    def __init__(
        self,
        typ: Any = CacheMetrics,
        operator: Callable[[CacheMetrics, CacheMetrics], CacheMetrics] = merge_cache_metrics,
    ) -> None:
        """LangGraph builds the channel from the annotation with the value type only."""
        super().__init__(typ, operator)

    def from_checkpoint(self, checkpoint: Any) -> Self:
        """The channel restored from ``checkpoint``, its value validated (plain data in, typed out)."""
        restored = super().from_checkpoint(checkpoint)
        if restored.is_available():
            restored.value = CacheMetrics.model_validate(restored.get())
        return restored
