"""Issue 24, "Operations" and "Failure": health, metrics, stats, graceful shutdown, fleet, Redis outage.

The tests that signal or kill run ``promptcache proxy`` as a process of its own; Redis is the real
redis-server of the fixtures.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import ProxyProcess, ServerThread, clock_system, start_gateway
from upstreams import Held, held_stream_app

from promptcache import PromptCache
from promptcache.cli import main
from promptcache.gateway.collector import SERVER_THRESHOLDS
from promptcache.gateway.tenant import key_tenant
from promptcache.lab.emulate import Emulator
from promptcache.pseudonym import tenant_label

# uvicorn exits by the signal it was stopped with once it has shut down gracefully (its exit
# status then tells a supervisor why it stopped).
CLEAN_EXIT = (0, -signal.SIGTERM)


def _chat(base: str, key: str, i: int) -> int:
    """One Chat Completions call with the clock of call ``i``; its cache-read tokens."""
    o = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    r = o.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "system", "content": clock_system(i)}, {"role": "user", "content": f"q{i}"}],
    )
    assert r.usage is not None and r.usage.prompt_tokens_details is not None
    return r.usage.prompt_tokens_details.cached_tokens or 0


def _metrics(base: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in httpx.get(base + "/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _degradations(base: str) -> int:
    return int(sum(v for k, v in _metrics(base).items() if k.startswith("promptcache_gateway_degradations")))


def test_healthz_and_metrics(tmp_path: Path) -> None:
    with Emulator() as emu:
        gw = start_gateway(emu.base_url)
        try:
            assert httpx.get(gw.url + "/healthz").json() == {"status": "ok"}
            reads = [_chat(gw.url, "sk-metrics", i) for i in range(3)]
            m = _metrics(gw.url)
            assert m['promptcache_gateway_requests_total{route="chat_completions",status="200"}'] == 3
            assert m['promptcache_gateway_tokens_total{kind="cache_read"}'] == sum(reads) > 0
            assert m['promptcache_gateway_tokens_total{kind="input"}'] > sum(reads)
            assert m['promptcache_gateway_upstream_seconds_count{route="chat_completions"}'] == 3
            assert m["promptcache_gateway_in_flight"] == 0
            assert "promptcache_gateway_hint_rejections_total" in m
        finally:
            gw.stop()


def test_the_paths_and_methods_the_gateway_answers_itself(gateway: ServerThread) -> None:
    # /healthz and /metrics for GET and HEAD; outside /v1/ a 404 in OpenAI's error shape (also a
    # POST to /healthz: only /v1/... is forwarded); a method no provider API uses: 405.
    assert httpx.head(gateway.url + "/healthz").status_code == 200
    assert httpx.get(gateway.url + "/metrics").text.startswith("# HELP")
    for method, path in (("GET", "/nope"), ("POST", "/healthz")):
        r = httpx.request(method, gateway.url + path)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = httpx.request("TRACE", gateway.url + "/v1/models")
    assert r.status_code == 405 and "GET" in r.headers["allow"]


# The gateway as `promptcache proxy` builds it (server_process=True), in a process of its own.
_SERVER_PROCESS = """
import gc, json, sys
from starlette.testclient import TestClient
from promptcache.gateway.app import create_app
before = gc.get_freeze_count()
upstreams = {"openai_upstream": sys.argv[1] + "/v1", "anthropic_upstream": sys.argv[1]}
app = create_app(upstreams, server_process=True)
with TestClient(app) as client:
    status = client.get("/healthz").status_code
    print(json.dumps([status, before, gc.get_freeze_count(), gc.get_threshold()]))
"""


def test_only_the_gateways_own_process_sets_its_collector_as_a_server(tmp_path: Path) -> None:
    # Mounted in someone else's process (here the test's), the gateway leaves the collector alone.
    before = (gc.get_threshold(), gc.get_freeze_count())
    with Emulator(light=True) as emu:
        gw = start_gateway(emu.base_url)
        try:
            _chat(gw.url, "sk-collector", 0)
        finally:
            gw.stop()
        assert (gc.get_threshold(), gc.get_freeze_count()) == before
        # Its own server process: the start-up heap frozen (tens of thousands of objects no
        # full collection walks again), the server thresholds set, and it serves.
        out = subprocess.run(
            [sys.executable, "-c", _SERVER_PROCESS, emu.base_url],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PROMPTCACHE_CACHE_DIR": str(tmp_path)},
        )
    assert out.returncode == 0, out.stderr
    status, frozen_before, frozen, thresholds = json.loads(out.stdout)
    assert status == 200 and frozen_before == 0
    assert frozen > 10_000 and tuple(thresholds) == SERVER_THRESHOLDS


def test_figures_reach_promptcache_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    with Emulator() as emu:
        cache = PromptCache(store=str(store))
        gw = start_gateway(emu.base_url, cache=cache)
        try:
            reads = [_chat(gw.url, "sk-stats", i) for i in range(3)]
        finally:
            gw.stop()
            cache.close()  # the figures are written (`promptcache proxy` closes its own at shutdown)
    assert main(["stats", "--store", str(store), "--json", "--by", "tenant"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    (row,) = [r for r in rows if r["tenant"] == tenant_label(key_tenant("sk-stats"))]
    assert row["calls"] == 3 and row["cache_read_tokens"] == sum(reads) > 0


def test_sigterm_finishes_the_streams_in_flight(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    held = Held()
    upstream = ServerThread(held_stream_app(held)).start()
    store = tmp_path / "store"
    args = ["--openai-upstream", upstream.url + "/v1", "--store", str(store)]
    proxy = ProxyProcess(*args, log=tmp_path / "proxy.log")
    try:
        body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": "Bearer sk-sigterm"}
        with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body, headers=headers) as r:
            lines = r.iter_lines()
            assert "part 0" in next(line for line in lines if line.startswith("data:"))
            proxy.terminate()  # mid-stream
            # The proxy stops taking connections (bounded wait), the stream stays open.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    httpx.get(proxy.url + "/healthz", timeout=1)
                except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
                    # Refused, or reset: a connection the kernel queued just before the
                    # listening socket closed is reset, not served (both: no longer taking them).
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the proxy kept accepting connections after SIGTERM")
            assert proxy.proc.poll() is None
            held.release.set()
            rest = [line for line in lines if line.startswith("data:")]
        assert [f"part {i}" in "".join(rest) for i in range(1, 5)] == [True] * 4
        assert rest[-1] == "data: [DONE]" and held.finished == [True]
        assert proxy.wait(30) in CLEAN_EXIT
    finally:
        held.release.set()
        proxy.stop()
        upstream.stop()
    assert "sk-sigterm" not in (tmp_path / "proxy.log").read_text()
    # The stream's usage was written to the store at shutdown: `promptcache stats` shows it.
    assert main(["stats", "--store", str(store), "--json", "--by", "tenant"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert (row["calls"], row["cache_read_tokens"]) == (1, 1536)


def _wait_shared(cache: PromptCache, tenant: str, timeout: float = 20.0) -> None:
    """Until ``cache``'s learned layout for ``tenant`` is in its store (written in the background)."""
    fleet: Any = cache._fleet
    other = PromptCache(store=cache._store_spec, record_stats=False)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if fleet._known:
                key = fleet.key(other.contract(tenant, "gpt-4o"), next(iter(fleet._known)))
                other.store.l1.delete(key)  # read the shared tier, not this process's memory
                if other.store.get(key, tenant=tenant) is not None:
                    return
            time.sleep(0.05)
    finally:
        other.close()
    raise AssertionError("the learned layout never reached the store")


@pytest.mark.redis
def test_a_fleet_of_proxies_shares_what_one_learned(tmp_path: Path, redis_server: Any) -> None:
    key = "sk-fleet"
    with Emulator() as emu:
        # Proxy A (a uvicorn server in this process) learns the clock line from its traffic.
        cache_a = PromptCache(store=redis_server.url, record_stats=False)
        a = start_gateway(emu.base_url, cache=cache_a)
        try:
            reads_a = [_chat(a.url, key, i) for i in range(3)]
            assert reads_a[0] == 0 and reads_a[2] > 0
            _wait_shared(cache_a, key_tenant(key))
        finally:
            a.stop()
            cache_a.close()
        learned_system = emu.requests[-1]["messages"][0]["content"]
        args = ["--openai-upstream", emu.openai_base_url, "--anthropic-upstream", emu.base_url]
        # Proxy B, another process on the same Redis: its first call is laid out as A learned it,
        # so it reads the provider cache A's calls wrote.
        b = ProxyProcess(*args, "--store", redis_server.url, log=tmp_path / "b.log")
        try:
            assert _chat(b.url, key, 10) == reads_a[2]
            assert emu.requests[-1]["messages"][0]["content"] == learned_system
        finally:
            b.stop()
        # Proxy C, on a store of its own: its first call keeps the clock in place (a miss).
        cache_c = PromptCache(store=str(tmp_path / "own"), record_stats=False)
        c = start_gateway(emu.base_url, cache=cache_c)
        try:
            assert _chat(c.url, key, 11) == 0
            assert emu.requests[-1]["messages"][0]["content"] != learned_system
        finally:
            c.stop()
            cache_c.close()


@pytest.mark.redis
async def test_redis_killed_mid_run_every_request_still_goes_out_and_is_counted(redis_factory: Any) -> None:
    redis = redis_factory()
    cache = PromptCache(store=redis.url, record_stats=False)
    with Emulator() as emu:
        gw = start_gateway(emu.base_url, cache=cache)
        try:
            before = _degradations(gw.url)
            async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:

                async def one(i: int) -> int:
                    # A new tenant per request: each meets the store (its family's shared state).
                    body = {
                        "model": "gpt-4o",
                        "messages": [
                            {"role": "system", "content": clock_system(i)},
                            {"role": "user", "content": "hi"},
                        ],
                    }
                    r = await client.post(
                        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer sk-out-{i}"}
                    )
                    return r.status_code

                statuses = list(await asyncio.gather(*(one(i) for i in range(20))))
                redis.kill()
                statuses += await asyncio.gather(*(one(i) for i in range(20, 60)))
            assert statuses == [200] * 60  # 0 failed
            assert len(emu.requests) == 60  # every request forwarded
            assert _degradations(gw.url) > before  # and the outage counted
        finally:
            gw.stop()
            cache.close()
