"""Where a call's tenant comes from: the ``RunnableConfig`` of the call, never a global.

``config["configurable"][key]`` first (the LangChain/LangGraph way to pass per-call values),
then ``config["metadata"][key]``. The key name is configurable (``tenant_key=``), default
``"tenant_id"``. Whether a missing tenant is refused is the policy's decision
(``require_tenant``), made by ``PromptCache.resolve_tenant``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_TENANT_KEY", "tenant_from_config"]

DEFAULT_TENANT_KEY = "tenant_id"


_SECTIONS = ("configurable", "metadata")


def tenant_from_config(
    config: Mapping[str, Any] | None, key: str = DEFAULT_TENANT_KEY, *, sections: tuple[str, ...] = _SECTIONS
) -> str | None:
    """The tenant named in ``config`` under ``key`` (``sections`` in order: configurable, then
    metadata), or ``None``."""
    if not config:
        return None
    for section in sections:
        values = config.get(section)
        # type() first: isinstance against the Mapping ABC is a Python-level call, on every model call.
        if type(values) is dict or isinstance(values, Mapping):
            value = values.get(key)
            if value is not None and value != "":
                return str(value)
    return None
