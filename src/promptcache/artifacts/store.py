"""``open_store``: one place that turns what a user passes as ``store=`` into a :class:`TieredStore`.

=============================================  ===========================================
``None``                                       L1 + embedded SQLite + file blobs in the
                                               documented cache dir (``default_cache_dir``)
a path, ``sqlite:///abs/dir`` or ``file://``   the same, in that directory
``memory://``                                  L1 only (this process alone)
``redis://``, ``rediss://``, ``unix://``       L1 + Redis L2 + Redis pub/sub invalidation
``redis+cluster://``, ``rediss+cluster://``    the same on Redis Cluster
``redis+sentinel://host:port/service[/db]``    the same through Sentinel
a ``TieredStore``                              itself
a sync ``redis.Redis``/``RedisCluster``        L1 + Redis L2 on that client (+ its bus)
=============================================  ===========================================

Extra keyword arguments go to the :class:`TieredStore` constructor (e.g.
``max_staleness_s``, ``keyring``); ``namespace`` and ``blob_dir`` to the Redis forms.

Whatever the form, the store built is the same composition (written out once, in
:func:`promptcache.tiers.router.below_l1`)::

    L1 (MemoryStore)  →  WriteBack → Sealed → BlobOffload(L3 → CircuitBreaker) → CircuitBreaker → L2

with tenancy, tag generations and the invalidation bus kept by :class:`TieredStore`
around it, and the read path (stale-while-revalidate, single-flight) wrapped around
that, in :func:`promptcache.tiers.router.read_through`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from promptcache.invalidation import DEFAULT_MAX_STALENESS_S
from promptcache.tiers.blob import FileBlobStore
from promptcache.tiers.router import TieredStore

__all__ = ["REDIS_SCHEMES", "open_store"]

REDIS_SCHEMES = frozenset(
    {"redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel"}
)


def _is_redis_client(obj: Any) -> bool:
    mod = type(obj).__module__
    return mod.startswith("redis.") and callable(getattr(obj, "publish", None))


def _from_client(client: Any, *, namespace: str, blob_dir: str | Path | None, **kwargs: Any) -> TieredStore:
    from promptcache.invalidation import RedisBus
    from promptcache.tiers.redis import RedisStore

    if type(client).__module__.startswith("redis.asyncio"):
        raise TypeError(
            "open_store needs a sync redis client (the invalidation bus runs in a thread); pass "
            "redis.Redis(...) or a redis:// URL, which gives both sync and asyncio access"
        )
    cluster = type(client).__name__ == "RedisCluster"
    l2 = RedisStore(client=client, cluster=cluster, namespace=namespace)
    staleness = kwargs.get("max_staleness_s", DEFAULT_MAX_STALENESS_S)
    bus = RedisBus(
        client, channel=f"{namespace}:inv", max_staleness_s=staleness, heartbeat_s=min(0.2, staleness / 4)
    )
    l3 = FileBlobStore(blob_dir) if blob_dir is not None else None
    return TieredStore(l2=l2, l3=l3, bus=bus, **kwargs)


def open_store(
    spec: str | Path | TieredStore | Any | None = None,
    *,
    namespace: str = "pc",
    blob_dir: str | Path | None = None,
    **kwargs: Any,
) -> TieredStore:
    """The :class:`TieredStore` for ``spec`` (see the module docstring for the accepted forms).

    Raises ``ValueError`` for an unknown URL scheme, ``TypeError`` for an
    object that is neither a store nor a sync Redis client.
    """
    if isinstance(spec, TieredStore):
        return spec
    if spec is None:
        return TieredStore.default(**kwargs)
    if isinstance(spec, Path):
        return TieredStore.default(spec, **kwargs)
    if isinstance(spec, str):
        parts = urlsplit(spec)
        scheme = parts.scheme.lower()
        if scheme in REDIS_SCHEMES:
            return TieredStore.from_redis(spec, namespace=namespace, blob_dir=blob_dir, **kwargs)
        if scheme == "memory":
            return TieredStore(**kwargs)
        if scheme in ("sqlite", "file"):
            path = unquote(parts.netloc + parts.path)
            if not path:
                raise ValueError(f"{scheme}:// needs a directory, e.g. {scheme}:///var/cache/promptcache")
            return TieredStore.default(path, **kwargs)
        if scheme and len(scheme) > 1:  # "c:" in a Windows path is a drive, not a scheme
            raise ValueError(
                f"unknown store URL scheme {scheme!r}: use redis://, rediss://, redis+cluster://, "
                "redis+sentinel://, sqlite:///dir, memory:// or a directory path"
            )
        return TieredStore.default(spec, **kwargs)
    if _is_redis_client(spec):
        return _from_client(spec, namespace=namespace, blob_dir=blob_dir, **kwargs)
    raise TypeError(
        f"store= takes None, a URL or path, a TieredStore or a sync redis client, not {type(spec).__name__}"
    )
