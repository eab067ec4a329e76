"""Where a call's tenant comes from: the ``RunnableConfig`` of the call, never a global.

The rule is the core's (:mod:`promptcache.tenancy`): ``config["configurable"][key]`` first (the
LangChain/LangGraph way to pass per-call values), then ``config["metadata"][key]``. The key name
is configurable (``tenant_key=``), default ``"tenant_id"``. Whether a missing tenant is refused is
the policy's decision (``require_tenant``), made by ``PromptCache.resolve_tenant``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promptcache.tenancy import DEFAULT_TENANT_KEY, tenant_from

__all__ = ["DEFAULT_TENANT_KEY", "tenant_from_config"]


def tenant_from_config(config: Mapping[str, Any] | None, key: str = DEFAULT_TENANT_KEY) -> str | None:
    """The tenant named in ``config`` under ``key`` (configurable, then metadata), or ``None``."""
    return tenant_from(key, config=config)
