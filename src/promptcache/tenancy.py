"""Which tenant a call runs for: one rule, read from whatever carriers the framework has.

Every integration asks :func:`resolve_tenant` (or :func:`tenant_from`, which stops short of
the policy), so the rule is written once: the LangChain middleware, chat-model wrapper, callback
handlers, tool and retriever caches, LangGraph's ``cache_node`` and ``tenant_cache_key``, and
LlamaIndex's LLM, handler, tool and retriever caches. Each passes every carrier its framework
has; the carriers are looked at in this order, the first non-empty value under ``key`` wins:

0. ``tenant`` — a tenant the caller passed explicitly for this call;
1. ``config["configurable"][key]`` — the call's ``RunnableConfig`` (LangChain, LangGraph), the
   documented way to pass a per-call value;
2. ``config["metadata"][key]`` — the same config's metadata (LangGraph and ``create_agent`` copy
   it to every child run);
3. ``metadata[key]`` — a run's metadata when the config itself is not at hand (a callback
   handler's ``on_chat_model_start``, a ``run_manager``);
4. ``runtime_context[key]`` — a LangGraph/``create_agent`` runtime context (a mapping or an
   object with that attribute);
5. ``state[key]`` — a graph node's input (a mapping or an object with that attribute), which is
   all LangGraph gives a node-cache key function;
6. ``tags[key]`` — LlamaIndex instrumentation tags (``instrument_tags({...})``);
7. ``default`` — a tenant fixed when the integration was configured.

A tenant is never read from a global. Whether a missing tenant is refused or replaced by the
policy's default tenant is the policy's decision (``require_tenant``), made by
:meth:`promptcache.PromptCache.resolve_tenant` at the end of :func:`resolve_tenant`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptcache.engine import PromptCache
    from promptcache.policy import Policy

__all__ = ["DEFAULT_TENANT_KEY", "checked_tenant", "resolve_tenant", "tenant_from"]

DEFAULT_TENANT_KEY = "tenant_id"
"""The key that names the tenant in every carrier, unless an integration is told another."""


#: Types whose text is not a tenant id (a number or a UUID is: it is named by its text).
_NOT_A_TENANT = (bool, bytes, dict, frozenset, list, set, tuple)


def _value(carrier: Any, key: str, *, attribute: bool = False) -> str | None:
    if carrier is None:
        return None
    # type() first: isinstance against the Mapping ABC is a Python-level call, on every model call.
    if type(carrier) is dict or isinstance(carrier, Mapping):
        value = carrier.get(key)
    elif attribute:
        value = getattr(carrier, key, None)
    else:
        return None
    if value is None or value == "":
        return None
    if type(value) is str:
        return value
    if isinstance(value, _NOT_A_TENANT):
        # str() of these is a spelling of a container, not an id: refuse it, naming the key
        # (issue 19: a list given as the tenant failed deep inside, or silently became "['acme']").
        raise TypeError(
            f"{key}: a {type(value).__name__} was given as the tenant; pass the tenant id as a str"
        )
    return str(value)  # a number or a UUID names its tenant by its text


def tenant_from(
    key: str = DEFAULT_TENANT_KEY,
    *,
    tenant: Any = None,
    config: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    runtime_context: Any = None,
    state: Any = None,
    tags: Mapping[str, Any] | None = None,
    default: str | None = None,
) -> str | None:
    """The tenant the carriers name under ``key``, in the module's documented order, or None.

    ``tenant`` is an explicit tenant (it wins over every carrier); ``config`` is a LangChain
    ``RunnableConfig`` (its ``configurable`` then its ``metadata``); ``runtime_context`` and
    ``state`` may be mappings or objects with a ``key`` attribute.
    """
    found = _value({key: tenant}, key)
    if found is not None:
        return found
    if config:
        for section in ("configurable", "metadata"):
            found = _value(config.get(section), key)
            if found is not None:
                return found
    for carrier, attribute in ((metadata, False), (runtime_context, True), (state, True), (tags, False)):
        found = _value(carrier, key, attribute=attribute)
        if found is not None:
            return found
    return default or None


def resolve_tenant(
    cache: PromptCache,
    key: str = DEFAULT_TENANT_KEY,
    *,
    tenant: Any = None,
    config: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    runtime_context: Any = None,
    state: Any = None,
    tags: Mapping[str, Any] | None = None,
    default: str | None = None,
) -> str:
    """The tenant a call runs under: :func:`tenant_from`, then ``cache``'s policy.

    Raises ``ValueError`` when no carrier names a tenant and the policy requires one
    (``require_tenant``); otherwise a missing tenant is the policy's default tenant.
    """
    found = tenant_from(
        key,
        tenant=tenant,
        config=config,
        metadata=metadata,
        runtime_context=runtime_context,
        state=state,
        tags=tags,
        default=default,
    )
    return cache.resolve_tenant(found)


def checked_tenant(tenant: str | None, policy: Policy) -> str:
    """``tenant`` checked, or ``policy``'s default tenant when none is named.

    Refuses a missing tenant when the policy requires one, and a tenant that is not text or
    not valid Unicode, each with the field named (:meth:`PromptCache.resolve_tenant
    <promptcache.engine.PromptCache.resolve_tenant>`).

    >>> from promptcache.policy import Policy
    >>> checked_tenant(None, Policy()), checked_tenant("acme", Policy())
    ('default', 'acme')
    """
    if tenant is not None and not isinstance(tenant, str):
        raise TypeError(f"tenant: a {type(tenant).__name__} was given; pass the tenant id as a str")
    if tenant:
        try:
            tenant.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"tenant: holds an unpaired surrogate at character {exc.start}; pass valid text"
            ) from None
        return tenant
    if policy.require_tenant:
        raise ValueError(
            "tenant: this policy requires a tenant on every call (require_tenant: true); "
            "pass tenant=... (LangChain: config={'configurable': {'tenant_id': ...}})"
        )
    return policy.default_tenant
