"""The Redis L2's commands, written once.

``tiers/_async/`` holds the source; ``tiers/_sync/`` is generated from it (scripts/gen_sync.py).
:class:`promptcache.tiers.redis.RedisStore` joins both forms and holds everything they share
(layout, commands, replies, counters); see its module for the key layout and the scripts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from promptcache.invalidation import Generations
from promptcache.tiers.base import StatsCounter, TierError
from promptcache.tiers.entry import Entry

__all__ = ["AsyncRedisOps"]

Command = tuple[Any, ...]


def _is_no_script(r: object) -> bool:
    # redis-py is imported lazily: match the reply, not the class
    return type(r).__name__ == "NoScriptError"


class _Core(Protocol):
    """What the commands below need of the store that holds them."""

    buckets: int
    lua: tuple[str, ...]
    _stats: StatsCounter
    _bucket_keys: list[str]

    @property
    def _clock_key(self) -> str: ...

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
    async def _arun(self, commands: list[Command]) -> list[Any]: ...
    async def _apipeline(self, commands: list[Command]) -> list[Any]: ...
    async def _aload_scripts(self) -> None: ...


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
        return gen
