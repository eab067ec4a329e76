"""The tenant of a LlamaIndex call: from the active instrumentation tags, never from a global.

LlamaIndex propagates ``instrument_tags({...})`` through a context variable to every event of the
calls made inside the block (query engines, agents, workflows), so the same key works for LLM,
retrieval and tool calls alike::

    from llama_index.core.instrumentation.dispatcher import instrument_tags
    with instrument_tags({"tenant_id": "acme"}):
        query_engine.query("...")

The rule itself (tags, then the configured default, then the policy) is the core's
:mod:`promptcache.tenancy`; this module only supplies the active tags.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_index_instrumentation.dispatcher import active_instrument_tags

from promptcache import PromptCache
from promptcache.tenancy import DEFAULT_TENANT_KEY, tenant_from
from promptcache.tenancy import resolve_tenant as _resolve

__all__ = ["DEFAULT_TENANT_KEY", "resolve_tenant", "tenant_from_tags"]


def tenant_from_tags(tags: Mapping[str, Any] | None = None, key: str = DEFAULT_TENANT_KEY) -> str | None:
    """The tenant in ``tags`` (default: the active instrumentation tags), or None."""
    return tenant_from(key, tags=active_instrument_tags.get() if tags is None else tags)


def resolve_tenant(
    cache: PromptCache,
    default: str | None = None,
    key: str = DEFAULT_TENANT_KEY,
    tags: Mapping[str, Any] | None = None,
) -> str:
    """Tags first, then ``default``, then the policy (which refuses a missing tenant if it must)."""
    return _resolve(cache, key, tags=active_instrument_tags.get() if tags is None else tags, default=default)
