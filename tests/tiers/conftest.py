"""Real redis-server fixtures for the tier tests: a standalone server and a 3-node cluster.

Both are started once per session on free loopback ports in temporary
directories and stopped at the end. Tests that kill or pause a server get
their own from ``redis_factory``. If ``redis-server`` is not installed
(``make redis-server`` installs it from Debian packages) the Redis tests skip.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
SKIP_REASON = (
    "redis-server/redis-cli not installed: run `make redis-server` "
    "(apt-get install redis-server) to run the Redis tier tests"
)


def wait_until(cond: Callable[[], object], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``cond`` until it is truthy or ``timeout`` passes; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return True
        except Exception:
            pass
        time.sleep(interval)
    return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(cluster: bool = False) -> int:
    """A free loopback port (and, for cluster nodes, a free bus port at +10000)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if cluster and (port > 55000 or not _port_free(port + 10000)):
            continue
        return port
    raise RuntimeError("no free port")


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


@dataclass
class RedisServer:
    """One redis-server process we started."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Terminate (then kill) the process and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.proc.kill()
        self.proc.wait(5)


def start_redis(workdir: Path, *, port: int | None = None, args: tuple[str, ...] = ()) -> RedisServer:
    """Start redis-server on loopback and wait (bounded) until it answers PING."""
    assert REDIS_SERVER is not None
    port = port or free_port(cluster="--cluster-enabled" in args)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        REDIS_SERVER,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(workdir),
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "no",
        "--enable-debug-command", "local",
        *args,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    server = RedisServer(port, workdir, proc)
    if not wait_until(lambda: _ping(port), timeout=10):
        server.stop()
        raise RuntimeError(f"redis-server did not start on port {port}")
    return server


class RedisFactory:
    """Starts throwaway servers for tests that kill or pause them; stops all at the end."""

    def __init__(self, root: Path) -> None:
        """Servers go in subdirectories of ``root``."""
        self.root = root
        self.servers: list[RedisServer] = []

    def __call__(self) -> RedisServer:
        """A fresh standalone server."""
        s = start_redis(self.root / uuid.uuid4().hex[:8])
        self.servers.append(s)
        return s

    def stop_all(self) -> None:
        """Stop every server this factory started."""
        for s in self.servers:
            s.stop()


@pytest.fixture(scope="session")
def redis_root() -> Iterator[Path]:
    """A temporary directory for every server of the session."""
    with tempfile.TemporaryDirectory(prefix="pc-redis-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def redis_server(redis_root: Path) -> Iterator[RedisServer]:
    """The session's standalone redis-server."""
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    server = start_redis(redis_root / "standalone")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_factory(redis_root: Path) -> Iterator[RedisFactory]:
    """Throwaway servers (to kill or pause)."""
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    factory = RedisFactory(redis_root / "throwaway")
    try:
        yield factory
    finally:
        factory.stop_all()


@dataclass
class RedisCluster:
    """A 3-primary Redis Cluster on loopback."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL listing every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)


def _cluster_ok(port: int) -> bool:
    assert REDIS_CLI is not None
    out = subprocess.run(
        [REDIS_CLI, "-p", str(port), "cluster", "info"], capture_output=True, timeout=5, text=True
    ).stdout
    return "cluster_state:ok" in out


@pytest.fixture(scope="session")
def redis_cluster(redis_root: Path) -> Iterator[RedisCluster]:
    """Three cluster-enabled servers joined with ``redis-cli --cluster create``."""
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip(SKIP_REASON)
    nodes: list[RedisServer] = []
    try:
        for i in range(3):
            nodes.append(
                start_redis(
                    redis_root / f"cluster{i}",
                    args=(
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000",
                    ),
                )
            )  # fmt: skip
        addrs = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        if not all(wait_until(lambda p=n.port: _cluster_ok(p), timeout=20) for n in nodes):
            raise RuntimeError("cluster did not reach cluster_state:ok")
        yield RedisCluster(nodes)
    finally:
        for n in nodes:
            n.stop()


@pytest.fixture
def ns() -> str:
    """A namespace unique to the test, so tests can share a server."""
    return "t" + uuid.uuid4().hex[:10]


class FakeClock:
    """An injectable clock: time moves only when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        """Start at ``start`` (epoch seconds)."""
        self.now = start

    def __call__(self) -> float:
        """The current fake time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock."""
    return FakeClock()


@pytest.fixture(autouse=True)
def _no_user_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # never touch the developer's real ~/.cache/promptcache from a test
    monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(tmp_path / "default-cache"))


def key_for(tenant: str, name: str) -> str:
    """A key as promptcache.keys would produce it: SHA-256 hex over a contract with the tenant."""
    import hashlib

    return hashlib.sha256(f"{tenant}\x00{name}".encode()).hexdigest()


@pytest.fixture(scope="session")
def redis_sentinel(redis_server: RedisServer, redis_root: Path) -> Iterator[str]:
    """A Sentinel watching the session server as ``mymaster``; yields its ``redis+sentinel://`` URL."""
    workdir = redis_root / "sentinel"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor mymaster 127.0.0.1 {redis_server.port} 1\n"
    )
    assert REDIS_SERVER is not None
    proc = subprocess.Popen(
        [REDIS_SERVER, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = RedisServer(port, workdir, proc)
    try:
        if not wait_until(lambda: _ping(port), timeout=10):
            raise RuntimeError("sentinel did not start")
        yield f"redis+sentinel://127.0.0.1:{port}/mymaster/0"
    finally:
        server.stop()
