"""Cache keys: SHA-256 over a declared key contract.

A key names *what* is cached and *for whom*: tenant, workspace, security
scope, model, tokenizer, prompt schema, policy, tool schema and retrieval index
versions, and the canonical hash of the content. Fields that exist only for
tracing or transport (request ids, trace ids, timestamps) never enter a key.

Keys are stable across processes and Python versions: the contract is
serialized as sorted-key JSON and hashed with SHA-256 (never ``hash()``,
pickle or ``repr``).

>>> c = KeyContract(tenant="acme", model="gpt-4o", policy_version="1")
>>> k1 = derive_key(c, "prompt_prefix", "ab" * 32)
>>> k2 = derive_key(c.model_copy(update={"tenant": "globex"}), "prompt_prefix", "ab" * 32)
>>> k1 != k2 and len(k1) == 64
True
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptcache.blocks import PUBLIC_SCOPE

#: Bumped when the layout of the key contract itself changes.
KEY_SCHEMA_VERSION = "1"


class MissingTenantError(ValueError):
    """A private-scope key was requested without a tenant."""


class KeyContract(BaseModel):
    """Everything that decides whether two cache entries are interchangeable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str | None = Field(default=None, description="required unless scope is 'public'")
    workspace: str = "default"
    scope: str = Field(default="tenant", description="'public', 'tenant' or a narrower label")
    model: str = Field(description="model id as sent to the provider")
    tokenizer_version: str | None = None
    prompt_schema_version: str = "1"
    policy_version: str = "0"
    tool_schema_version: str | None = None
    retrieval_index_version: str | None = None

    @model_validator(mode="after")
    def _tenant_rule(self) -> KeyContract:
        if self.scope == PUBLIC_SCOPE:
            if self.tenant is not None:
                # A public entry is shared across tenants by definition; keeping the
                # tenant would silently split it per tenant.
                raise ValueError("KeyContract.tenant must be None when scope is 'public'")
        elif not self.tenant:
            raise MissingTenantError(
                f"KeyContract.tenant is required for scope {self.scope!r}; pass tenant=... "
                "(or scope='public' for content that may be shared across tenants)"
            )
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """Copy with changes, *validated* (pydantic's default copy skips validation,
        which would let a copy drop the tenant of a private scope)."""
        return self.model_validate({**self.model_dump(), **(update or {})})

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the canonical contract (memoized by field values)."""
        return _fingerprint(self)


@lru_cache(maxsize=4096)
def _fingerprint(contract: KeyContract) -> bytes:
    # Keyed by the frozen model's field values, so equal contracts share an entry
    # and a changed field can never reuse a stale fingerprint.
    data = contract.model_dump(mode="json")
    data["_schema"] = KEY_SCHEMA_VERSION
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).digest()


def derive_key(contract: KeyContract, entry_type: str, content_hash: str) -> str:
    """The cache key of ``content_hash`` (a canonical SHA-256 hex) under ``contract``."""
    return _derive(contract.fingerprint, entry_type, content_hash)


def _derive(fingerprint: bytes, entry_type: str, content_hash: str) -> str:
    return hashlib.sha256(fingerprint + entry_type.encode() + b"\x00" + content_hash.encode()).hexdigest()


def prefix_key(contract: KeyContract, digests: list[str]) -> str:
    """The ``prompt_prefix`` key of the blocks with ``digests`` under ``contract``:
    ``derive_key(contract, "prompt_prefix", chain_hash(digests))``, memoized by value (the
    prefix of a family is the same on nearly every call)."""
    return _prefix_key(contract.fingerprint, tuple(digests))


# Bounded by entries, each a prefix's digests (its system texts and tools: tens, not a history).
@lru_cache(maxsize=1024)
def _prefix_key(fingerprint: bytes, digests: tuple[str, ...]) -> str:
    return _derive(fingerprint, "prompt_prefix", hashlib.sha256("\x00".join(digests).encode()).hexdigest())


#: Characters of the system prompt that enter :func:`routing_key`: about its first 256 tokens,
#: the window of the prompt OpenAI hashes, with the key, to choose the machine.
ROUTING_HEAD_CHARS = 1024


def routing_key(contract: KeyContract, tool_names: list[str], system_head: str) -> str:
    """The key a provider routes a request by (OpenAI's ``prompt_cache_key``): the contract
    (tenant, model), the tool set (names, in any order) and the start of the system prompt.

    Not the whole prefix: OpenAI sends requests with the same key and prompt start to the same
    machines, and caches per machine (developers.openai.com, "Prompt caching": "requests are
    routed based on a hash of the initial prefix of the prompt" and ``prompt_cache_key``). A key
    that changes with every edit further down (a memory block, a profile) reroutes the
    conversation away from the machine that holds even its unchanged tools and instructions
    (issue 22, decision 6).

    >>> c = KeyContract(tenant="acme", model="gpt-4o")
    >>> routing_key(c, ["b", "a"], "You are") == routing_key(c, ["a", "b"], "You are")
    True
    """
    return _routing_key(contract.fingerprint, tuple(tool_names), system_head)


# Memoized by value: a family's routing key is the same on every call. Each entry holds at
# most ROUTING_HEAD_CHARS characters of head and the tool names.
@lru_cache(maxsize=1024)
def _routing_key(fingerprint: bytes, tool_names: tuple[str, ...], system_head: str) -> str:
    names = orjson.dumps(sorted(tool_names))
    return _derive(fingerprint, "routing", hashlib.sha256(names + b"\x00" + system_head.encode()).hexdigest())


def chain_hash(digests: list[str]) -> str:
    """SHA-256 over an ordered list of block digests: the identity of a prefix."""
    return hashlib.sha256("\x00".join(digests).encode()).hexdigest()


def chain_hashes(digests: list[str], *ends: int) -> list[str]:
    """``chain_hash(digests[:end])`` for each of the increasing ``ends``, in one pass.

    The conversation key extends the prefix key; hashing incrementally avoids
    re-hashing the prefix for every key derived from it.
    """
    h = hashlib.sha256()
    out: list[str] = []
    done = 0
    for end in ends:
        if end > done:
            sep = "\x00" if done else ""
            h.update((sep + "\x00".join(digests[done:end])).encode())
            done = end
        out.append(h.hexdigest())
    return out


class Contracts:
    """The key contracts of one cache, per (tenant, model), at most ``size`` (the oldest made goes
    first): a contract is a pure function of its fields, made again when needed, so a process
    serving many tenants holds a bounded table.

    >>> c = Contracts(2)
    >>> c.get("acme", "gpt-4o", "p1") == KeyContract(tenant="acme", model="gpt-4o", policy_version="p1")
    True
    """

    def __init__(self, size: int) -> None:
        self._d: dict[tuple[str, str], KeyContract] = {}
        self._size = max(1, size)
        self._lock = threading.Lock()

    def get(self, tenant: str, model: str, policy_version: str) -> KeyContract:
        """The contract of ``tenant`` on ``model`` under the policy version ``policy_version``."""
        k = (tenant, model)
        c = self._d.get(k)
        if c is None or c.policy_version != policy_version:
            c = KeyContract(tenant=tenant, model=model, policy_version=policy_version)
            with self._lock:
                if len(self._d) >= self._size:
                    self._d.pop(next(iter(self._d)), None)
                self._d[k] = c
        return c

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: object) -> bool:
        return key in self._d
