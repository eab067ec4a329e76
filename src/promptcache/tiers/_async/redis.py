"""The Redis L2's commands, written once.

``tiers/_async/`` holds the source; ``tiers/_sync/`` is generated from it (scripts/gen_sync.py).
:class:`promptcache.tiers.redis.RedisStore` joins both forms and holds everything they share
(layout, commands, replies, counters); see its module for the key layout and the scripts.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Any, Protocol

from promptcache.invalidation import Generations
from promptcache.tiers.base import StatsCounter, TierError
from promptcache.tiers.entry import Entry

__all__ = ["AsyncRedisOps"]

log = logging.getLogger("promptcache.tiers")

Command = tuple[Any, ...]

#: The store epoch's field in bucket 0's generations hash: a tag never holds a newline.
EPOCH_FIELD = "\nepoch"

# A stored tag name (promptcache.tagnames): a kind and 32 hex digits. Anything else in a
# generation hash was written by an earlier version, which kept tags in clear.
_STORED_NAME = re.compile(rb"[A-Za-z][A-Za-z0-9_.-]{0,31}:[0-9a-f]{32}")


def _is_no_script(r: object) -> bool:
    # redis-py is imported lazily: match the reply, not the class
    return type(r).__name__ == "NoScriptError"


class _Core(Protocol):
    """What the commands below need of the store that holds them."""

    buckets: int
    namespace: str
    lua: tuple[str, ...]
    _stats: StatsCounter
    _bucket_keys: list[str]

    @property
    def _clock_key(self) -> str: ...
    @property
    def _tag_key_key(self) -> str: ...

    def _aclient(self) -> Any: ...
    def entry_key(self, key: str) -> str: ...
    def _get_failed(self, exc: Exception) -> object: ...
    def _one(self, key: str, data: Any) -> Entry | None: ...
    def _mget_commands(self, keys: list[str]) -> tuple[list[Command], list[list[str]]]: ...
    def _collect(self, chunks: list[list[str]], replies: list[Any]) -> dict[str, Entry]: ...
    def _fail(self, exc: BaseException, what: str) -> TierError: ...
    def _put_command(self, entry: Entry) -> Command | None: ...
    def _put_done(self, reply: Any) -> None: ...
    def _drain_commands(self, tag: str, gen: int, buckets: Sequence[int]) -> list[Command]: ...
    def _generations_commands(self, tags: Sequence[str]) -> list[Command]: ...
    def _generations_read(self, tags: Sequence[str], replies: list[Any]) -> Generations: ...
    def _tidy_commands(self, tag: str) -> list[Command]: ...
    async def _arun(self, commands: list[Command]) -> list[Any]: ...
    async def _apipeline(self, commands: list[Command]) -> list[Any]: ...
    async def _aload_scripts(self) -> None: ...
    async def _asweep_clear_tags(self) -> None: ...


class AsyncRedisOps:
    """The store operations of the Redis L2, over the client of the running loop."""

    async def _arun(self: _Core, commands: list[Command]) -> list[Any]:
        """Send ``commands`` in one round trip (pipelined when several); load scripts if flushed."""
        client = self._aclient()
        if len(commands) == 1:
            try:
                return [await client.execute_command(*commands[0])]
            except Exception as exc:
                if not _is_no_script(exc):
                    raise
                await self._aload_scripts()
                return [await client.execute_command(*commands[0])]
        results = await self._apipeline(commands)
        retry = [i for i, r in enumerate(results) if _is_no_script(r)]
        if retry:
            await self._aload_scripts()
            for i, r in zip(retry, await self._apipeline([commands[i] for i in retry]), strict=True):
                results[i] = r
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results

    async def _apipeline(self: _Core, commands: list[Command]) -> list[Any]:
        pipe = self._aclient().pipeline(transaction=False)
        for c in commands:
            pipe.execute_command(*c)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    async def _aload_scripts(self: _Core) -> None:
        for src in self.lua:
            await self._aclient().script_load(src)

    async def aget(self: _Core, key: str) -> Entry | None:
        """The live entry under ``key``, or ``None``: one plain ``GET``."""
        try:
            data = await self._aclient().get(self.entry_key(key))
        except Exception as exc:
            data = self._get_failed(exc)
        return self._one(key, data)

    async def aget_many(self: _Core, keys: Sequence[str]) -> dict[str, Entry]:
        """Live entries among ``keys``: one round trip of ``MGET``s (one per bucket on a cluster)."""
        uniq = list(dict.fromkeys(keys))
        if not uniq:
            return {}
        commands, chunks = self._mget_commands(uniq)
        try:
            replies = await self._arun(commands)
        except Exception as exc:
            raise self._fail(exc, "get") from exc
        return self._collect(chunks, replies)

    async def aput(self: _Core, entry: Entry) -> None:
        """Write ``entry``, unless one of its tags was invalidated since its value was computed."""
        command = self._put_command(entry)
        if command is None:
            return
        try:
            (reply,) = await self._arun([command])
        except Exception as exc:
            raise self._fail(exc, "put") from exc
        self._put_done(reply)

    async def adelete(self: _Core, key: str) -> None:
        """Remove ``key``."""
        try:
            await self._aclient().delete(self.entry_key(key))
        except Exception as exc:
            raise self._fail(exc, "delete") from exc

    async def atag_generations(self: _Core, tags: Sequence[str]) -> Generations:
        """Current generations and the store epoch (bucket 0; all buckets agree after each invalidation).

        One round trip: the epoch is written if missing (first use, or a reset store) and
        read in the same command as the generations.
        """
        try:
            replies = await self._arun(self._generations_commands(tags))
        except Exception as exc:
            raise self._fail(exc, "tag_generations") from exc
        return self._generations_read(tags, replies)

    async def atag_key(self: _Core) -> bytes:
        """The namespace's random tag key, created by the first process that asks."""
        try:
            # hex text: readable by a client with decode_responses=True as well
            new = os.urandom(32).hex()
            created, key = await self._arun(
                [("SET", self._tag_key_key, new, "NX"), ("GET", self._tag_key_key)]
            )
        except Exception as exc:
            raise self._fail(exc, "tag_key") from exc
        if created:  # a new namespace, or one an earlier version used: sweep what it named in clear
            await self._asweep_clear_tags()
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(key, bytes) or len(key) < 16:
            raise TierError("redis tag key unreadable")
        return key

    async def _asweep_clear_tags(self: _Core) -> None:
        """Remove the tag sets (with their entries) and clear generation fields of an earlier version.

        Its tagged entries name their tags in clear: an invalidation, which now names a digest,
        would not reach them, and the clear names must not stay. Best effort, once per namespace.
        """
        client = self._aclient()
        try:
            async for name in client.scan_iter(match=f"{self.namespace}:*:t:*", count=1000):
                members = list(await client.smembers(name))
                await client.unlink(name, *members)  # one bucket: one cluster slot
            for bucket in self._bucket_keys:
                fields = [f async for f, _ in client.hscan_iter(f"{bucket}:g")]
                clear = [
                    f
                    for f in fields
                    if not _STORED_NAME.fullmatch(b := f if isinstance(f, bytes) else f.encode())
                    and b != EPOCH_FIELD.encode()  # the store epoch lives here too (not a tag)
                ]
                if clear:
                    await client.hdel(f"{bucket}:g", *clear)
        except Exception as exc:
            log.warning("redis: sweeping an earlier version's tags failed (%s)", type(exc).__name__)

    async def ainvalidate_tag(self: _Core, tag: str) -> int:
        """Draw a new generation; in every bucket raise ``tag`` to it and delete its entries."""
        try:
            gen = int(await self._aclient().incr(self._clock_key))
            todo: Sequence[int] = range(self.buckets)
            while todo:
                left = await self._arun(self._drain_commands(tag, gen, todo))
                todo = [b for b, n in zip(todo, left, strict=True) if n]
        except Exception as exc:
            raise self._fail(exc, "invalidate") from exc
        try:  # housekeeping: the invalidation itself is done, whatever happens here
            await self._arun(self._tidy_commands(tag))
        except Exception as exc:
            log.warning("redis: cleaning up old tag generations failed (%s)", type(exc).__name__)
        return gen
