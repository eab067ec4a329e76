"""The one tenant rule (promptcache.tenancy): carriers in their documented order, then the policy."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from promptcache import PromptCache
from promptcache.tenancy import resolve_tenant, tenant_from


@dataclass
class _Context:
    tenant_id: str | None = None


def test_carriers_in_order() -> None:
    config = {"configurable": {"tenant_id": "a"}, "metadata": {"tenant_id": "b"}}
    everything = {
        "metadata": {"tenant_id": "c"},
        "runtime_context": _Context("d"),
        "state": {"tenant_id": "e"},
        "tags": {"tenant_id": "f"},
        "default": "g",
    }
    assert tenant_from(tenant="x", config=config, **everything) == "x"  # type: ignore[arg-type]
    assert tenant_from(config=config, **everything) == "a"  # type: ignore[arg-type]
    assert tenant_from(config={"metadata": {"tenant_id": "b"}}, **everything) == "b"  # type: ignore[arg-type]
    order = ["metadata", "runtime_context", "state", "tags", "default"]
    for i, name in enumerate(order):
        rest = {k: v for k, v in everything.items() if k in order[i:]}
        assert tenant_from(**rest) == "cdefg"[i], name  # type: ignore[arg-type]


def test_empty_values_and_other_keys_are_skipped() -> None:
    assert tenant_from(config={"configurable": {"tenant_id": ""}}, tags={"tenant_id": "t"}) == "t"
    assert tenant_from("org", config={"configurable": {"tenant_id": "x", "org": 7}}) == "7"
    assert tenant_from(runtime_context=_Context(None), state=object()) is None
    assert tenant_from(metadata={"tenant_id": None}) is None
    assert tenant_from(tenant="", state={"tenant_id": "s"}) == "s"
    with pytest.raises(TypeError, match=r"^tenant_id: "):
        tenant_from(tenant=["acme"])


def test_the_policy_decides_a_missing_tenant() -> None:
    cache = PromptCache()
    assert resolve_tenant(cache, state={"tenant_id": "acme"}) == "acme"
    assert resolve_tenant(cache) == cache.policy.default_tenant
    strict = PromptCache(policy=cache.policy.model_copy(update={"require_tenant": True}))
    with pytest.raises(ValueError, match="require_tenant"):
        resolve_tenant(strict, tags={})


@pytest.mark.parametrize("value", [["acme"], ("acme",), {"id": "acme"}, True, b"acme"])
def test_a_container_is_not_a_tenant(value: object) -> None:
    # issue 19, item 8: it became "['acme']" silently; the same rule as PromptCache.resolve_tenant
    with pytest.raises(TypeError, match=r"^tenant_id: "):
        tenant_from(config={"configurable": {"tenant_id": value}})


def test_a_surrogate_in_a_carried_tenant_is_refused_by_the_engine() -> None:
    with pytest.raises(ValueError, match=r"^tenant: "):
        resolve_tenant(PromptCache(), metadata={"tenant_id": "ac\udc80me"})
