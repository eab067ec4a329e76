"""open_store for every documented form, and `promptcache invalidate` (in-process and as a real command)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_fixtures import RedisCluster, RedisServer, wait_until

from promptcache.artifacts import ToolOutputCache, ToolSpec, open_store
from promptcache.cli import main
from promptcache.invalidation import LocalBus, RedisBus
from promptcache.tiers import SQLiteStore, TieredStore
from promptcache.tiers.redis import RedisStore

READ = ToolSpec(name="get_reservation", side_effect="read_only", tags=["reservation:{rid}"])


def test_none_is_the_embedded_sqlite_in_the_documented_dir(tmp_path: Path) -> None:
    with open_store(None) as store:
        assert isinstance(store.l2, SQLiteStore)
        assert store.l2.path == tmp_path / "default-cache" / "promptcache.sqlite3"  # $PROMPTCACHE_CACHE_DIR
        assert store.l2.path.exists()


@pytest.mark.parametrize("form", ["path", "pathlib", "sqlite", "file"])
def test_directory_forms(tmp_path: Path, form: str) -> None:
    spec: Any = {
        "path": str(tmp_path / "c"),
        "pathlib": tmp_path / "c",
        "sqlite": f"sqlite://{tmp_path}/c",
        "file": f"file://{tmp_path}/c",
    }[form]
    with open_store(spec) as store:
        assert isinstance(store.l2, SQLiteStore) and store.l2.path == tmp_path / "c" / "promptcache.sqlite3"


def test_memory_and_passthrough_and_errors() -> None:
    mem = open_store("memory://")
    assert mem.l2 is None and open_store(mem) is mem
    with pytest.raises(ValueError, match="unknown store URL scheme"):
        open_store("mongodb://x")
    with pytest.raises(TypeError, match="store= takes"):
        open_store(42)
    with pytest.raises(ValueError, match="needs a directory"):
        open_store("sqlite://")


@pytest.mark.redis
def test_redis_url_and_client(redis_server: RedisServer) -> None:
    with open_store(redis_server.url, namespace="os1") as store:
        assert isinstance(store.l2, RedisStore) and isinstance(store.bus, RedisBus)
        tools = ToolOutputCache(store)
        tools.call(READ, {"rid": "A"}, lambda rid: {"v": 1}, tenant="t")
        assert store.flush()
    client = redis.Redis.from_url(redis_server.url)
    with open_store(client, namespace="os1") as store:
        assert isinstance(store.l2, RedisStore) and store.l2.client is client
        out = ToolOutputCache(store).call(READ, {"rid": "A"}, lambda rid: {"v": 2}, tenant="t")
        assert out.lookup.tier == "l2" and out.value == {"v": 1}  # written through the URL form
    import redis.asyncio as aredis

    with pytest.raises(TypeError, match="sync redis client"):
        open_store(aredis.Redis.from_url(redis_server.url))


@pytest.mark.redis
def test_cluster_and_sentinel_urls(redis_cluster: RedisCluster, redis_sentinel: str) -> None:
    for url in (redis_cluster.url, redis_sentinel):
        with open_store(url, namespace="os2") as store:
            assert isinstance(store.l2, RedisStore)
            tools = ToolOutputCache(store)
            tools.call(READ, {"rid": "A"}, lambda rid: {"v": 1}, tenant="t")
            store.flush()
            store.l1.clear()
            assert tools.call(READ, {"rid": "A"}, lambda rid: {"v": 2}, tenant="t").lookup.tier == "l2"
            store.invalidate("reservation:A")
            assert not tools.call(READ, {"rid": "A"}, lambda rid: {"v": 2}, tenant="t").lookup.hit


def _cached_then(store: TieredStore) -> ToolOutputCache:
    tools = ToolOutputCache(store)
    tools.call(READ, {"rid": "A"}, lambda rid: {"v": 1}, tenant="t")
    tools.call(READ, {"rid": "B"}, lambda rid: {"v": 1}, tenant="t")
    assert store.flush()
    return tools


def test_cli_invalidates_the_default_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = TieredStore.default(max_staleness_s=0.0)  # the same default dir the CLI opens
    tools = _cached_then(store)
    assert main(["invalidate", "--tag", "reservation:A"]) == 0
    assert "invalidated reservation:A (generation 1)" in capsys.readouterr().out
    assert not tools.call(READ, {"rid": "A"}, lambda rid: {"v": 2}, tenant="t").lookup.hit
    assert tools.call(READ, {"rid": "B"}, lambda rid: {"v": 2}, tenant="t").lookup.hit
    store.close()


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["invalidate", "--tag", "x", "--store", "memory://"]) == 2
    assert main(["invalidate", "--tag", "x", "--store", "mongodb://h"]) == 2
    assert "unknown store URL scheme" in capsys.readouterr().err


@pytest.mark.redis
def test_cli_as_a_real_command_against_redis(redis_server: RedisServer, redis_factory: Any) -> None:
    store = TieredStore.from_redis(redis_server.url, namespace="pc")
    assert isinstance(store.bus, RedisBus) and store.bus.wait_subscribed(5)
    tools = _cached_then(store)
    env = {**os.environ, "PROMPTCACHE_STORE": redis_server.url}
    done = subprocess.run(
        [sys.executable, "-m", "promptcache.cli", "invalidate", "--tag", "reservation:A"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    # the other process's invalidation reaches this process's L1 through the bus, within the bound
    assert wait_until(
        lambda: tools.call(READ, {"rid": "A"}, lambda rid: {"v": 2}, tenant="t").value == {"v": 2},
        timeout=1.0,
    )
    assert tools.call(READ, {"rid": "B"}, lambda rid: {"v": 2}, tenant="t").value == {"v": 1}
    store.close()
    dead = redis_factory()
    dead.kill()
    failed = main(["invalidate", "--tag", "reservation:A", "--store", dead.url])
    assert failed == 1


def test_memory_store_has_a_local_bus() -> None:
    assert isinstance(open_store("memory://").bus, LocalBus)
