"""``PromptCacheMiddleware``: promptcache for ``langchain.agents.create_agent``.

>>> agent = create_agent(model, tools, middleware=[..., PromptCacheMiddleware(cache)])  # doctest: +SKIP
>>> out = agent.invoke({"messages": [...]}, {"configurable": {"tenant_id": "acme"}})  # doctest: +SKIP
>>> out["cache_metrics"].summary()                                                     # doctest: +SKIP

Its place in the middleware list does not matter. The request is rewritten where the provider
SDK sends it (the HTTP seam), so messages and settings edited by any middleware (summarization,
context editing, Anthropic's own prompt-caching middleware) are seen as sent; and a model swapped in
by a middleware after it (``ModelFallbackMiddleware``, a dynamic model choice, both through
LangChain's ``request.override(model=...)``) is hooked too, and gets the hints of its own provider,
never the primary's. A call that still reached the provider outside the seam (a middleware that
built a new ``ModelRequest`` by hand) is noted in ``response_metadata["promptcache"]``.

:class:`PromptCacheModelOnlyMiddleware` is the same without the tool-call hook, for agents whose
tools are all provider built-ins (a tool hook makes ``create_agent`` add a tool node and route
those calls to it). ``PromptCacheModelMiddleware`` is its deprecated former name.

Tool calls: declared tools (``tool_specs={name: ToolSpec}``, tools built with ``declare_tool``,
MCP annotations) are served from ``cache.tools`` when ``pure``/``read_only``; writes run and
invalidate their tags; every declared call adds a ``kind="tool"`` record (``local_hit`` when
served) to ``cache_metrics``. Undeclared tools always run and their results pass through untouched.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import fields
from typing import Annotated, Any, NotRequired

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.config import get_config
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from promptcache import PromptCache
from promptcache.artifacts import ToolSpec
from promptcache.llm_bridge import new_call_id
from promptcache.metrics import CacheMetrics, CallFigures, figures_from_usage
from promptcache.tenancy import DEFAULT_TENANT_KEY, resolve_tenant
from promptcache_langchain._hook import (
    CallContext,
    carries_signature,
    current_call,
    format_override,
    hooked_copy,
)
from promptcache_langchain._observe import METADATA_KEY, finish_call, owned_call
from promptcache_langchain.channel import CacheMetricsChannel
from promptcache_langchain.tools import ToolCallCache

__all__ = [
    "PromptCacheAgentState",
    "PromptCacheMiddleware",
    "PromptCacheModelMiddleware",
    "PromptCacheModelOnlyMiddleware",
]


class PromptCacheAgentState(AgentState[Any]):
    """The agent state with promptcache's ``cache_metrics`` channel (the same channel as LangGraph's).

    A value read back from a checkpointer (``agent.get_state(cfg).values["cache_metrics"]``) is
    a :class:`CacheMetrics` too (see :mod:`promptcache_langchain.channel`).
    """

    cache_metrics: NotRequired[Annotated[CacheMetrics, CacheMetricsChannel]]


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


class _HookedModelRequest(ModelRequest[Any]):
    """A ``ModelRequest`` whose model stays on promptcache's seam when a later middleware swaps it.

    Middleware after ours that swaps the model does it with LangChain's ``request.override(model=...)``
    (``ModelFallbackMiddleware``, dynamic model selection); ``override`` builds the new request with
    ``dataclasses.replace``, so it is of this class too and the model it carries is hooked.
    """

    def override(self, **overrides: Any) -> ModelRequest[Any]:
        """As ``ModelRequest.override``; a new ``model`` is replaced by its hooked copy."""
        model = overrides.get("model")
        if model is not None:
            overrides["model"] = hooked_copy(model) or model
        return super().override(**overrides)

    def __setattr__(self, name: str, value: Any) -> None:
        # The deprecated direct assignment (``request.model = ...``) is honoured the same way.
        if name == "model" and value is not None:
            value = hooked_copy(value) or value
        super().__setattr__(name, value)


# What ModelRequest's constructor takes, read once (``fields()`` walks the class on every call).
_REQUEST_FIELDS = tuple(f.name for f in fields(ModelRequest) if f.name != "model")


def _hooked_request(request: ModelRequest[Any], model: BaseChatModel) -> ModelRequest[Any]:
    """``request`` with ``model``, as a :class:`_HookedModelRequest` (``request`` is left unchanged)."""
    values = {name: getattr(request, name) for name in _REQUEST_FIELDS}
    return _HookedModelRequest(model=model, **values)


class PromptCacheModelOnlyMiddleware(AgentMiddleware[PromptCacheAgentState, Any]):
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
            state=request.state,
        )

    def _start(self, request: ModelRequest[Any]) -> tuple[ModelRequest[Any], CallContext]:
        ctx = CallContext(
            cache=self.cache, tenant=self._tenant(request), format=self._format, call_id=new_call_id()
        )
        hooked = hooked_copy(request.model)
        if hooked is None:
            ctx.notes.append(f"{type(request.model).__name__}: request cannot be rewritten; observed only")
            return request, ctx
        # A new request: the caller's (and its model) stay as they were.
        return _hooked_request(request, hooked), ctx

    def _finish(
        self, response: ModelResponse[Any] | AIMessage, ctx: CallContext
    ) -> ExtendedModelResponse[Any]:
        if isinstance(response, AIMessage):
            response = ModelResponse(result=[response])
        if ctx.requests == 0 and not any(n.endswith("observed only") for n in ctx.notes):
            # The model we handed on never sent: a middleware after this one answered by itself, or
            # called a model it built a request for by hand (not through request.override).
            ctx.notes.append("no request went through promptcache's seam: this call was not rewritten")
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


class PromptCacheMiddleware(PromptCacheModelOnlyMiddleware):
    """Rewrite every model request of a ``create_agent`` agent with ``cache.prepare_request``.

    The tenant comes from the run's config (``configurable[tenant_key]``, then
    ``metadata[tenant_key]``), then the agent's runtime context (``context[tenant_key]`` or its
    attribute), then the agent state (the core's one order); a missing tenant under a policy that requires
    one raises ``ValueError`` before the model is called. Each model call's priced figures are
    added to the ``cache_metrics`` channel and to ``promptcache.stats.recorder_for(cache)``.
    ``tool_specs`` declares tools by name (winning over the tools' own declarations); see the
    module docstring for what tool calls do. An agent with provider built-in tools only wants
    :class:`PromptCacheModelOnlyMiddleware`. Its place in the middleware list does not matter.
    """

    def __init__(
        self,
        cache: PromptCache | None = None,
        *,
        tenant_key: str = DEFAULT_TENANT_KEY,
        wire_format: str | None = None,
        tool_specs: Mapping[str, ToolSpec] | None = None,
    ) -> None:
        """As :class:`PromptCacheModelOnlyMiddleware`, plus the declared tools' cache (``tool_specs``).

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


class PromptCacheModelMiddleware(PromptCacheModelOnlyMiddleware):
    """Deprecated name of :class:`PromptCacheModelOnlyMiddleware`: the same, with a ``DeprecationWarning``."""

    def __init__(
        self,
        cache: PromptCache | None = None,
        *,
        tenant_key: str = DEFAULT_TENANT_KEY,
        wire_format: str | None = None,
    ) -> None:
        """As :class:`PromptCacheModelOnlyMiddleware`, with a ``DeprecationWarning``."""
        warnings.warn(
            "PromptCacheModelMiddleware is renamed PromptCacheModelOnlyMiddleware (model calls only, "
            "no tool hook); the old name will be removed",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(cache, tenant_key=tenant_key, wire_format=wire_format)
