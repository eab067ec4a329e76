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
* ``ns:{bNN}:e:<key>`` a STRING: the encoded :class:`Entry` (with a Redis TTL
  when the entry has one);
* ``ns:{bNN}:t:<tag>`` a SET: the entry keys of bucket ``NN`` written with ``tag``;
* ``ns:{bNN}:g`` a HASH: tag → generation, one copy per bucket; bucket 0's also
  holds the store epoch under a field no tag can have (a newline, then ``epoch``);
* ``ns:{bNN}:gt`` a ZSET: tag → when it was last invalidated (ms), to clean ``g`` up;
* ``ns:clock`` the counter new generations are drawn from;
* ``ns:tagkey`` the random key tag names are computed with (created by the first process
  that needs it; see :mod:`promptcache.tagnames`).

Tags arrive as stored names (a readable prefix and a keyed digest): no tag value is ever
part of a Redis key name. The process that creates ``ns:tagkey`` sweeps, best effort, what
an earlier version named in clear (tag sets with their entries, generation fields).

The store epoch is a random id written on first use and written anew whenever a
generation read finds it missing: ``FLUSHDB``, a restart without persistence, or an
eviction of that hash reset the counters, and the new epoch tells every process so
(see :mod:`promptcache.invalidation`). It is written and read with the generations,
in one round trip.

``NN`` is the key's bucket (CRC32 mod ``buckets``). The ``{bNN}`` hash tag keeps
an entry, its bucket's tag sets and its bucket's generations in one cluster
slot, so each Lua call below runs on a single node, atomically.

A read is one plain ``GET`` (a multi-get one ``MGET`` per bucket group): the
tag work is done by writes and invalidations instead, which keeps this
invariant — *an entry is in Redis only while every one of its tags is still at
the generation the entry records*:

* a tagged put is one script that writes the entry, and adds it to each tag's
  set, only if every tag's generation in the bucket equals the one the value
  was computed under; otherwise it deletes the key and writes nothing (the old
  value must not outlive a replacement that lost a race). So a value computed
  before an invalidation can never land after it. An untagged put is a plain
  ``SET``;
* ``invalidate_tag`` draws a new generation from ``ns:clock`` and, in each
  bucket, one script raises the tag's generation and empties the tag's set,
  deleting each member whose entry still carries the tag (in batches of
  ``_DRAIN_BATCH``, repeated until the set is empty). A put in a bucket runs
  either before that script (and is deleted by it) or after (and is refused),
  so once ``invalidate_tag`` returns no entry written under an older
  generation exists anywhere.

Set members go stale when an entry expires, is deleted, or is rewritten
without the tag. Each tagged put drops up to two dead members it samples; an
invalidation reads the head of each member's entry and spares one rewritten
without the tag (anything it cannot parse, it deletes: a miss, never a stale
read). A tag set expires with its longest-lived member: each tagged put extends
the set's TTL to the entry's (and a member without TTL makes the set persistent), so
when every entry of a tag has expired its set goes too. The generation hashes carry
no Redis TTL; each invalidation also deletes, in every bucket, up to ``_TIDY_BATCH``
generations of tags not invalidated for ``tag_retention_s`` that have no entry left in the
bucket (a value computed before such an invalidation and written more than
``tag_retention_s`` later could be stored again: the retention bounds how late a write may
land). Under a
``volatile-*`` (or ``noeviction``) ``maxmemory-policy`` Redis never evicts a hash;
an ``allkeys-*`` policy could evict a tag set and with it the record of which
entries an invalidation must delete.

An entry left in the previous layout (a HASH under the same name) reads as a
counted miss (``corrupt``; a multi-get's ``MGET`` just sees no string there) and
is replaced by the next write of its key. Run one version of promptcache per
namespace: an older process reads this layout as errors (a skipped tier) and
its invalidations raise generations without deleting these entries.

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

import orjson

from promptcache.invalidation import Generations, new_epoch
from promptcache.pseudonym import ENV_KEY, key_is_per_process
from promptcache.tiers._async.redis import EPOCH_FIELD, AsyncRedisOps, Command
from promptcache.tiers._sync.redis import SyncRedisOps
from promptcache.tiers.base import DEFAULT_TAG_RETENTION_S, StatsCounter, TierError, TierStats
from promptcache.tiers.entry import Entry, decode_entry, encode_entry, key_digest

__all__ = ["RedisStore", "connect_async", "connect_sync"]

log = logging.getLogger("promptcache.tiers")
#: Whether the per-process tenant key was warned about (once per process).
_warned_own_key: list[bool] = []

# KEYS: the entry, its bucket's generations, one tag set per tag (same bucket, so one slot);
# ARGV: the encoded entry, its TTL in ms (0: none), the n tag names, then their n generations.
# Returns 1 if written, 0 if a tag moved on (the key is then deleted: a stale value must not
# stand in for the one that replaced it, nor the old value outlive its replacement).
_PUT_LUA = """
local n = #KEYS - 2
local names = {}
for i = 1, n do names[i] = ARGV[2 + i] end
local cur = redis.call('HMGET', KEYS[2], unpack(names))
for i = 1, n do
  if tonumber(cur[i] or '0') ~= tonumber(ARGV[2 + n + i]) then
    redis.call('UNLINK', KEYS[1])
    return 0
  end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
for i = 3, #KEYS do
  local existed = redis.call('EXISTS', KEYS[i])
  redis.call('SADD', KEYS[i], KEYS[1])
  if ttl > 0 then
    -- the set lives as long as its longest-lived member (a persistent set stays so)
    local left = redis.call('PTTL', KEYS[i])
    if existed == 0 or (left >= 0 and left < ttl) then redis.call('PEXPIRE', KEYS[i], ttl) end
  else
    redis.call('PERSIST', KEYS[i])
  end
  for _, m in ipairs(redis.call('SRANDMEMBER', KEYS[i], 2)) do
    if redis.call('EXISTS', m) == 0 then redis.call('SREM', KEYS[i], m) end
  end
end
return 1
"""

# KEYS: one bucket's generations and the tag's set there; ARGV: the tag, the new generation,
# how many members to take, and the tag as the entry header spells it after '{' and after ','.
# Returns how many members are left. A member is deleted unless its header shows, for certain,
# tags without this one (it was rewritten since): anything unexpected is deleted.
_INVALIDATE_LUA = """
local function carries_tag(k)
  local v = redis.pcall('GETRANGE', k, 0, 2047)
  if type(v) ~= 'string' or #v < 8 or string.sub(v, 1, 3) ~= 'PCE' then return true end
  local a, b, c, d = string.byte(v, 5, 8)
  local stop = 8 + ((a * 256 + b) * 256 + c) * 256 + d
  if stop > #v then v = redis.call('GETRANGE', k, 0, stop - 1) end
  local from = string.find(v, ',"tags":{', 9, true)
  if not from then return true end
  local to = string.find(v, '},"created_at":', from, true)
  if not to or to > stop then return true end
  local tags = string.sub(v, from + 8, to)
  return string.find(tags, ARGV[4], 1, true) ~= nil or string.find(tags, ARGV[5], 1, true) ~= nil
end
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if cur < tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
for _, k in ipairs(redis.call('SPOP', KEYS[2], tonumber(ARGV[3]))) do
  if carries_tag(k) then redis.call('UNLINK', k) end
end
return redis.call('SCARD', KEYS[2])
"""

# KEYS: one bucket's generations and its record of when each tag was last invalidated (a
# sorted set, same bucket); ARGV: the cutoff (ms), how many to look at, the bucket's tag-set
# prefix, now (ms). A generation not moved since the cutoff whose tag has no set left in the
# bucket (no live entry) is deleted; one whose tag still has entries is looked at again later.
_TIDY_LUA = """
local n = 0
for _, tag in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))) do
  if redis.call('EXISTS', ARGV[3] .. tag) == 0 then
    redis.call('HDEL', KEYS[1], tag)
    redis.call('ZREM', KEYS[2], tag)
    n = n + 1
  else
    redis.call('ZADD', KEYS[2], ARGV[4], tag)
  end
end
return n
"""

_EXPIRY_SLACK_MS = 5_000  # Redis expiry only reclaims space; the entry's own expiry decides
_DRAIN_BATCH = 1_000  # set members handled per script call: bounds how long one call blocks Redis
_TIDY_BATCH = 100  # generations looked at per bucket and invalidation: the clean-up keeps pace
_MGET_CHUNK = 256


def _sha1(src: str) -> str:
    import hashlib

    return hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest()


_SCRIPTS = {
    name: (src, _sha1(src))
    for name, src in (("put", _PUT_LUA), ("invalidate", _INVALIDATE_LUA), ("tidy", _TIDY_LUA))
}
_PUT_SHA = _SCRIPTS["put"][1]
_INVALIDATE_SHA = _SCRIPTS["invalidate"][1]
_TIDY_SHA = _SCRIPTS["tidy"][1]
_OLD_LAYOUT = object()  # what a GET of a previous-layout (HASH) entry reads as


def _wrong_type(exc: BaseException) -> bool:
    # redis-py is imported lazily: match the reply, not the class
    return type(exc).__name__ == "ResponseError" and str(exc).startswith("WRONGTYPE")


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

    return _connect(
        url,
        (redis.Redis, _cluster.RedisCluster, _cluster.ClusterNode, _sentinel.Sentinel),
        cluster=cluster,
        socket_timeout=socket_timeout,
        connect_timeout=connect_timeout,
    )


def connect_async(
    url: str, *, cluster: bool = False, socket_timeout: float = 0.25, connect_timeout: float = 0.25
) -> Any:
    """The ``redis.asyncio`` twin of :func:`connect_sync`."""
    import redis.asyncio as aredis
    from redis.asyncio import cluster as _cluster
    from redis.asyncio import sentinel as _sentinel

    return _connect(
        url,
        (aredis.Redis, _cluster.RedisCluster, _cluster.ClusterNode, _sentinel.Sentinel),
        cluster=cluster,
        socket_timeout=socket_timeout,
        connect_timeout=connect_timeout,
    )


def _connect(
    url: str,
    classes: tuple[Any, Any, Any, Any],
    *,
    cluster: bool,
    socket_timeout: float,
    connect_timeout: float,
) -> Any:
    # One URL grammar for both client families; only the classes differ (and parts of
    # redis-py are untyped, hence Any).
    Redis, RedisCluster, ClusterNode, Sentinel = classes
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
    return Redis.from_url(url, **opts)


class RedisStore(SyncRedisOps, AsyncRedisOps):
    """The Redis L2 (see the module docstring for URLs, key layout and timeouts).

    Its store operations are written once (``_async/redis.py``, :class:`AsyncRedisOps`) and
    the sync ones generated from them (:class:`SyncRedisOps`, scripts/gen_sync.py); this class
    holds what both share: clients, layout, the commands to send and how to read the replies.
    """

    name = "redis"
    lua = tuple(src for src, _ in _SCRIPTS.values())

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
        tag_retention_s: float = DEFAULT_TAG_RETENTION_S,
    ) -> None:
        """Connect lazily to ``url`` (or wrap ``client``/``async_client``).

        ``tag_retention_s``: how long the generation of a tag without entries is kept after its
        last invalidation (see :data:`~promptcache.tiers.base.DEFAULT_TAG_RETENTION_S`).
        """
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
        self.tag_retention_s = tag_retention_s
        self._client = client
        self._aclients: dict[int, Any] = {}
        self._given_async: Any = async_client
        self._stats = StatsCounter()
        self._bucket_keys = [f"{namespace}:{{b{i:02d}}}" for i in range(buckets)]
        if key_is_per_process() and not _warned_own_key:
            _warned_own_key.append(True)
            log.warning(
                "tenant labels use a key of this process alone (no %s, no readable tenant.key): "
                "other processes sharing this Redis store will not read its entries; set %s",
                ENV_KEY,
                ENV_KEY,
            )

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

    def _sclient(self) -> Any:
        return self.client

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

    def tag_set_key(self, bucket: int, tag: str) -> str:
        """The Redis key of the set of bucket ``bucket``'s entries written with ``tag``."""
        return f"{self._bucket_keys[bucket]}:t:{tag}"

    @property
    def _clock_key(self) -> str:
        return f"{self.namespace}:clock"

    @property
    def _tag_key_key(self) -> str:
        return f"{self.namespace}:tagkey"

    # commands ----------------------------------------------------------------

    def _put_command(self, entry: Entry) -> Command | None:
        """The one command that writes ``entry``; ``None`` if it is already past keeping."""
        retain = entry.retain_until()
        ttl_ms = 0
        if retain is not None:
            left = retain - self._clock()
            if left <= 0:
                return None
            ttl_ms = int(left * 1000) + _EXPIRY_SLACK_MS
        data = encode_entry(entry)
        self._stats.add("bytes_written", len(data))
        bucket = self._bucket(entry.key)
        ekey = f"{bucket}:e:{entry.key}"
        if not entry.tags:
            return ("SET", ekey, data, "PX", ttl_ms) if ttl_ms else ("SET", ekey, data)
        names = sorted(entry.tags)
        keys = [ekey, f"{bucket}:g", *(f"{bucket}:t:{t}" for t in names)]
        gens = [entry.tags[t] for t in names]
        return ("EVALSHA", _PUT_SHA, len(keys), *keys, data, ttl_ms, *names, *gens)

    def _drain_commands(self, tag: str, gen: int, buckets: Sequence[int]) -> list[Command]:
        # the tag as encode_entry writes it among an entry's tags: first, or after another one
        name = orjson.dumps(tag) + b":"
        args = (tag, gen, _DRAIN_BATCH, b"{" + name, b"," + name)
        return [
            ("EVALSHA", _INVALIDATE_SHA, 2, f"{self._bucket_keys[b]}:g", self.tag_set_key(b, tag), *args)
            for b in buckets
        ]

    def _generations_commands(self, tags: Sequence[str]) -> list[Command]:
        # HSETNX writes an epoch only where there is none; HMGET reads it with the generations
        gens = f"{self._bucket_keys[0]}:g"
        return [("HSETNX", gens, EPOCH_FIELD, new_epoch()), ("HMGET", gens, EPOCH_FIELD, *tags)]

    def _generations_read(self, tags: Sequence[str], replies: list[Any]) -> Generations:
        epoch, *vals = replies[1]
        text = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        return Generations({t: int(v or 0) for t, v in zip(tags, vals, strict=True)}, epoch=text)

    def _tidy_commands(self, tag: str) -> list[Command]:
        """Record when ``tag`` was invalidated, in every bucket, and clean up old generations there."""
        now_ms = int(self._clock() * 1000)
        cutoff_ms = now_ms - int(self.tag_retention_s * 1000)
        out: list[Command] = []
        for b in self._bucket_keys:
            out.append(("ZADD", f"{b}:gt", now_ms, tag))
            out.append(
                ("EVALSHA", _TIDY_SHA, 2, f"{b}:g", f"{b}:gt", cutoff_ms, _TIDY_BATCH, f"{b}:t:", now_ms)
            )
        return out

    def _mget_commands(self, keys: list[str]) -> tuple[list[Command], list[list[str]]]:
        # standalone: one MGET may hold any keys; cluster: only keys of one bucket (one slot)
        by_group: dict[str, list[str]] = {}
        for k in keys:
            by_group.setdefault(self._bucket(k) if self.cluster else "", []).append(k)
        chunks = [g[i : i + _MGET_CHUNK] for g in by_group.values() for i in range(0, len(g), _MGET_CHUNK)]
        return [("MGET", *map(self.entry_key, chunk)) for chunk in chunks], chunks

    # replies -----------------------------------------------------------------

    def _live(self, key: str, data: Any, now: float) -> Entry | None:
        """The entry in a GET reply if it is ours, whole, under ``key`` and not dead.

        Counts only the unreadable ones (``corrupt``); hits and misses are the caller's.
        """
        entry = None if data is _OLD_LAYOUT else decode_entry(data)
        if entry is None or entry.key != key:
            self._stats.add("corrupt")
            log.debug("redis: unreadable entry %s", key_digest(key))
            return None
        return None if entry.dead_at(now) else entry

    def _one(self, key: str, data: Any) -> Entry | None:
        if data is None:
            self._stats.add("misses")
            return None
        entry = self._live(key, data, self._clock())
        if entry is None:
            self._stats.add("misses")
            return None
        self._stats.add("hits")
        self._stats.add("bytes_read", entry.size)
        return entry

    def _collect(self, chunks: list[list[str]], replies: list[Any]) -> dict[str, Entry]:
        now = self._clock()
        out: dict[str, Entry] = {}
        asked = 0
        for chunk, values in zip(chunks, replies, strict=True):
            asked += len(chunk)
            for k, data in zip(chunk, values, strict=True):
                if data is not None:
                    e = self._live(k, data, now)
                    if e is not None:
                        out[k] = e
        self._stats.add("hits", len(out))
        self._stats.add("misses", asked - len(out))
        self._stats.add("bytes_read", sum(e.size for e in out.values()))
        return out

    def _get_failed(self, exc: Exception) -> object:
        if _wrong_type(exc):
            return _OLD_LAYOUT
        raise self._fail(exc, "get") from exc

    def _fail(self, exc: BaseException, what: str) -> TierError:
        self._stats.add("errors")
        log.warning("redis %s failed: %s", what, type(exc).__name__)
        return TierError(f"redis {what} failed: {type(exc).__name__}: {exc}")

    def _put_done(self, reply: Any) -> None:
        if reply == 0:  # a tag moved on while the value was computed: refused, old value deleted
            self._stats.add("stale")

    def put_raw(self, key: str, data: bytes) -> None:
        """Store raw bytes as ``key``'s entry (diagnostics and tests of unreadable entries)."""
        self.client.set(self.entry_key(key), data)

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
