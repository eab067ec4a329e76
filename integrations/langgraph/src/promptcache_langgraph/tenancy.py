"""A tenant-aware key for LangGraph's node cache (``CachePolicy(key_func=...)``).

LangGraph calls ``key_func(node_input)`` when it prepares a task, without the run's config; its
default, ``default_cache_key``, hashes the input alone, so two tenants sending the same input
to a cached node would share one entry. :func:`tenant_cache_key` puts the tenant in the key and
refuses (raises) when it cannot find one, rather than sharing silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from langgraph.types import CachePolicy

from promptcache.tenancy import tenant_from

__all__ = ["tenant_cache_key"]

# LangGraph's own default key (hashes the input), taken from its public CachePolicy default.
_default_key: Callable[..., str | bytes] = CachePolicy().key_func


def _from_config(key: str) -> str | None:
    try:
        from langgraph.config import get_config

        config = get_config()
    except RuntimeError:
        return None
    return tenant_from(key, config=config)


def tenant_cache_key(
    tenant_field: str = "tenant_id", *, config_key: str | None = "tenant_id"
) -> Callable[..., str | bytes]:
    """A node-cache key function: ``sha256(tenant) + LangGraph's default key of the input``.

    The tenant is read from the node input's ``tenant_field`` (a state key or attribute) — the
    reliable place, since LangGraph gives key functions the input only — and, failing that, from
    the current run config's ``configurable``/``metadata`` under ``config_key`` when one is
    reachable. No tenant raises ``ValueError``.
    """

    def key(*args: Any, **kwargs: Any) -> str | bytes:
        # The node input first: it is what LangGraph reliably hands a key function.
        tenant = tenant_from(tenant_field, state=args[0] if args else None)
        if not tenant and config_key is not None:
            tenant = _from_config(config_key)
        if not tenant:
            raise ValueError(
                f"tenant_cache_key: no tenant in the node input ({tenant_field!r}) or the run config "
                f"({config_key!r}); refusing to build a node-cache key that tenants would share"
            )
        inner = _default_key(*args, **kwargs)
        inner_b = inner.encode() if isinstance(inner, str) else inner
        return hashlib.sha256(str(tenant).encode()).hexdigest() + ":" + hashlib.sha256(inner_b).hexdigest()

    return key
