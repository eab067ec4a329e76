"""Loopback infrastructure for the reliability report: redis-server control, stalling proxy, raw scans."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    """A free loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], object], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``cond`` until truthy or ``timeout``; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return True
        except Exception:
            pass
        time.sleep(interval)
    return False


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


class RedisProc:
    """One redis-server we own (loopback, no persistence); can be killed, paused and restarted."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        """Start it on ``port`` (a free one by default) and wait until it answers PING."""
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed (make redis-server)")
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """(Re)start on the same port."""
        assert REDIS_SERVER is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--enable-debug-command",
            "local",
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir
        )
        if not wait_until(lambda: _ping(self.port), timeout=10):
            raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL, as a crash would (data is lost: no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def pause(self) -> None:
        """SIGSTOP."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def debug_sleep(self, seconds: float) -> None:
        """``DEBUG SLEEP seconds`` sent without waiting for the reply (the server blocks)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=1)
        s.sendall(f"DEBUG SLEEP {seconds}\r\n".encode())
        threading.Timer(seconds + 2, s.close).start()

    def stop(self) -> None:
        """Terminate (after a SIGCONT, in case it is paused)."""
        if self.proc is not None and self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class StallProxy:
    """A loopback TCP proxy in front of ``target_port`` that can stall: bytes are held, not forwarded."""

    def __init__(self, target_port: int) -> None:
        """Listen on a free loopback port."""
        self.target_port = target_port
        self.stalled = threading.Event()
        self._stop = threading.Event()
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(64)
        self._srv.settimeout(0.2)
        self.port = int(self._srv.getsockname()[1])
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """The proxied Redis URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                c.close()
                continue
            self._socks += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            while self.stalled.is_set() and not self._stop.is_set():
                time.sleep(0.01)  # hold the bytes: the peer sees a network that stopped answering
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            with suppress(OSError):
                s.close()

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._stop.set()
        self._srv.close()
        for s in self._socks:
            with suppress(OSError):
                s.close()


@contextmanager
def tmpfs(path: Path, size: str = "64k") -> Iterator[bool]:
    """Mount a tiny tmpfs on ``path`` (root only); yields whether it is mounted."""
    path.mkdir(parents=True, exist_ok=True)
    ok = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_ro(path: Path, ro: bool) -> bool:
    """Bind-mount ``path`` on itself read-only (``ro``) or undo it; returns success."""
    if ro:
        a = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode
        b = subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True).returncode
        return a == 0 and b == 0
    return subprocess.run(["umount", "-l", str(path)], capture_output=True).returncode == 0


# raw scans: the bytes each tier actually holds -----------------------------------


def sqlite_raw(path: Path) -> list[bytes]:
    """Every cell of every table of the SQLite file at ``path`` (WAL included), as bytes."""
    if not path.exists():
        return []
    out: list[bytes] = []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            for row in db.execute(f'SELECT * FROM "{t}"'):
                for cell in row:
                    if isinstance(cell, bytes):
                        out.append(cell)
                    elif cell is not None:
                        out.append(str(cell).encode())
    finally:
        db.close()
    for suffix in ("", "-wal"):  # the files themselves too (free pages may keep old bytes)
        f = Path(str(path) + suffix)
        if f.exists():
            out.append(f.read_bytes())
    return out


def redis_raw(client: Any, match: str | None = None) -> list[bytes]:
    """Every key name and value held by a Redis server (strings and hashes), optionally ``match``-ed."""
    out: list[bytes] = []
    for k in client.scan_iter(match=match, count=1000):
        out.append(k if isinstance(k, bytes) else str(k).encode())
        t = client.type(k)
        t = t.decode() if isinstance(t, bytes) else t
        if t == "hash":
            for f, v in client.hgetall(k).items():
                out += [
                    f if isinstance(f, bytes) else str(f).encode(),
                    v if isinstance(v, bytes) else str(v).encode(),
                ]
        elif t == "string":
            v = client.get(k)
            out.append(v if isinstance(v, bytes) else str(v).encode())
    return out


def files_raw(root: Path) -> list[bytes]:
    """The bytes of every file under ``root``."""
    if not root.exists():
        return []
    return [p.read_bytes() for p in root.rglob("*") if p.is_file()]


def l1_raw(store: Any) -> list[bytes]:
    """Payloads and tags held in a router's L1 (in-process memory)."""
    out: list[bytes] = []
    data = getattr(store.l1, "_data", {})
    for key, rec in list(data.items()):
        entry = rec[0]
        out.append(key.encode())
        out.append(entry.payload or b"")
        out += [t.encode() for t in entry.tags]
    return out


def needle_forms(needle: str) -> list[bytes]:
    """The byte forms a needle can take once stored (raw, JSON-escaped)."""
    import json

    forms = {needle.encode(), json.dumps(needle)[1:-1].encode()}
    return [f for f in forms if f]


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``, nearest rank; None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]
