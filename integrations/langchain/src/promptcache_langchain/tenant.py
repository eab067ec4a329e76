"""Where a call's tenant comes from: the carriers LangChain and LangGraph give it, never a global.

The rule is the core's (:mod:`promptcache.tenancy`, in one order for every integration):
``config["configurable"][key]`` (the LangChain/LangGraph way to pass per-call values), then
``config["metadata"][key]``, then the LangGraph runtime context (``graph.invoke(...,
context=...)``, :func:`runtime_context`), then the graph state. The key name is configurable
(``tenant_key=``), default ``"tenant_id"``. Whether a missing tenant is refused is the policy's
decision (``require_tenant``), made by ``PromptCache.resolve_tenant``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.runnables.config import var_child_runnable_config

from promptcache.tenancy import DEFAULT_TENANT_KEY, tenant_from

__all__ = ["DEFAULT_TENANT_KEY", "ambient_config", "runtime_context", "tenant_from_config"]


def tenant_from_config(config: Mapping[str, Any] | None, key: str = DEFAULT_TENANT_KEY) -> str | None:
    """The tenant named in ``config`` under ``key`` (configurable, then metadata), or ``None``."""
    return tenant_from(key, config=config)


def ambient_config() -> Mapping[str, Any] | None:
    """The ``RunnableConfig`` of the chain or graph node this code runs in, or None.

    What ``ensure_config()`` starts from: inside a chain step or a LangGraph node it holds the
    run's ``configurable`` — which a callback is not handed (its ``metadata`` only).
    """
    return var_child_runnable_config.get()


def runtime_context() -> Any:
    """The runtime context of the LangGraph run this code runs in (``context=``), or None."""
    try:
        from langgraph.runtime import get_runtime

        runtime = get_runtime()
    except RuntimeError:  # not inside a graph run
        return None
    return getattr(runtime, "context", None)
