"""A tenant-aware key for LangGraph's node cache (``CachePolicy(key_func=...)``).

LangGraph's default node-cache key (``default_cache_key``) pickles the node input, and so:

* two tenants sending the same input to a cached node share one entry;
* with ``MessagesState``, messages the app sent without ids get a random id from the
  ``add_messages`` reducer on every run, so two identical runs never hit;
* two graphs sharing one cache can read each other's entries (LangGraph issue #8753: its
  namespace is the node's name and function, ``"__dynamic__"`` for a callable object).

:func:`tenant_cache_key` keys on the tenant, the graph and the input's *content*. The tenant
follows the core's one rule (:func:`promptcache.tenancy.tenant_from`): the run config's
``configurable``, then its ``metadata``, then the runtime context (``context=``), then the node
input. LangGraph hands a key function the node input only, so the run it belongs to is found
on the call stack (see :func:`_graph_run`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import sys
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from langchain_core.messages import BaseMessage, convert_to_openai_messages
from langgraph.pregel import Pregel
from langgraph.types import CachePolicy
from pydantic import BaseModel

from promptcache.metrics import CacheMetrics
from promptcache.tenancy import DEFAULT_TENANT_KEY, tenant_from

__all__ = ["tenant_cache_key"]

# LangGraph's own default key (pickles the input), for values that have no plain form.
_default_key: Callable[..., str | bytes] = CachePolicy().key_func

# The frames between a key function and the Pregel.stream/astream that runs it: LangGraph 1.x has
# five (prepare_single_task, prepare_next_tasks, the loop's two, stream); room for a few more.
_MAX_DEPTH = 12
_STREAMS = frozenset({"stream", "astream"})


@dataclasses.dataclass(frozen=True)
class _Run:
    config: Mapping[str, Any] | None
    context: Any
    graph: Pregel[Any, Any, Any, Any] | None


def _graph_run() -> _Run:
    """The run config, runtime context and graph of the LangGraph run preparing this key.

    LangGraph calls ``key_func(node_input)`` while it prepares a task, in the loop of
    ``Pregel.stream``/``astream``, before any runnable context exists (``get_config()`` raises
    there): the run's config and graph are only that frame's locals. Only a frame of LangGraph's
    own ``langgraph.pregel.main`` is read; the nearest one is the (sub)graph being run.
    """
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_MAX_DEPTH):
        if frame is None:
            break
        if frame.f_code.co_name in _STREAMS and frame.f_globals.get("__name__") == "langgraph.pregel.main":
            found = frame.f_locals
            graph = found.get("self")
            config = found.get("config")
            if isinstance(graph, Pregel) and isinstance(config, Mapping):
                return _Run(config, getattr(found.get("runtime"), "context", None), graph)
        frame = frame.f_back
    try:  # called inside a runnable (a key function called from a node, a test)
        from langgraph.config import get_config

        return _Run(get_config(), None, None)
    except RuntimeError:
        return _Run(None, None, None)


def _code_identity(obj: Any) -> str:
    # What a node runs, named by code (module and qualified name) rather than by object id, so
    # the identity is the same in every process that builds the graph.
    for _ in range(8):
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif isinstance(obj, Pregel):
            return f"graph:{obj.name}"
        elif getattr(obj, "func", None) is not None or getattr(obj, "afunc", None) is not None:
            obj = getattr(obj, "func", None) or obj.afunc  # LangGraph's RunnableCallable
        elif isinstance(getattr(obj, "steps", None), list) and obj.steps:
            obj = obj.steps[0]  # a RunnableSeq: the node's own step comes first
        else:
            break
    if hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):
        return f"{obj.__module__}.{obj.__qualname__}"
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _graph_identity(graph: Pregel[Any, Any, Any, Any] | None) -> str:
    """The graph's name and each node's name and code: what tells two graphs apart (#8753)."""
    if graph is None:
        return ""
    nodes = {name: _code_identity(node.bound) for name, node in graph.nodes.items()}
    return json.dumps({"graph": graph.name, "nodes": nodes}, sort_keys=True)


class _Skip:
    """A value that is not part of what a node computes from (its input's cache figures)."""


_SKIP = _Skip()


def _message(m: BaseMessage) -> Any:
    # What a model is sent of the message (role, content, name, tool calls), without the ids
    # LangGraph or the provider made up for it: equal conversations give equal keys.
    plain: dict[str, Any] = dict(convert_to_openai_messages(m))
    plain.pop("id", None)
    plain.pop("tool_call_id", None)
    if "tool_calls" in plain:
        plain["tool_calls"] = [{k: v for k, v in c.items() if k != "id"} for c in plain["tool_calls"]]
    return _content(plain)


def _content(value: Any) -> Any:
    """The plain, id-free form of a node input: what the key hashes."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, CacheMetrics):
        return _SKIP  # the run's figures: they differ per run, what the node computes does not
    if isinstance(value, BaseMessage):
        return _message(value)
    if isinstance(value, Mapping):
        items = ((str(k), _content(v)) for k, v in value.items())
        return {k: v for k, v in items if v is not _SKIP}
    if isinstance(value, list | tuple):
        return [c for c in (_content(v) for v in value) if c is not _SKIP]
    if isinstance(value, BaseModel):
        return _content({name: getattr(value, name) for name in type(value).model_fields})
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _content({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    raw = _default_key(value)
    return {"pickled": hashlib.sha256(raw.encode() if isinstance(raw, str) else raw).hexdigest()}


def tenant_cache_key(
    tenant_field: str = DEFAULT_TENANT_KEY,
    *,
    config_key: str | None = DEFAULT_TENANT_KEY,
    namespace: str = "",
) -> Callable[..., str]:
    """A node-cache key function: ``sha256`` of the tenant, the graph and the input's content.

    * The tenant: the run config's ``configurable`` then ``metadata`` ``config_key``, then the
      runtime context's ``config_key`` (``graph.invoke(..., context=...)``), then the node
      input's ``tenant_field`` (a state key or attribute) — the core's one order. No tenant
      anywhere raises ``ValueError``: a key that tenants would share is never built.
    * The graph: its name (``compile(name=...)``) and each node's name and code, plus
      ``namespace`` if given (name a graph whose nodes are built by one factory, say).
    * The input's content: messages as a model is sent them, without their ids (the ids
      ``add_messages`` gives messages sent without one are random per run); the
      ``cache_metrics`` channel left out (figures of past calls, not input).

    Works in ``invoke``/``stream`` and ``ainvoke``/``astream`` alike.
    """

    def key(*args: Any, **kwargs: Any) -> str:
        node_input = args[0] if args else None
        run = _graph_run()
        tenant = None
        if config_key is not None:
            tenant = tenant_from(config_key, config=run.config, runtime_context=run.context)
        if tenant is None:
            tenant = tenant_from(tenant_field, state=node_input)
        if not tenant:
            raise ValueError(
                f"tenant_cache_key: no tenant in the run config (configurable/metadata {config_key!r}), "
                f"the runtime context or the node input ({tenant_field!r}); pass "
                f"config={{'configurable': {{{config_key or tenant_field!r}: ...}}}} to the graph call, "
                "rather than share node-cache entries between tenants"
            )
        content = [_content(a) for a in args] + [{k: _content(v) for k, v in sorted(kwargs.items())}]
        body = json.dumps(
            [namespace, _graph_identity(run.graph), tenant, content],
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()

    return key
