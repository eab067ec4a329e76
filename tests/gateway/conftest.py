"""Fixtures of the gateway tests: the provider emulator, and real uvicorn servers on loopback.

Everything is real: :class:`promptcache.lab.emulate.Emulator` is an HTTP server, the gateway is
served by uvicorn on a free port (in a thread here, or as a ``promptcache proxy`` process in the
tests that signal or kill it), and the clients are the official SDKs, httpx and curl.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from promptcache import PromptCache
from promptcache.gateway.app import create_app
from promptcache.lab.bundled import AGENTS
from promptcache.lab.emulate import Emulator

#: A real agent's system prompt (tau-bench's airline policy), long enough for providers to cache.
POLICY_TEXT = (AGENTS / "tau_bench_airline_system_prompt.md").read_text()


def clock_system(i: int) -> str:
    """The system prompt of call ``i``: a clock line first (it changes on every call), then the policy.

    The clock is not the real time: a value giving the request's own time moves from the first
    call (``pipeline.learning.states_now``), any other from its first change. A fixed past date
    keeps the tests' calls the same whenever they run (a fleet's shared learning shows on them).
    """
    return f"Current time: 2025-01-15T10:{i // 60:02d}:{i % 60:02d}Z\n\n{POLICY_TEXT}"


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """An ASGI app served by uvicorn on a free loopback port, in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            log_config=None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        """Serve; returns once uvicorn has started (bounded wait)."""
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit (in-flight requests finish) and wait for it."""
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A provider emulator on a free loopback port."""
    with Emulator() as emu:
        yield emu


def start_gateway(emu_url: str, **config: Any) -> ServerThread:
    """A gateway in front of the emulator at ``emu_url``, with its own ``PromptCache`` (no stats file)."""
    cache = config.pop("cache", None) or PromptCache(record_stats=False)
    app = create_app(
        {"openai_upstream": emu_url + "/v1", "anthropic_upstream": emu_url, **config}, cache=cache
    )
    return ServerThread(app).start()


@pytest.fixture
def gateway(emulator: Emulator) -> Iterator[ServerThread]:
    """A gateway in front of :func:`emulator`."""
    server = start_gateway(emulator.base_url)
    yield server
    server.stop()


class ProxyProcess:
    """``promptcache proxy`` as a process of its own (for signals and fleets)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "promptcache.cli", "proxy", "--port", str(self.port), *args],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"promptcache proxy did not start:\n{log.read_text()}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator stopping the process sends."""
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the process to exit; its exit code."""
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
