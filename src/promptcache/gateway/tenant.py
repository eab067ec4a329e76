"""Which tenant a gateway request runs for, and the API key it carries (never kept).

The rule (issue 24):

1. the ``X-PromptCache-Tenant`` header, when present and not empty: the operator's tenant id
   (an app behind the gateway names its customer, for instance);
2. otherwise a keyed hash of the caller's API key (:func:`key_tenant`): two keys never share a
   tenant, and the tenant id says nothing about the key without the deployment key;
3. otherwise (no key at all) the policy decides, as in-process: its default tenant, or a refusal
   when it requires one (``require_tenant``).

The key is read from ``Authorization: Bearer …`` (OpenAI), ``x-api-key`` (Anthropic) or
``api-key`` (Azure OpenAI). It is forwarded to the upstream untouched and never written
anywhere: the hash is an HMAC under the deployment key of :mod:`promptcache.pseudonym` (so every
process of one deployment derives the same tenant from the same key, and a fleet shares its
learned state per caller), and what promptcache stores or exports of a tenant is its label
again (:func:`promptcache.pseudonym.tenant_label`).

>>> from promptcache.pseudonym import set_deployment_key
>>> set_deployment_key("a key of sixteen+ characters")
>>> a, b = key_tenant("sk-alpha"), key_tenant("sk-beta")
>>> a != b and a == key_tenant("sk-alpha") and a.startswith("key_") and "alpha" not in a
True
>>> set_deployment_key(None)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from promptcache.engine import PromptCache
from promptcache.pseudonym import deployment_key

__all__ = ["TENANT_HEADER", "TenantError", "api_key_of", "key_tenant", "resolve_request_tenant"]

#: The header an operator names the tenant with.
TENANT_HEADER = "x-promptcache-tenant"
#: Longest tenant id taken from the header (longer is refused: an id, not a document).
MAX_TENANT_CHARS = 256
# Keeps gateway key hashes apart from every other HMAC made with the deployment key.
_DOMAIN = b"promptcache-gateway-api-key\x00"


class TenantError(ValueError):
    """The request names no usable tenant; the message names the header and the fix."""


def api_key_of(headers: Mapping[str, str]) -> str | None:
    """The API key a request carries (``headers`` with lower-case names), or None."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    for name in ("x-api-key", "api-key"):
        value = headers.get(name, "").strip()
        if value:
            return value
    return None


def key_tenant(api_key: str) -> str:
    """``key_`` and 32 hex digits of HMAC-SHA256(deployment key, ``api_key``): the key's tenant."""
    digest = hmac.new(deployment_key(), _DOMAIN + api_key.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return "key_" + digest.hexdigest()[:32]


def resolve_request_tenant(cache: PromptCache, headers: Mapping[str, str]) -> str:
    """The tenant of a request with ``headers`` (lower-case names), by the module's rule.

    Raises :class:`TenantError` naming the header when its value is unusable, or when neither
    the header nor an API key names a tenant and the policy requires one.
    """
    named = headers.get(TENANT_HEADER, "").strip()
    if named:
        if len(named) > MAX_TENANT_CHARS:
            raise TenantError(
                f"X-PromptCache-Tenant: {len(named)} characters; give a tenant id of at most "
                f"{MAX_TENANT_CHARS}"
            )
        try:
            return cache.resolve_tenant(named)
        except (TypeError, ValueError) as exc:
            raise TenantError(f"X-PromptCache-Tenant: {exc}") from None
    key = api_key_of(headers)
    if key is not None:
        return key_tenant(key)
    try:
        return cache.resolve_tenant(None)
    except ValueError:
        raise TenantError(
            "X-PromptCache-Tenant: this gateway's policy requires a tenant (require_tenant: true); "
            "send the header or an API key"
        ) from None
