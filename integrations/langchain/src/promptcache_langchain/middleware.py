"""``PromptCacheMiddleware``: promptcache for ``langchain.agents.create_agent``.

>>> agent = create_agent(model, tools, middleware=[..., PromptCacheMiddleware(cache)])  # doctest: +SKIP
>>> out = agent.invoke({"messages": [...]}, {"configurable": {"tenant_id": "acme"}})  # doctest: +SKIP
>>> out["cache_metrics"].summary()                                                     # doctest: +SKIP

Place it **last** in the middleware list (innermost): it then rewrites the request of the model
that is actually called, after any middleware that swaps the model (``ModelFallbackMiddleware``)
or edits messages and settings (summarization, context editing, Anthropic's own prompt-caching
middleware). A fallback model gets the hints of its own provider, never the primary's.

Tool calls: declared tools (``tool_specs={name: ToolSpec}``, tools built with ``cached_tool``,
MCP annotations) are served from ``cache.tools`` when ``pure``/``read_only``; writes run and
invalidate their tags; every declared call adds a ``kind="tool"`` record (``local_hit`` when
served) to ``cache_metrics``. Undeclared tools always run and their results pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, NotRequired

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
)
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.config import get_config
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from promptcache import PromptCache
from promptcache.artifacts import ToolSpec
from promptcache.llm_bridge import new_call_id
from promptcache.metrics import CacheMetrics, CallFigures, figures_from_usage, merge_cache_metrics
from promptcache.tenancy import DEFAULT_TENANT_KEY, resolve_tenant
from promptcache_langchain._hook import (
    CallContext,
    carries_signature,
    current_call,
    format_override,
    hooked_copy,
)
from promptcache_langchain._observe import METADATA_KEY, finish_call, owned_call
from promptcache_langchain.tools import ToolCallCache

__all__ = ["PromptCacheAgentState", "PromptCacheMiddleware", "PromptCacheModelMiddleware"]


class PromptCacheAgentState(AgentState[Any]):
    """The agent state with promptcache's ``cache_metrics`` channel (same reducer as LangGraph's)."""

    cache_metrics: NotRequired[Annotated[CacheMetrics, merge_cache_metrics]]


def _recorded_inside(msg: AIMessage) -> CallFigures | None:
    """The figures of a call a promptcache model inside the middleware already recorded."""
    owned = owned_call(msg)
    if owned is None or owned.usage is None:
        return None
    return figures_from_usage(owned.usage, call_id=owned.call_id, tenant=owned.tenant)


def _current_config() -> Mapping[str, Any] | None:
    try:
        return get_config()
    except RuntimeError:
        # Called outside a graph run (a unit test calling wrap_model_call directly).
        return None


class PromptCacheModelMiddleware(AgentMiddleware[PromptCacheAgentState, Any]):
    """:class:`PromptCacheMiddleware` for model calls only: no tool hook.

    For an agent whose tools are all provider built-ins (dicts such as OpenAI's ``web_search``
    or Anthropic's server tools): ``create_agent`` adds a tool node as soon as any middleware
    hooks tool calls, and then routes those calls to it instead of ending the run, so a
    middleware that only wants the model calls must not have the hook. Everything else
    (request rewrite, tenant, ``cache_metrics``) is as in :class:`PromptCacheMiddleware`.
    """

    state_schema = PromptCacheAgentState

    def __init__(
        self,
        cache: PromptCache | None = None,
        *,
        tenant_key: str = DEFAULT_TENANT_KEY,
        wire_format: str | None = None,
    ) -> None:
        """Rewrite model requests with ``cache`` (None: a ``PromptCache()`` of its own, on the
        embedded default store; read its figures with ``middleware.cache.stats()``)."""
        super().__init__()
        self.cache = cache if cache is not None else PromptCache()
        self.tenant_key = tenant_key
        self._format = format_override(wire_format)

    def _tenant(self, request: ModelRequest[Any]) -> str:
        return resolve_tenant(
            self.cache,
            self.tenant_key,
            config=_current_config(),
            runtime_context=getattr(request.runtime, "context", None),
        )

    def _start(self, request: ModelRequest[Any]) -> tuple[ModelRequest[Any], CallContext]:
        ctx = CallContext(
            cache=self.cache, tenant=self._tenant(request), format=self._format, call_id=new_call_id()
        )
        hooked = hooked_copy(request.model)
        if hooked is None:
            ctx.notes.append(f"{type(request.model).__name__}: request cannot be rewritten; observed only")
            return request, ctx
        # LangChain's own immutable copy: the caller's request (and its model) stay as they were.
        return request.override(model=hooked), ctx

    def _finish(
        self, response: ModelResponse[Any] | AIMessage, ctx: CallContext
    ) -> ExtendedModelResponse[Any]:
        if isinstance(response, AIMessage):
            response = ModelResponse(result=[response])
        figures: dict[str, CallFigures] = {}
        call_id = ctx.call_id
        i = 0
        for msg in response.result:
            if not isinstance(msg, AIMessage):
                continue
            if isinstance(msg.response_metadata.get(METADATA_KEY), Mapping):
                # The agent's model is a CachingChatModel: it recorded the call already, under
                # its own id. Its figures go to the channel under that id; recorded once.
                f = _recorded_inside(msg)
            else:
                f = finish_call(msg, ctx, call_id=call_id if i == 0 else f"{call_id}:{i}")
                i += 1
            if f is not None:
                figures[f.call_id] = f
        if not figures:
            return ExtendedModelResponse(model_response=response, command=None)
        if len(figures) == 1:  # one answer, the usual: its figures need no second check
            (only,) = figures.values()
            metrics = CacheMetrics.of_call(only)
        else:
            metrics = CacheMetrics(figures)
        update: Command[Any] = Command(update={"cache_metrics": metrics})
        return ExtendedModelResponse(model_response=response, command=update)

    # LangChain wraps each hook in a LangSmith traceable span, which asks for the hook's
    # signature on every call, traced or not: carried (see with_signature).
    @carries_signature
    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ExtendedModelResponse[Any]:
        """Call the model with its request rewritten; add the call's figures to ``cache_metrics``."""
        request, ctx = self._start(request)
        token = current_call.set(ctx)
        try:
            response = handler(request)
        finally:
            current_call.reset(token)
        return self._finish(response, ctx)

    @carries_signature
    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ExtendedModelResponse[Any]:
        """Async :meth:`wrap_model_call`."""
        request, ctx = self._start(request)
        token = current_call.set(ctx)
        try:
            response = await handler(request)
        finally:
            current_call.reset(token)
        return self._finish(response, ctx)


class PromptCacheMiddleware(PromptCacheModelMiddleware):
    """Rewrite every model request of a ``create_agent`` agent with ``cache.prepare_request``.

    The tenant comes from the run's config (``configurable[tenant_key]``, then
    ``metadata[tenant_key]``) or, failing that, from the agent's runtime context
    (``context[tenant_key]`` or its attribute); a missing tenant under a policy that requires
    one raises ``ValueError`` before the model is called. Each model call's priced figures are
    added to the ``cache_metrics`` channel and to ``promptcache.stats.recorder_for(cache)``.
    ``tool_specs`` declares tools by name (winning over the tools' own declarations); see the
    module docstring for what tool calls do. An agent with provider built-in tools only wants
    :class:`PromptCacheModelMiddleware`.
    """

    def __init__(
        self,
        cache: PromptCache | None = None,
        *,
        tenant_key: str = DEFAULT_TENANT_KEY,
        wire_format: str | None = None,
        tool_specs: Mapping[str, ToolSpec] | None = None,
    ) -> None:
        """As :class:`PromptCacheModelMiddleware`, plus the declared tools' cache (``tool_specs``).

        Example (one line, a cache of its own)::

            agent = create_agent("openai:gpt-4o", tools=[], middleware=[PromptCacheMiddleware()])
        """
        super().__init__(cache, tenant_key=tenant_key, wire_format=wire_format)
        self._tools = ToolCallCache(self.cache, tool_specs=tool_specs, tenant_key=tenant_key)

    @carries_signature
    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        """Serve a declared tool from ``cache.tools`` or run it; writes invalidate their tags.

        A declared call returns ``Command(update={"messages": [msg], "cache_metrics": ...})`` so
        its figures reach the agent state; the tool message's content is the tool's own.
        """
        out: ToolMessage | Command[Any] = self._tools.wrap(request, handler)
        return out

    @carries_signature
    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async :meth:`wrap_tool_call`."""
        out: ToolMessage | Command[Any] = await self._tools.awrap(request, handler)
        return out
