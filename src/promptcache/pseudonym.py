"""Tenant ids as keyed hashes: what entry headers and telemetry carry instead of the tenant.

An application may pass anything as its tenant: a customer name, an e-mail address, or by
mistake an API key. Nothing promptcache writes (an entry's header in SQLite, Redis or a
blob; an event, span attribute, metric label or persisted stats record) holds it in clear:
it holds :func:`tenant_label`, an HMAC-SHA256 of the tenant under a per-deployment key.
The same tenant gives the same label in every process that has the same key, so entries
are shared and checked as before; without the key, a label tells nothing about the tenant,
not even for a short or guessable one (which a plain hash would give away).

The key, in order:

1. :func:`set_deployment_key` (an application's own secret store);
2. the environment variable ``PROMPTCACHE_TENANT_KEY`` (at least 16 characters);
3. a random key kept in ``tenant.key`` in the cache directory (see
   :func:`promptcache.tiers.sqlite.default_cache_dir`), made by the first process that
   needs it: every process of one machine shares it;
4. when that file cannot be read or made, a random key for this process alone (one warning):
   labels still hide the tenant, but entries are not shared with other processes.

Processes on several machines that share one store (Redis) must be given the same key (1 or
2): with keys of their own, each machine's entries read as another tenant's (refused and
counted ``tenant_mismatch``, never served).

>>> set_deployment_key("a key of sixteen+ characters")
>>> tenant_label("acme") == tenant_label("acme") != tenant_label("globex")
True
>>> tenant_label("acme").startswith("t_"), len(tenant_label("acme"))
(True, 34)
>>> set_deployment_key(None)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import threading
from functools import lru_cache
from pathlib import Path

__all__ = ["ENV_KEY", "deployment_key", "set_deployment_key", "tenant_label"]

log = logging.getLogger("promptcache")

#: The environment variable holding the deployment key.
ENV_KEY = "PROMPTCACHE_TENANT_KEY"
_KEY_FILE = "tenant.key"
_MIN_KEY_CHARS = 16

_lock = threading.Lock()
_key: list[bytes | None] = [None]
#: Whether the key is this process's own (no environment key, no readable key file).
_own: list[bool] = [False]


def set_deployment_key(key: str | bytes | None) -> None:
    """Use ``key`` for every label from now on (None: find it again, as the module docstring says)."""
    with _lock:
        _key[0] = None if key is None else _checked(key, "set_deployment_key(key)")


def _checked(key: str | bytes, where: str) -> bytes:
    raw = key.encode() if isinstance(key, str) else bytes(key)
    if len(raw) < _MIN_KEY_CHARS:
        raise ValueError(
            f"{where}: a deployment key has at least {_MIN_KEY_CHARS} characters; "
            "make one with: python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return raw


def deployment_key() -> bytes:
    """The key labels are made with (found once per process, see the module docstring)."""
    key = _key[0]
    if key is not None:
        return key
    with _lock:
        key = _key[0]
        if key is None:
            env = os.environ.get(ENV_KEY)
            key = _key[0] = _checked(env, ENV_KEY) if env else _file_key()
        return key


def _file_key() -> bytes:
    from promptcache.tiers.sqlite import default_cache_dir

    try:
        path = default_cache_dir() / _KEY_FILE
        return _read_or_make(path)
    except (OSError, ValueError) as exc:
        # An unusable cache directory is one fault, warned about once by the store that meets it
        # (issue 19, item 6), and a local store shares nothing with other processes anyway: info
        # level here. A Redis store, shared, warns when it opens (key_is_per_process). A bad key
        # file is warned about.
        _own[0] = True
        level = logging.INFO if isinstance(exc, OSError) else logging.WARNING
        log.log(
            level,
            "no shareable tenant key (%s, %s): this process labels tenants with a key of its own; "
            "set %s to share entries between processes",
            _KEY_FILE,
            type(exc).__name__,
            ENV_KEY,
        )
        return secrets.token_bytes(32)


def _read_or_make(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then linked into place: a process racing this
        # one either links first (and this one reads its key) or reads a complete file.
        tmp = path.with_name(f".{_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            with contextlib.suppress(FileExistsError):  # another process linked its key first
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    text = path.read_text().strip()
    return _checked(text, str(path))


def key_is_per_process() -> bool:
    """Whether tenant labels are made with a key of this process alone: entries it writes to a
    store shared with other processes are then refused there as another tenant's."""
    deployment_key()
    return _own[0]


def tenant_label(tenant: str) -> str:
    """``t_`` and 32 hex digits of HMAC-SHA256(deployment key, ``tenant``): never the tenant itself."""
    return _label(deployment_key(), tenant)


@lru_cache(maxsize=4096)
def _label(key: bytes, tenant: str) -> str:
    return "t_" + hmac.new(key, tenant.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]
