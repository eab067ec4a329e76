"""L2 Redis: shared across a fleet; standalone, TLS, Cluster or Sentinel; sync and asyncio.

URLs
----
``redis://[:pw@]host:port/db``, ``rediss://`` (TLS), ``unix://``;
``redis+cluster://host:port[,host:port...]`` (or ``rediss+cluster://``, or any
``redis://`` URL with ``cluster=True``); ``redis+sentinel://[:pw@]host:port[,host:port...]/service[/db]``.
An existing ``redis.Redis``/``RedisCluster`` (and optionally its asyncio twin)
can be passed instead.

Key layout (``ns`` defaults to ``pc``)
--------------------------------------
* ``ns:{bNN}:e:<key>`` a HASH: ``d`` = the encoded :class:`Entry`,
  ``t`` = its tags, newline-separated;
* ``ns:{bNN}:g`` a HASH: tag → generation, one copy per bucket;
* ``ns:clock`` the counter new generations are drawn from.

``NN`` is the key's bucket (CRC32 mod ``buckets``). The ``{bNN}`` hash tag puts an
entry and the generations it is checked against in the same cluster slot, so one
Lua call reads the entry *and* its tags' current generations atomically, on a
single node, in one round trip. Invalidation draws a new generation from
``ns:clock`` and raises the tag to it in every bucket (pipelined; rare). Multi-gets
are one pipeline of those Lua calls (cluster pipelines split it per node).

Timeouts: ``socket_timeout`` and ``socket_connect_timeout`` default to 250 ms and
redis-py's own retries are off, so a paused or dead server costs one bounded
wait and a :class:`TierError`, which the router counts as ``tier_skipped``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from promptcache.tiers.base import StatsCounter, TierError, TierStats
from promptcache.tiers.entry import Entry, decode_entry, encode_entry, key_digest

__all__ = ["RedisStore", "connect_async", "connect_sync"]

log = logging.getLogger("promptcache.tiers")

_GET_LUA = """
local r = redis.call('HMGET', KEYS[1], 'd', 't')
if not r[1] then return false end
if (not r[2]) or r[2] == '' then return {r[1], ''} end
local tags = {}
for t in string.gmatch(r[2], '[^\\n]+') do tags[#tags + 1] = t end
local g = redis.call('HMGET', KEYS[2], unpack(tags))
local out = {r[1], r[2]}
for i = 1, #tags do out[i + 2] = g[i] or '0' end
return out
"""

_MGET_LUA = """
local n = #KEYS / 2
local out = {}
for i = 1, n do
  local r = redis.call('HMGET', KEYS[i], 'd', 't')
  local gs = ''
  if r[1] and r[2] and r[2] ~= '' then
    local tags = {}
    for t in string.gmatch(r[2], '[^\\n]+') do tags[#tags + 1] = t end
    local g = redis.call('HMGET', KEYS[n + i], unpack(tags))
    for j = 1, #tags do g[j] = g[j] or '0' end
    gs = table.concat(g, ',')
  end
  out[#out + 1] = r[1]
  out[#out + 1] = r[2] or ''
  out[#out + 1] = gs
end
return out
"""

_PUT_LUA = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'd', ARGV[1], 't', ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""

_RAISE_LUA = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
if cur < new then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""

_EXPIRY_SLACK_MS = 5_000  # Redis expiry only reclaims space; the entry's own expiry decides


def _sha1(src: str) -> str:
    import hashlib

    return hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest()


_SCRIPTS = {
    name: (src, _sha1(src))
    for name, src in (
        ("get", _GET_LUA),
        ("mget", _MGET_LUA),
        ("put", _PUT_LUA),
        ("raise", _RAISE_LUA),
    )
}


def _no_script_error() -> type[Exception]:
    from redis.exceptions import NoScriptError

    return NoScriptError


def _hosts(netloc: str) -> tuple[str | None, list[tuple[str, int]]]:
    password = None
    if "@" in netloc:
        cred, netloc = netloc.rsplit("@", 1)
        password = unquote(cred.split(":", 1)[1] if ":" in cred else cred) or None
    hosts = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":")
        hosts.append((host.strip("[]") or "localhost", int(port or 6379)) if host else (part, 6379))
    return password, hosts


def _no_retry() -> Any:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def connect_sync(
    url: str, *, cluster: bool = False, socket_timeout: float = 0.25, connect_timeout: float = 0.25
) -> Any:
    """A sync client (``redis.Redis``/``RedisCluster``/Sentinel master) for ``url``."""
    import redis
    from redis import cluster as _cluster
    from redis import sentinel as _sentinel

    # parts of redis-py are untyped: keep them behind Any
    ClusterNode: Any = _cluster.ClusterNode
    RedisCluster: Any = _cluster.RedisCluster
    Sentinel: Any = _sentinel.Sentinel

    opts: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": _no_retry(),
    }
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("redis+cluster", "rediss+cluster"):
        password, hosts = _hosts(parts.netloc)
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in hosts],
            password=password,
            ssl=scheme.startswith("rediss"),
            **opts,
        )
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        password, hosts = _hosts(parts.netloc)
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("a sentinel URL names the service: redis+sentinel://host:port/service")
        sentinel = Sentinel(hosts, sentinel_kwargs={"socket_timeout": socket_timeout}, **opts)
        return sentinel.master_for(
            path[0],
            password=password,
            db=int(path[1]) if len(path) > 1 else 0,
            ssl=scheme.startswith("rediss"),
        )
    if cluster:
        return RedisCluster.from_url(url, **opts)
    return redis.Redis.from_url(url, **opts)


def connect_async(
    url: str, *, cluster: bool = False, socket_timeout: float = 0.25, connect_timeout: float = 0.25
) -> Any:
    """The ``redis.asyncio`` twin of :func:`connect_sync`."""
    import redis.asyncio as aredis
    from redis.asyncio import cluster as _cluster
    from redis.asyncio import sentinel as _sentinel

    ClusterNode: Any = _cluster.ClusterNode
    RedisCluster: Any = _cluster.RedisCluster
    Sentinel: Any = _sentinel.Sentinel

    opts: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": _no_retry(),
    }
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("redis+cluster", "rediss+cluster"):
        password, hosts = _hosts(parts.netloc)
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in hosts],
            password=password,
            ssl=scheme.startswith("rediss"),
            **opts,
        )
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        password, hosts = _hosts(parts.netloc)
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("a sentinel URL names the service: redis+sentinel://host:port/service")
        sentinel = Sentinel(hosts, sentinel_kwargs={"socket_timeout": socket_timeout}, **opts)
        return sentinel.master_for(
            path[0],
            password=password,
            db=int(path[1]) if len(path) > 1 else 0,
            ssl=scheme.startswith("rediss"),
        )
    if cluster:
        return RedisCluster.from_url(url, **opts)
    return aredis.Redis.from_url(url, **opts)


class RedisStore:
    """The Redis L2 (see the module docstring for URLs, key layout and timeouts)."""

    name = "redis"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        async_client: Any = None,
        cluster: bool = False,
        namespace: str = "pc",
        buckets: int = 16,
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Connect lazily to ``url`` (or wrap ``client``/``async_client``)."""
        if url is None and client is None and async_client is None:
            raise ValueError("give a Redis URL or a client")
        if not 1 <= buckets <= 1024:
            raise ValueError("buckets must be 1..1024")
        self.url = url
        self.cluster = cluster or (url is not None and "+cluster" in url.split("://", 1)[0])
        self.namespace = namespace
        self.buckets = buckets
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self._clock = clock
        self._client = client
        self._aclients: dict[int, Any] = {}
        if async_client is not None:
            self._given_async: Any = async_client
        else:
            self._given_async = None
        self._stats = StatsCounter()
        self._bucket_keys = [f"{namespace}:{{b{i:02d}}}" for i in range(buckets)]

    # clients -----------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The sync client (created on first use)."""
        if self._client is None:
            if self.url is None:
                raise TierError("no sync Redis client configured")
            self._client = connect_sync(
                self.url,
                cluster=self.cluster,
                socket_timeout=self.socket_timeout,
                connect_timeout=self.connect_timeout,
            )
        return self._client

    def _aclient(self) -> Any:
        if self._given_async is not None:
            return self._given_async
        # asyncio connections belong to the loop that opened them: one client per loop
        loop_id = id(asyncio.get_running_loop())
        c = self._aclients.get(loop_id)
        if c is None:
            if self.url is None:
                raise TierError("no asyncio Redis client configured")
            c = connect_async(
                self.url,
                cluster=self.cluster,
                socket_timeout=self.socket_timeout,
                connect_timeout=self.connect_timeout,
            )
            self._aclients[loop_id] = c
        return c

    # layout ------------------------------------------------------------------

    def _bucket(self, key: str) -> str:
        return self._bucket_keys[zlib.crc32(key.encode()) % self.buckets]

    def entry_key(self, key: str) -> str:
        """The Redis key holding ``key``'s entry."""
        return f"{self._bucket(key)}:e:{key}"

    def _gens_key(self, key: str) -> str:
        return f"{self._bucket(key)}:g"

    @property
    def _clock_key(self) -> str:
        return f"{self.namespace}:clock"

    # decoding ----------------------------------------------------------------

    def _parse(self, key: str, reply: Any, now: float) -> Entry | None:
        if not reply:
            return None
        data, tagfield, *gens = reply
        entry = decode_entry(data)
        if entry is None or entry.key != key:
            self._stats.add("corrupt")
            log.debug("redis: unreadable entry %s", key_digest(key))
            return None
        names = tagfield.decode().split("\n") if tagfield else []
        tags = entry.tags
        if len(names) != len(tags) or len(gens) != len(names) or not all(n in tags for n in names):
            self._stats.add("corrupt")
            return None
        if entry.dead_at(now):
            return None
        for n, g in zip(names, gens, strict=True):
            if tags[n] != int(g):
                self._stats.add("stale")
                return None
        return entry

    _MGET_CHUNK = 256

    def _mget_groups(self, keys: list[str]) -> tuple[list[tuple[str, list[str], list[Any]]], list[list[str]]]:
        # standalone: any keys may share a script call; cluster: only keys of one bucket (one slot)
        by_group: dict[str, list[str]] = {}
        for k in keys:
            by_group.setdefault(self._bucket(k) if self.cluster else "", []).append(k)
        calls: list[tuple[str, list[str], list[Any]]] = []
        chunks: list[list[str]] = []
        for group in by_group.values():
            for i in range(0, len(group), self._MGET_CHUNK):
                chunk = group[i : i + self._MGET_CHUNK]
                rkeys = [self.entry_key(k) for k in chunk] + [self._gens_key(k) for k in chunk]
                calls.append(("mget", rkeys, []))
                chunks.append(chunk)
        return calls, chunks

    def _mget_collect(self, chunks: list[list[str]], replies: list[Any]) -> dict[str, Entry]:
        now = self._clock()
        out: dict[str, Entry] = {}
        asked = 0
        for chunk, reply in zip(chunks, replies, strict=True):
            asked += len(chunk)
            for i, k in enumerate(chunk):
                data, tagfield, gens = reply[3 * i : 3 * i + 3]
                if data is None:
                    continue
                parts = [data, tagfield, *(gens.split(b",") if gens else [])]
                e = self._parse(k, parts, now)
                if e is not None:
                    out[k] = e
        self._count(asked, len(out))
        self._stats.add("bytes_read", sum(e.size for e in out.values()))
        return out

    def _count(self, asked: int, found: int) -> None:
        self._stats.add("hits", found)
        self._stats.add("misses", asked - found)

    def _fail(self, exc: BaseException, what: str) -> TierError:
        self._stats.add("errors")
        log.warning("redis %s failed: %s", what, type(exc).__name__)
        return TierError(f"redis {what} failed: {type(exc).__name__}: {exc}")

    def _put_args(self, entry: Entry, now: float) -> tuple[list[str], list[Any]] | None:
        retain = entry.retain_until()
        ttl_ms = 0
        if retain is not None:
            left = retain - now
            if left <= 0:
                return None
            ttl_ms = int(left * 1000) + _EXPIRY_SLACK_MS
        data = encode_entry(entry)
        self._stats.add("bytes_written", len(data))
        return [self.entry_key(entry.key)], [data, "\n".join(sorted(entry.tags)), ttl_ms]

    # sync --------------------------------------------------------------------

    def _run_pipeline(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        from redis.exceptions import NoScriptError

        for attempt in (0, 1):
            pipe = self.client.pipeline(transaction=False)
            for script, keys, args in calls:
                pipe.execute_command("EVALSHA", _SCRIPTS[script][1], len(keys), *keys, *args)
            results: list[Any] = pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                self._load_scripts()
                continue
            for r in results:
                if isinstance(r, Exception):
                    raise r
            return results
        raise AssertionError("unreachable")

    def _load_scripts(self) -> None:
        for src, _ in _SCRIPTS.values():
            self.client.script_load(src)

    def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """Live entries among ``keys``: one round trip, one Lua call per bucket group."""
        uniq = list(dict.fromkeys(keys))
        if not uniq:
            return {}
        calls, chunks = self._mget_groups(uniq)
        try:
            replies = self._run_pipeline(calls)
        except Exception as exc:
            raise self._fail(exc, "get") from exc
        return self._mget_collect(chunks, replies)

    def get(self, key: str) -> Entry | None:
        """The live entry under ``key``, or ``None`` (one EVALSHA: entry and generations)."""
        bucket = self._bucket(key)
        args = ("EVALSHA", _SCRIPTS["get"][1], 2, f"{bucket}:e:{key}", f"{bucket}:g")
        client = self.client
        try:
            try:
                reply = client.execute_command(*args)
            except _no_script_error():
                self._load_scripts()
                reply = client.execute_command(*args)
        except Exception as exc:
            raise self._fail(exc, "get") from exc
        e = self._parse(key, reply, self._clock())
        if e is None:
            self._stats.add("misses")
        else:
            self._stats.add("hits")
            self._stats.add("bytes_read", e.size)
        return e

    def put(self, entry: Entry) -> None:
        """Write ``entry`` (entry and tag field atomically, with a Redis TTL for reclaim)."""
        args = self._put_args(entry, self._clock())
        if args is None:
            return
        try:
            self._run_pipeline([("put", *args)])
        except Exception as exc:
            raise self._fail(exc, "put") from exc

    def put_raw(self, key: str, data: bytes, tags: Sequence[str] = ()) -> None:
        """Store raw bytes as ``key``'s entry (diagnostics and tests of unreadable entries)."""
        self.client.hset(self.entry_key(key), mapping={"d": data, "t": "\n".join(tags)})

    def delete(self, key: str) -> None:
        """Remove ``key``."""
        try:
            self.client.delete(self.entry_key(key))
        except Exception as exc:
            raise self._fail(exc, "delete") from exc

    def tag_generations(self, tags: Sequence[str]) -> dict[str, int]:
        """Current generations (read from bucket 0; all buckets agree after each invalidation)."""
        if not tags:
            return {}
        try:
            vals = self.client.hmget(f"{self._bucket_keys[0]}:g", list(tags))
        except Exception as exc:
            raise self._fail(exc, "tag_generations") from exc
        return {t: int(v or 0) for t, v in zip(tags, vals, strict=True)}

    def invalidate_tag(self, tag: str) -> int:
        """Draw a new generation and raise ``tag`` to it in every bucket."""
        try:
            gen = int(self.client.incr(self._clock_key))
            self._run_pipeline([("raise", [f"{b}:g"], [tag, gen]) for b in self._bucket_keys])
        except Exception as exc:
            raise self._fail(exc, "invalidate") from exc
        return gen

    def stats(self) -> TierStats:
        """A snapshot of the counters."""
        return self._stats.snapshot()

    def close(self) -> None:
        """Close the sync client's connections."""
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                log.debug("closing redis client failed", exc_info=True)
            self._client = None

    # asyncio -----------------------------------------------------------------

    async def _arun_pipeline(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        from redis.exceptions import NoScriptError

        client = self._aclient()
        for attempt in (0, 1):
            pipe = client.pipeline(transaction=False)
            for script, keys, args in calls:
                pipe.execute_command("EVALSHA", _SCRIPTS[script][1], len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                for src, _ in _SCRIPTS.values():
                    await client.script_load(src)
                continue
            for r in results:
                if isinstance(r, Exception):
                    raise r
            return results
        raise AssertionError("unreachable")

    async def aget_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """See :meth:`get_many`."""
        uniq = list(dict.fromkeys(keys))
        if not uniq:
            return {}
        calls, chunks = self._mget_groups(uniq)
        try:
            replies = await self._arun_pipeline(calls)
        except Exception as exc:
            raise self._fail(exc, "get") from exc
        return self._mget_collect(chunks, replies)

    async def aget(self, key: str) -> Entry | None:
        """See :meth:`get`."""
        return (await self.aget_many([key])).get(key)

    async def aput(self, entry: Entry) -> None:
        """See :meth:`put`."""
        args = self._put_args(entry, self._clock())
        if args is None:
            return
        try:
            await self._arun_pipeline([("put", *args)])
        except Exception as exc:
            raise self._fail(exc, "put") from exc

    async def adelete(self, key: str) -> None:
        """See :meth:`delete`."""
        try:
            await self._aclient().delete(self.entry_key(key))
        except Exception as exc:
            raise self._fail(exc, "delete") from exc

    async def atag_generations(self, tags: Sequence[str]) -> dict[str, int]:
        """See :meth:`tag_generations`."""
        if not tags:
            return {}
        try:
            vals = await self._aclient().hmget(f"{self._bucket_keys[0]}:g", list(tags))
        except Exception as exc:
            raise self._fail(exc, "tag_generations") from exc
        return {t: int(v or 0) for t, v in zip(tags, vals, strict=True)}

    async def ainvalidate_tag(self, tag: str) -> int:
        """See :meth:`invalidate_tag`."""
        try:
            gen = int(await self._aclient().incr(self._clock_key))
            await self._arun_pipeline([("raise", [f"{b}:g"], [tag, gen]) for b in self._bucket_keys])
        except Exception as exc:
            raise self._fail(exc, "invalidate") from exc
        return gen

    async def aclose(self) -> None:
        """Close the asyncio client of the running loop (and the sync client)."""
        clients = [self._given_async] if self._given_async is not None else []
        clients += list(self._aclients.values())
        self._aclients.clear()
        for c in clients:
            try:
                await c.aclose()
            except Exception:
                log.debug("closing asyncio redis client failed", exc_info=True)
        self.close()
