"""``cached_tool_node``: a LangGraph ``ToolNode`` whose declared tools are served from ``cache.tools``.

The same tool caching as ``PromptCacheMiddleware`` gives a ``create_agent`` agent, for a
hand-built ``StateGraph``: ``pure``/``read_only`` tools are served from cache per tenant, writes
run and invalidate their tags, side-effecting and undeclared tools always run, and each declared
call adds a ``kind="tool"`` record (``local_hit`` when served) to the ``cache_metrics`` channel
(mix :class:`~promptcache_langgraph.CacheMetricsState` into the state schema, or pass
``channel=None``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolNode
from promptcache_langchain import DEFAULT_TENANT_KEY, ToolCallCache

from promptcache import PromptCache
from promptcache.artifacts import ToolSpec

__all__ = ["cached_tool_node"]


def cached_tool_node(
    tools: Sequence[BaseTool | Callable[..., Any]],
    cache: PromptCache,
    *,
    tool_specs: Mapping[str, ToolSpec] | None = None,
    tenant_key: str = DEFAULT_TENANT_KEY,
    channel: str | None = "cache_metrics",
    messages_key: str = "messages",
    wrap_tool_call: Callable[..., Any] | None = None,
    awrap_tool_call: Callable[..., Awaitable[Any]] | None = None,
    **tool_node_kwargs: Any,
) -> ToolNode:
    """A ``ToolNode`` over ``tools`` with promptcache's tool-output cache around every call.

    Declarations: ``tool_specs`` by name, else each tool's own (``cached_tool`` metadata, MCP
    annotations). The tenant is the run config's (``configurable``/``metadata``
    ``tenant_key``). A ``wrap_tool_call``/``awrap_tool_call`` of your own runs *inside* the
    cache (a served call skips it, as it skips the tool). Other keyword arguments go to
    ``ToolNode`` (``name``, ``tags``, ``handle_tool_errors`` ...).
    """
    interceptor = ToolCallCache(
        cache, tool_specs=tool_specs, tenant_key=tenant_key, channel=channel, messages_key=messages_key
    )

    def wrap(request: Any, handler: Callable[[Any], Any]) -> Any:
        if wrap_tool_call is None:
            return interceptor.wrap(request, handler)
        return interceptor.wrap(request, lambda r: wrap_tool_call(r, handler))

    async def awrap(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        if awrap_tool_call is not None:
            return await interceptor.awrap(request, lambda r: awrap_tool_call(r, handler))
        if wrap_tool_call is not None:
            raise TypeError(
                "cached_tool_node: pass awrap_tool_call too for async runs (wrap_tool_call is sync)"
            )
        return await interceptor.awrap(request, handler)

    return ToolNode(
        list(tools), messages_key=messages_key, wrap_tool_call=wrap, awrap_tool_call=awrap, **tool_node_kwargs
    )
