"""Stored tag names: a readable prefix and a keyed digest, scoped to a tenant.

Tags are often filled from tool arguments (``person:{ssn}``, ``mail:{address}``), so what
reaches a store (the SQLite tag index, Redis key names, the invalidation bus, an entry's
header) is never the tag itself but its *stored name*::

    person:7c0b3e0d5f6a41c2b9e8d1a4f3c2b1a0
    └─┬──┘ └──────────────┬───────────────┘
   readable   HMAC-SHA256(tag key, scope, tag), 128 bits in hex
    prefix

The digest is keyed (see :func:`tag_key_from`): a bare hash of a low-entropy value such
as a social security number is reversed by trying all of them, a keyed one is not without
the key. The readable prefix is the tag's first ``:``-separated label when it looks like a
kind (a letter, then up to 31 letters, digits, ``_``, ``.`` or ``-``), else ``tag``.

Scope (issue 19, item 3: one tenant's write must not evict another tenant's entries):

* a tag is **tenant-scoped** by default: tenant A's ``reservation:42`` and tenant B's are
  different stored names, so A's invalidation cannot reach B's entries;
* a tag written ``public:<tag>`` is **shared**: one stored name for every tenant, so any
  tenant's invalidation of ``public:<tag>`` drops every entry declared with it;
* every entry also carries each tag's **fleet-wide** name, which only an invalidation that
  names no tenant moves (the operator's form: ``promptcache invalidate --tag T``,
  ``cache.invalidate(T)``), dropping the tag for every tenant at once.

An entry's tags are therefore stored as two names per tag: its scope's (tenant or public)
and the fleet-wide one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
import time
from collections.abc import Callable, Iterable

__all__ = [
    "PUBLIC_PREFIX",
    "TAG_KEY_ENV",
    "TAG_KEY_REFRESH_S",
    "TagKeys",
    "TagNamer",
    "is_public",
    "tag_key_from",
]

PUBLIC_PREFIX = "public:"
"""A tag written ``public:<tag>`` is shared by every tenant (see the module docstring)."""

TAG_KEY_ENV = "PROMPTCACHE_TAG_KEY"
"""The environment variable that sets the deployment's tag key (any text of 16+ characters)."""

TAG_KEY_REFRESH_S = 1.0
"""How often a process re-reads its store's tag key (a store recreated empty gets a new one)."""

_KIND = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
_DIGEST_HEX = 32  # 128 bits: collisions between distinct tags are out of reach


def is_public(tag: str) -> bool:
    """True for a tag declared shared by every tenant (``public:<tag>``)."""
    return tag.startswith(PUBLIC_PREFIX) and len(tag) > len(PUBLIC_PREFIX)


def tag_key_from(value: str | bytes) -> bytes:
    """A 32-byte tag key from configured text or bytes (at least 16 of them).

    Raises ``ValueError`` naming ``tag_key`` when it is too short to be a secret.
    """
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if len(raw) < 16:
        raise ValueError(
            f"tag_key: {len(raw)} bytes is too short to key tag digests; give 16 or more "
            f"(e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`, "
            f"or set {TAG_KEY_ENV})"
        )
    return hashlib.sha256(b"promptcache tag key\x00" + raw).digest()


def _kind(tag: str) -> str:
    head, sep, _ = tag.partition(":")
    return head if sep and _KIND.fullmatch(head) else "tag"


class TagNamer:
    """Turns tags into stored names under one key (see the module docstring)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        """Name tags under ``key`` (32 bytes: a store's key or :func:`tag_key_from`'s)."""
        if len(key) < 16:
            raise ValueError("tag_key: a tag key is at least 16 bytes")
        self._key = key

    def _name(self, scope: str, tag: str) -> str:
        msg = f"{scope}\x00{tag}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:_DIGEST_HEX]
        return f"{_kind(tag)}:{digest}"

    def fleet(self, tag: str) -> str:
        """The name every entry with ``tag`` carries whatever its tenant (moved only by operators)."""
        plain = tag[len(PUBLIC_PREFIX) :] if is_public(tag) else tag
        return self._name("fleet", plain)

    def scoped(self, tag: str, tenant: str) -> str:
        """The name ``tenant``'s entries carry for ``tag`` (the shared one for a public tag)."""
        if is_public(tag):
            return self._name("public", tag[len(PUBLIC_PREFIX) :])
        return self._name("tenant\x00" + tenant, tag)

    def entry_names(self, tags: Iterable[str], tenant: str) -> tuple[str, ...]:
        """The stored names an entry of ``tenant`` declared with ``tags`` carries, sorted."""
        out: set[str] = set()
        for t in tags:
            out.add(self.scoped(t, tenant))
            out.add(self.fleet(t))
        return tuple(sorted(out))

    def target(self, tag: str, tenant: str | None) -> str:
        """The name an invalidation of ``tag`` moves: ``tenant``'s, the public one, or fleet-wide."""
        if is_public(tag):
            return self.scoped(tag, "")
        return self.fleet(tag) if tenant is None else self.scoped(tag, tenant)


class TagKeys:
    """Where a process's tag key comes from, and when to read it again.

    A configured key (``tag_key=``, else ``$PROMPTCACHE_TAG_KEY``) is used as is. Otherwise
    the key is the store's own: a random key created in the shared tier on first use, so
    that every process sharing the tier names tags alike. It is re-read every
    :data:`TAG_KEY_REFRESH_S` (a store recreated empty has a new key). Until it has been read
    once, tags are named under a key of this process alone, and entries so named stay in L1
    (see :class:`~promptcache.tiers.router.TieredStore`).
    """

    def __init__(
        self,
        configured: str | bytes | None = None,
        *,
        from_store: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``configured``: the deployment's key, if any; ``from_store``: whether a shared tier holds one."""
        if configured is None:
            configured = os.environ.get(TAG_KEY_ENV) or None
        self._clock = clock
        self._lock = threading.Lock()
        self.fixed = configured is not None or not from_store
        key = tag_key_from(configured) if configured is not None else None
        self._shared: TagNamer | None = TagNamer(key) if key is not None else None
        self._local = TagNamer(os.urandom(32))
        self._raw: bytes | None = None
        self._next = 0.0

    def due(self) -> bool:
        """True when the store's key should be read (never with a configured key)."""
        return not self.fixed and self._clock() >= self._next

    def learned(self, key: bytes) -> bool:
        """Record the key read from the store; True if it replaced a different one."""
        with self._lock:
            self._next = self._clock() + TAG_KEY_REFRESH_S
            changed = self._raw is not None and self._raw != key
            if self._raw != key:
                self._raw = key
                self._shared = TagNamer(key)
            return changed

    def failed(self) -> None:
        """The store's key could not be read: keep what is known, try again later."""
        self._next = self._clock() + TAG_KEY_REFRESH_S

    def namer(self) -> tuple[TagNamer, bool]:
        """The namer to use and whether its names are shared with other processes.

        With no shared tier (``from_store=False``) the process is alone: its own key is shared.
        """
        if self._shared is not None:
            return self._shared, True
        return self._local, self.fixed
