"""``CachingTool``: a LlamaIndex tool whose outputs are cached by declared side effect.

Built on :class:`promptcache.artifacts.ToolOutputCache`: only ``pure`` and ``read_only`` tools are
ever served from cache; ``idempotent_write`` and ``side_effecting`` tools always run, and a
successful write invalidates the tags it declares. A tool without a declaration is
``side_effecting`` (never cached). A failed call (``ToolOutput.is_error`` or an exception) is never
stored.

>>> get_res = cache_tool(FunctionTool.from_defaults(fn=get_reservation_details), cache,   # doctest: +SKIP
...                      side_effect="read_only", tags=["reservation:{reservation_id}"])
>>> update = cache_tool(FunctionTool.from_defaults(fn=update_reservation_baggages), cache,  # doctest: +SKIP
...                     side_effect="idempotent_write", invalidates=["reservation:{reservation_id}"])
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import partial
from typing import Any, cast

from llama_index.core.tools import AsyncBaseTool, BaseTool, ToolMetadata, ToolOutput, adapt_to_async_tool
from llama_index_instrumentation import get_dispatcher

from promptcache import PromptCache
from promptcache.artifacts import (
    LookupResult,
    Served,
    SideEffect,
    ToolOutputCache,
    ToolSpec,
    Uncacheable,
    open_store,
)
from promptcache_llamaindex._tenant import DEFAULT_TENANT_KEY, resolve_tenant
from promptcache_llamaindex.events import ToolCacheEvent

__all__ = ["CachingTool", "cache_tool"]

dispatcher = get_dispatcher(__name__)


def _stored(output: ToolOutput) -> dict[str, Any]:
    # The cache holds JSON: the text the model sees, and the raw output when it is plain data.
    return {"content": output.content, "raw_output": _plain(output.raw_output)}


def _storable(output: ToolOutput) -> dict[str, Any] | Uncacheable:
    # a failed output is returned to its caller as it is, never stored or shared
    return Uncacheable("tool failed") if output.is_error else _stored(output)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    return str(value)


class CachingTool(AsyncBaseTool):
    """Wrap ``tool`` so its outputs go through ``ToolOutputCache`` under ``spec``.

    The wrapped tool keeps its name, description and schema (what the model sees is unchanged).
    Calls with positional arguments cannot be keyed and run uncached.
    """

    def __init__(
        self,
        tool: BaseTool,
        cache: PromptCache,
        spec: ToolSpec,
        *,
        tool_cache: ToolOutputCache | None = None,
        store: Any = None,
        tenant: str | None = None,
        tenant_key: str = DEFAULT_TENANT_KEY,
    ) -> None:
        """Wrap ``tool``; share one ``tool_cache`` between tools, or let this one open ``store``."""
        self.inner = tool
        self._async_inner = adapt_to_async_tool(tool)
        self.cache = cache
        self.spec = spec
        self.tool_cache = tool_cache or ToolOutputCache(open_store(store), cache.policy)
        self.tenant = tenant
        self.tenant_key = tenant_key

    @property
    def metadata(self) -> ToolMetadata:
        """The wrapped tool's metadata."""
        return self.inner.metadata

    def _emit(self, tenant: str, lookup: LookupResult) -> None:
        dispatcher.event(
            ToolCacheEvent(
                cache_id=str(id(self.cache)),
                call_id=uuid.uuid4().hex,
                tenant=tenant,
                tool=self.spec.name,
                side_effect=str(self.spec.effective_side_effect),
                hit=lookup.hit,
                reason=lookup.reason,
                tier=lookup.tier,
                why=lookup.why,
                stored=lookup.stored,
                invalidated=lookup.invalidated,
            )
        )

    def _output(self, value: dict[str, Any], kwargs: dict[str, Any]) -> ToolOutput:
        return ToolOutput(
            content=str(value.get("content", "")),
            tool_name=self.metadata.get_name(),
            raw_input={"args": (), "kwargs": kwargs},
            raw_output=value.get("raw_output"),
        )

    def call(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """Run the tool, or serve its cached output when its side-effect class allows."""
        if args:
            return self.inner(*args, **kwargs)
        tenant = resolve_tenant(self.cache, self.tenant, self.tenant_key)
        compute = partial(self.inner, **kwargs)
        served = self.tool_cache.run(self.spec, kwargs, compute, tenant=tenant, storable=_storable)
        return self._answer(served, tenant, kwargs)

    def _answer(self, served: Served[Any], tenant: str, kwargs: dict[str, Any]) -> ToolOutput:
        value = served.value
        if not served.lookup.hit:  # computed here: the tool's own output
            if value.is_error:
                return cast("ToolOutput", value)
            value = _stored(value)
        self._emit(tenant, served.lookup)
        return self._output(value, kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """The asyncio twin of :meth:`call`."""
        if args:
            return await self._async_inner.acall(*args, **kwargs)
        tenant = resolve_tenant(self.cache, self.tenant, self.tenant_key)
        compute = partial(self._async_inner.acall, **kwargs)
        served = await self.tool_cache.arun(self.spec, kwargs, compute, tenant=tenant, storable=_storable)
        return self._answer(served, tenant, kwargs)


def cache_tool(
    tool: BaseTool,
    cache: PromptCache,
    *,
    side_effect: SideEffect | str | None = None,
    tags: Sequence[str] = (),
    invalidates: Sequence[str] = (),
    ttl: int | str | None = None,
    schema_version: str = "1",
    tool_cache: ToolOutputCache | None = None,
    store: Any = None,
    tenant: str | None = None,
    tenant_key: str = DEFAULT_TENANT_KEY,
) -> CachingTool:
    """:class:`CachingTool` with its :class:`~promptcache.artifacts.ToolSpec` built from keywords.

    ``side_effect`` is one of ``pure``, ``read_only``, ``idempotent_write``, ``side_effecting``
    (None: ``side_effecting``, never cached). ``tags``/``invalidates`` are templates filled from
    the call's arguments, e.g. ``reservation:{reservation_id}``.
    """
    spec = ToolSpec(
        name=tool.metadata.get_name(),
        side_effect=SideEffect(side_effect) if side_effect is not None else None,
        tags=tuple(tags),
        invalidates=tuple(invalidates),
        ttl=ttl,
        schema_version=schema_version,
    )
    return CachingTool(
        tool, cache, spec, tool_cache=tool_cache, store=store, tenant=tenant, tenant_key=tenant_key
    )
