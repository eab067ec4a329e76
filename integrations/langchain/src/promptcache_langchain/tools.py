"""Tool-output caching for LangChain tools: declarations, a caching tool wrapper and a tool-call interceptor.

Every tool declares what calling it does to the world (``pure``, ``read_only``,
``idempotent_write``, ``side_effecting``); only ``pure``/``read_only`` outputs are ever served
from ``cache.tools``, and a successful write invalidates the tags it declares
(``reservation:{reservation_id}``). A tool without a declaration is ``side_effecting``: it always
runs. Where a tool carries MCP annotations (``langchain-mcp-adapters`` copies them into
``tool.metadata``: ``readOnlyHint``, ``idempotentHint``, ``destructiveHint``) they are read.

Three ways in:

* :func:`declare_tool` — ``@declare_tool(side_effect="read_only", tags=[...])`` on a function (like
  ``@tool``) or on an existing tool: declares it (in ``tool.metadata["promptcache"]``); the agent
  middleware or ``promptcache_langgraph.cached_tool_node`` then serves it. With ``cache=`` it
  caches by itself wherever it is invoked. ``cached_tool`` is its deprecated former name (one
  letter from :func:`cache_tool`, which does something else).
* :func:`cache_tool` — wrap any ``BaseTool`` in a :class:`CachingTool` that caches on
  ``invoke``/``ainvoke`` (sync ``_run`` and async ``_arun``).
* :class:`ToolCallCache` — the ``wrap_tool_call`` logic shared by ``PromptCacheMiddleware`` and
  ``cached_tool_node``: serves declared tools, lets writes invalidate, and returns each declared
  call's figures (``kind="tool"``, ``local_hit``) for the ``cache_metrics`` channel.

Served outputs are byte-identical to what the tool returned when it ran (the cache stores the
tool's raw result or the tool message's content, never a re-rendering), and they stay untrusted:
the ``ToolMessage`` of a declared cacheable tool carries
``response_metadata["promptcache"] = {"trust": "untrusted", "hit": ..., ...}`` and is never moved
into a system or developer block. Logs carry tool names, key digests and decisions only: never
arguments or outputs (they hold end-user identifiers).
"""

from __future__ import annotations

import inspect
import logging
import typing
import uuid
import warnings
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeGuard

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as lc_tool
from langgraph.types import Command
from pydantic import BaseModel, ConfigDict
from pydantic_core import to_jsonable_python

from promptcache import PromptCache
from promptcache.artifacts import LookupReason, LookupResult, Served, SideEffect, ToolSpec, Uncacheable
from promptcache.metrics import CacheMetrics, CallFigures, merge_cache_metrics
from promptcache.tenancy import DEFAULT_TENANT_KEY, resolve_tenant
from promptcache_langchain.tenant import runtime_context

__all__ = [
    "SPEC_KEY",
    "CachingTool",
    "ToolCallCache",
    "cache_tool",
    "cached_tool",
    "declare_tool",
    "spec_of",
]

log = logging.getLogger("promptcache.langchain.tools")

#: Where :func:`cached_tool` keeps a tool's declaration: ``tool.metadata[SPEC_KEY]`` (plain JSON).
SPEC_KEY = "promptcache"

_MCP_HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint")


# declarations ---------------------------------------------------------------------------------


def spec_of(tool: BaseTool, overrides: Mapping[str, ToolSpec] | None = None) -> ToolSpec | None:
    """The declaration of ``tool``: ``overrides[name]``, else its ``cached_tool`` metadata, else
    its MCP annotations, else ``None`` (undeclared: ``side_effecting``, never served from cache)."""
    if overrides and tool.name in overrides:
        return overrides[tool.name]
    if isinstance(tool, CachingTool):
        return tool.spec
    md = tool.metadata or {}
    declared = md.get(SPEC_KEY)
    if isinstance(declared, ToolSpec):
        return declared
    if isinstance(declared, Mapping):
        return ToolSpec.model_validate({**declared, "name": tool.name})
    # langchain-mcp-adapters flattens the MCP ToolAnnotations into the metadata (hints at the
    # top level, unset ones as None); an "annotations" mapping is read too.
    hints = {k: md[k] for k in _MCP_HINTS if md.get(k) is not None}
    nested = md.get("annotations")
    if not hints and isinstance(nested, Mapping):
        hints = {k: nested[k] for k in _MCP_HINTS if nested.get(k) is not None}
    if hints:
        return ToolSpec.from_mcp({"name": tool.name, "annotations": hints})
    return None


def _make_spec(
    name: str,
    side_effect: SideEffect | str | None,
    ttl: int | str | None,
    tags: tuple[str, ...] | list[str],
    invalidates: tuple[str, ...] | list[str],
    schema_version: str,
) -> ToolSpec:
    return ToolSpec.model_validate(
        {
            "name": name,
            "side_effect": side_effect,
            "ttl": ttl,
            "tags": tuple(tags),
            "invalidates": tuple(invalidates),
            "schema_version": schema_version,
        }
    )


def _declare(tool: BaseTool, spec: ToolSpec) -> BaseTool:
    # A copy: the caller's tool object may be shared by other agents with other declarations.
    metadata = {**(tool.metadata or {}), SPEC_KEY: spec.model_dump(mode="json", exclude_none=True)}
    return tool.model_copy(update={"metadata": metadata})


def _visible_args(tool: BaseTool | None, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments the model chose (what the key covers): injected ones (runtime, state) dropped."""
    names: set[str] | None = None
    if tool is not None:
        try:
            schema = tool.tool_call_schema
        except Exception:  # a schema LangChain cannot build: key on everything given
            schema = None
        if isinstance(schema, dict):
            names = set((schema.get("properties") or {}).keys())
        elif isinstance(schema, type) and issubclass(schema, BaseModel):
            names = set(schema.model_fields)
    plain = {k: v for k, v in args.items() if names is None or k in names}
    # Parsed arguments can be pydantic objects: the key wants their JSON form.
    out: dict[str, Any] = to_jsonable_python(plain, fallback=lambda v: v)
    return out


# the outcome slot: how a CachingTool tells the interceptor around it what happened --------------


@dataclass
class _Slot:
    lookup: LookupResult | None = None
    tenant: str | None = None
    spec: ToolSpec | None = None


_SLOT: ContextVar[_Slot | None] = ContextVar("promptcache_tool_slot", default=None)


def _report(lookup: LookupResult, tenant: str, spec: ToolSpec) -> None:
    slot = _SLOT.get()
    if slot is not None:
        slot.lookup, slot.tenant, slot.spec = lookup, tenant, spec


def _log(spec: ToolSpec, lookup: LookupResult) -> None:
    log.debug(
        "tool %s: %s (%s, key %s)",
        spec.name,
        "hit" if lookup.hit else "run",
        lookup.tier or lookup.why,
        lookup.key_digest,
    )


# CachingTool ------------------------------------------------------------------------------------


def _config_param(fn: Callable[..., Any]) -> str | None:
    # The parameter LangChain fills with the RunnableConfig (found by its type, as LangChain does).
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return None
    return next((n for n, t in hints.items() if t is RunnableConfig), None)


def _inner_kwargs(fn: Callable[..., Any], run_manager: Any, config: RunnableConfig) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return extra
    if "run_manager" in params:
        extra["run_manager"] = run_manager
    if (name := _config_param(fn)) is not None:
        extra[name] = config
    return extra


class CachingTool(BaseTool):
    """A ``BaseTool`` that serves ``inner``'s output from ``cache.tools`` when its spec allows.

    Same name, description, argument schema, response format and error handling as ``inner``;
    the inner tool's own ``_run``/``_arun`` computes a miss (one tool run in traces, not two).
    The cache stores the tool's raw result (``(content, artifact)`` for
    ``content_and_artifact`` tools), so a served ``ToolMessage`` has the content an uncached
    call would have. The tenant is read from the call's ``RunnableConfig``
    (``configurable``/``metadata`` ``tenant_key``) and resolved by the cache's policy.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseTool
    cache: Any  # PromptCache: typed Any so pydantic does not try to validate or copy it
    spec: ToolSpec
    tenant_key: str = DEFAULT_TENANT_KEY

    def _key_and_tenant(self, args: tuple[Any, ...], kwargs: dict[str, Any], config: RunnableConfig) -> Any:
        key_args = _visible_args(self.inner, kwargs)
        if args:
            key_args["__args__"] = to_jsonable_python(list(args), fallback=lambda v: v)
        tenant = resolve_tenant(self.cache, self.tenant_key, config=config, runtime_context=runtime_context())
        return key_args, tenant

    def _decode(self, value: Any, lookup: LookupResult) -> Any:
        # A hit comes back as JSON: a content_and_artifact pair was stored as a 2-list.
        if lookup.hit and self.response_format == "content_and_artifact" and isinstance(value, list):
            return tuple(value)
        return value

    def _run(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: CallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        key_args, tenant = self._key_and_tenant(args, kwargs, config)
        extra = _inner_kwargs(self.inner._run, run_manager, config)

        def compute() -> Any:
            return self.inner._run(*args, **kwargs, **extra)

        served = self.cache.tools.run(self.spec, key_args, compute, tenant=tenant)
        _log(self.spec, served.lookup)
        _report(served.lookup, tenant, self.spec)
        return self._decode(served.value, served.lookup)

    async def _arun(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        key_args, tenant = self._key_and_tenant(args, kwargs, config)
        extra = _inner_kwargs(self.inner._arun, run_manager, config)

        async def compute() -> Any:
            return await self.inner._arun(*args, **kwargs, **extra)

        served = await self.cache.tools.arun(self.spec, key_args, compute, tenant=tenant)
        _log(self.spec, served.lookup)
        _report(served.lookup, tenant, self.spec)
        return self._decode(served.value, served.lookup)


def cache_tool(
    tool: BaseTool,
    cache: PromptCache,
    *,
    spec: ToolSpec | None = None,
    side_effect: SideEffect | str | None = None,
    ttl: int | str | None = None,
    tags: tuple[str, ...] | list[str] = (),
    invalidates: tuple[str, ...] | list[str] = (),
    schema_version: str = "1",
    tenant_key: str = DEFAULT_TENANT_KEY,
) -> CachingTool:
    """Wrap ``tool`` so its outputs are served from ``cache.tools`` (sync and async).

    The declaration is ``spec``, else the keyword arguments when any is given, else the tool's
    own (``cached_tool`` metadata or MCP annotations), else none: an undeclared tool is
    ``side_effecting`` and always runs (the wrapper then only adds tenant checks).
    """
    if spec is None and (side_effect is not None or ttl is not None or tags or invalidates):
        spec = _make_spec(tool.name, side_effect, ttl, tags, invalidates, schema_version)
    if spec is None:
        spec = spec_of(tool) or ToolSpec(name=tool.name)
    inner = tool.inner if isinstance(tool, CachingTool) else tool
    return CachingTool(
        name=inner.name,
        description=inner.description,
        args_schema=inner.args_schema,
        return_direct=inner.return_direct,
        response_format=inner.response_format,
        handle_tool_error=inner.handle_tool_error,
        handle_validation_error=inner.handle_validation_error,
        tags=inner.tags,
        metadata={**(inner.metadata or {}), SPEC_KEY: spec.model_dump(mode="json", exclude_none=True)},
        extras=inner.extras,
        inner=inner,
        cache=cache,
        spec=spec,
        tenant_key=tenant_key,
    )


def declare_tool(
    func: Callable[..., Any] | BaseTool | None = None,
    *,
    side_effect: SideEffect | str,
    ttl: int | str | None = None,
    tags: tuple[str, ...] | list[str] = (),
    invalidates: tuple[str, ...] | list[str] = (),
    schema_version: str = "1",
    cache: PromptCache | None = None,
    tenant_key: str = DEFAULT_TENANT_KEY,
    **tool_kwargs: Any,
) -> Any:
    """Declare a tool's side effects (and cache it with ``cache=``); usable as a decorator.

    >>> @declare_tool(side_effect="read_only", tags=["reservation:{reservation_id}"])
    ... def get_reservation_details(reservation_id: str) -> str:
    ...     '''Get the details of a reservation.'''
    ...     return "{}"
    >>> get_reservation_details.metadata["promptcache"]["side_effect"]
    'read_only'

    ``func`` is a function (made a tool by LangChain's ``@tool``, with ``tool_kwargs``) or an
    existing ``BaseTool`` (declared on a copy). Without ``cache`` the result is an ordinary tool
    carrying its declaration in ``metadata["promptcache"]``: ``PromptCacheMiddleware`` and
    ``cached_tool_node`` serve it. With ``cache`` it is a :class:`CachingTool`, caching by itself.
    """

    def build(f: Callable[..., Any] | BaseTool) -> BaseTool:
        base = f if isinstance(f, BaseTool) else lc_tool(f, **tool_kwargs)
        spec = _make_spec(base.name, side_effect, ttl, tags, invalidates, schema_version)
        declared = _declare(base, spec)
        return declared if cache is None else cache_tool(declared, cache, spec=spec, tenant_key=tenant_key)

    if func is None:
        return build
    return build(func)


def cached_tool(func: Callable[..., Any] | BaseTool | None = None, **kwargs: Any) -> Any:
    """Deprecated name of :func:`declare_tool` (same arguments and result, with a ``DeprecationWarning``)."""
    warnings.warn(
        "cached_tool is renamed declare_tool (it declares a tool's side effects; cache_tool wraps a "
        "tool in a cache); the old name will be removed",
        DeprecationWarning,
        stacklevel=2,
    )
    return declare_tool(func, **kwargs)


# the interceptor --------------------------------------------------------------------------------


def _storable(result: Any) -> dict[str, Any] | Uncacheable:
    """The part of a successful tool message the cache keeps: content and artifact.

    An error message or a ``Command`` is this call's own: returned, never stored or shared.
    """
    if isinstance(result, ToolMessage) and result.status != "error":
        return {"content": result.content, "artifact": result.artifact}
    return Uncacheable("tool result not cacheable")


def _declared(spec: ToolSpec | None) -> TypeGuard[ToolSpec]:
    """Whether a tool was declared: a side-effect class (``side_effect`` or MCP annotations) or
    tags it invalidates.

    Every declared call goes through ``cache.tools`` and is recorded, side-effecting ones
    included (they always run: the tool-output cache never serves them); an undeclared tool
    passes through untouched.
    """
    return spec is not None and (
        spec.side_effect is not None or spec.annotations is not None or bool(spec.invalidates)
    )


def _call_id(request: Any) -> str | None:
    cid = request.tool_call.get("id")
    return str(cid) if cid is not None else None


class ToolCallCache:
    """``wrap_tool_call``/``awrap_tool_call`` logic: serve declared tools, invalidate on writes, record.

    ``tool_specs`` (by tool name) win over the tools' own declarations (``cached_tool``
    metadata, MCP annotations). Undeclared tools pass through untouched: their result is
    returned as the handler gave it. A declared call returns a ``Command`` whose update holds
    the ``ToolMessage`` (under ``messages_key``) and the call's figures under ``channel``
    (``None``: plain ``ToolMessage`` results, no figures). The tenant is the run config's
    (``configurable``/``metadata`` ``tenant_key``), else the runtime context's.
    """

    def __init__(
        self,
        cache: PromptCache,
        *,
        tool_specs: Mapping[str, ToolSpec] | None = None,
        tenant_key: str = DEFAULT_TENANT_KEY,
        channel: str | None = "cache_metrics",
        messages_key: str = "messages",
    ) -> None:
        """Serve tools from ``cache.tools``; figures go to ``channel`` of the graph state."""
        self.cache = cache
        self.tool_specs = dict(tool_specs or {})
        self.tenant_key = tenant_key
        self.channel = channel
        self.messages_key = messages_key

    def spec_for(self, request: Any) -> ToolSpec | None:
        """The declaration for the tool this request calls (``None``: undeclared)."""
        name = request.tool_call["name"]
        if name in self.tool_specs:
            return self.tool_specs[name]
        tool = request.tool
        return spec_of(tool) if tool is not None else None

    def _tenant(self, request: Any) -> str:
        runtime = getattr(request, "runtime", None)
        config = getattr(runtime, "config", None)
        if config is None:
            try:
                from langgraph.config import get_config

                config = get_config()
            except RuntimeError:
                config = None
        return resolve_tenant(
            self.cache,
            self.tenant_key,
            config=config,
            runtime_context=getattr(runtime, "context", None),
            state=getattr(request, "state", None),
        )

    # one call -----------------------------------------------------------------------------------

    def _hit_message(self, request: Any, value: Any) -> ToolMessage:
        tool = request.tool
        return ToolMessage(
            content=value["content"],
            artifact=value.get("artifact"),
            tool_call_id=_call_id(request) or "",
            name=tool.name if tool is not None else request.tool_call["name"],
        )

    def _finish(
        self, request: Any, result: Any, lookup: LookupResult | None, tenant: str, spec: ToolSpec
    ) -> Any:
        if isinstance(result, ToolMessage) and spec.cacheable:
            label: dict[str, Any] = {"trust": "untrusted", "hit": bool(lookup and lookup.hit)}
            if lookup is not None:
                label.update(
                    tier=lookup.tier, reason=lookup.reason.value, why=lookup.why, key_digest=lookup.key_digest
                )
            result = result.model_copy(
                update={"response_metadata": {**result.response_metadata, SPEC_KEY: label}}
            )
        if lookup is not None:
            _log(spec, lookup)
        if self.channel is None:
            return result
        figures = CallFigures(
            call_id=uuid.uuid4().hex, kind="tool", tenant=tenant, local_hit=bool(lookup and lookup.hit)
        )
        metrics = CacheMetrics.of(figures)
        if isinstance(result, Command):
            update = result.update
            if update is None or isinstance(update, Mapping):
                merged = dict(update or {})
                merged[self.channel] = merge_cache_metrics(merged.get(self.channel), metrics)
                return Command(graph=result.graph, update=merged, resume=result.resume, goto=result.goto)
            return result  # a list-of-tuples update: left alone rather than guessed at
        if isinstance(result, ToolMessage):
            return Command(update={self.messages_key: [result], self.channel: metrics})
        return result

    def wrap(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        """``wrap_tool_call``: serve, run, or run and invalidate; return the result with its figures."""
        spec = self.spec_for(request)
        if isinstance(request.tool, CachingTool):
            return self._through_caching_tool(request, handler)
        if not _declared(spec):
            return handler(request)
        tenant = self._tenant(request)
        args = _visible_args(request.tool, request.tool_call.get("args") or {})
        # a write always runs, then invalidates its tags; a read may be served
        compute = partial(handler, request)
        served = self.cache.tools.run(spec, args, compute, tenant=tenant, storable=_storable)
        return self._served(request, served, tenant, spec)

    def _served(self, request: Any, served: Served[Any], tenant: str, spec: ToolSpec) -> Any:
        lookup = served.lookup
        if lookup.hit:  # the stored form: content and artifact
            return self._finish(request, self._hit_message(request, served.value), lookup, tenant, spec)
        if lookup.reason is LookupReason.UNCACHEABLE:  # an error result or a Command: reported as it is
            return self._finish(request, served.value, None, tenant, spec)
        return self._finish(request, served.value, lookup, tenant, spec)

    async def awrap(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        """``awrap_tool_call``: the asyncio twin of :meth:`wrap`."""
        spec = self.spec_for(request)
        if isinstance(request.tool, CachingTool):
            slot = _Slot()
            token = _SLOT.set(slot)
            try:
                result = await handler(request)
            finally:
                _SLOT.reset(token)
            return self._after_caching_tool(request, result, slot)
        if not _declared(spec):
            return await handler(request)
        tenant = self._tenant(request)
        args = _visible_args(request.tool, request.tool_call.get("args") or {})
        served = await self.cache.tools.arun(
            spec, args, partial(handler, request), tenant=tenant, storable=_storable
        )
        return self._served(request, served, tenant, spec)

    # a CachingTool caches by itself: only its outcome is recorded --------------------------------

    def _through_caching_tool(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        slot = _Slot()
        token = _SLOT.set(slot)
        try:
            result = handler(request)
        finally:
            _SLOT.reset(token)
        return self._after_caching_tool(request, result, slot)

    def _after_caching_tool(self, request: Any, result: Any, slot: _Slot) -> Any:
        tool = request.tool
        assert isinstance(tool, CachingTool)
        spec = slot.spec or tool.spec
        if slot.tenant is None or not _declared(spec):
            return result  # undeclared, or the tool failed before reaching the cache
        return self._finish(request, result, slot.lookup, slot.tenant, spec)
