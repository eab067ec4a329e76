"""Fixtures of the artifact-cache tests: shared-L2 store factories over real SQLite files and real Redis.

The redis-server fixtures come from ``tests/redis_fixtures.py`` (registered in ``tests/conftest.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_fixtures import RedisServer

from promptcache.invalidation import LocalBus
from promptcache.tiers import MemoryStore, SQLiteStore, TieredStore
from promptcache.tiers.redis import RedisStore

StoreFactory = Callable[..., TieredStore]


@pytest.fixture(autouse=True)
def _isolated_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # never touch the developer's real ~/.cache/promptcache from a test
    monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.delenv("PROMPTCACHE_STORE", raising=False)


def shared_l2_factory(kind: str, location: str) -> tuple[StoreFactory, Callable[[], list[bytes]]]:
    """(make a worker's TieredStore on the shared L2, read every raw stored payload of that L2)."""
    ns = "a" + uuid.uuid4().hex[:10]

    def make(**kw: Any) -> TieredStore:
        l2: Any
        if kind == "sqlite":
            l2 = SQLiteStore(Path(location) / "shared.sqlite3")
        else:
            l2 = RedisStore(location, namespace=ns)
        # no bus between workers, and L1 never vouches for a tagged entry: every worker sees
        # every invalidation through L2 at once, so the tests can demand "no stale read" exactly
        kw.setdefault("max_staleness_s", 0.0)
        return TieredStore(l1=MemoryStore(), l2=l2, bus=LocalBus(), **kw)

    def raw() -> list[bytes]:
        if kind == "sqlite":
            import sqlite3

            with sqlite3.connect(Path(location) / "shared.sqlite3") as db:
                return [bytes(r[0]) for r in db.execute("SELECT data FROM pc_entries")]
        import redis

        c = redis.Redis.from_url(location)
        try:
            out: list[bytes] = []
            for k in c.scan_iter(match=f"{ns}:*", count=1000):
                t = c.type(k)
                if t == b"hash":
                    out.extend(v for v in c.hgetall(k).values())
                elif t == b"string":
                    out.append(c.get(k) or b"")
            return out
        finally:
            c.close()

    return make, raw


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def shared_l2(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[StoreFactory, Callable[[], list[bytes]]]]:
    """A factory of workers sharing one real L2 (SQLite file or redis-server), and a raw dump of it."""
    if request.param == "sqlite":
        location = str(tmp_path)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        location = server.url
    made: list[TieredStore] = []
    make, raw = shared_l2_factory(request.param, location)

    def tracked(**kw: Any) -> TieredStore:
        s = make(**kw)
        made.append(s)
        return s

    yield tracked, raw
    for s in made:
        s.close()
