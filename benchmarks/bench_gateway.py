"""Gateway load and fault figures (issue 24): added latency at 200 requests/s, and Redis killed mid-run.

Everything on loopback, every part a process of its own: the provider emulator
(``promptcache emulate``), the gateway (``promptcache proxy``, uvicorn with uvloop and httptools
when installed) and this load generator (aiohttp client sessions with keep-alive pools, on uvloop
when installed: the generator must cost less than what it measures).

**Load.** An open-loop schedule of exactly :data:`RATE` requests/s for :data:`SECONDS` seconds,
cut into windows of :data:`WINDOW_S` seconds that go in turn to the gateway and straight to the
emulator, in the order ABBA ABBA...: at every moment the machine carries 200 requests/s (not
200 to each arm at once, which is 400/s of Python HTTP on the same cores), and a load swing of
the shared machine lands on both arms alike. Each request is an OpenAI Chat Completions call of
a real agent (tau-bench's airline policy, ~1,300 tokens, a clock line on top that changes every
call; one API key among :data:`KEYS`, so as many tenants), one in five streamed.

Latency is from the request's **scheduled** send time to the last byte of the answer: a
generator that falls behind its schedule is charged to the request, never hidden (no
coordinated omission); the latency from the actual send is reported beside it, and the
generator's lag behind its schedule. Reported per arm: p50/p90/p99 and failed requests (non-200
or error); the added latency at p50 and p99 (gateway minus direct); the paired added latency
(the k-th request of a gateway window minus the k-th of the direct window next to it, so the
same moment of the machine) at p50 and p99; the CPU time per request of each process in each
arm's windows (read from /proc at every window edge): the gateway's, the emulator's (direct and
behind the gateway: the emulator must not be the bottleneck of the direct arm) and the load
generator's (a separate process on uvloop with aiohttp's keep-alive pools and C parser: it must
cost less than what it measures); the time per request the gateway and the emulator waited for
a core (runnable, not running: /proc schedstat); and the machine's load average before and after. Target: p99
added ≤ 2 ms (:data:`TARGET_P99_ADDED_MS`). The same again at :data:`LOW_RATE`
(``load_low_rate``).

The upstream of the load sections is the emulator in light mode (``promptcache emulate
--light``: the same provider-shaped answers, usage from a byte-prefix rule instead of the
simulator). With the simulator, the direct arm cost the emulator twice the CPU of the proxied
arm (3.4 against 1.7 ms a request: a prompt whose first line changes on every call is
tokenized and compared anew, a prompt the gateway laid out is not), so the direct arm was
slower than the proxied one at the median and the added latency came out negative: the
emulator, not the gateway, was measured.

**Fault.** The gateway on a real redis-server (``--store redis://...``, fleet learning on), the
same load for :data:`FAULT_SECONDS` seconds, each request from a new API key (so each meets the
store: a new tenant's learned layout is read from it); redis-server is killed (SIGKILL) half-way. Reported:
requests sent, failed (target 0), and the gateway's ``promptcache_gateway_degradations_total``
before and after (the outage is counted). Skipped, with the reason, when redis-server is absent.

    python -m benchmarks.bench_gateway --out gateway-results.json   # also part of `make bench`
    python -m benchmarks.bench_gateway --only load --out x.json     # the 200 requests/s section only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

RATE = 200
LOW_RATE = 50
SECONDS = 20.0
WINDOW_S = 0.25
FAULT_SECONDS = 6.0
KEYS = 200
STREAM_EVERY = 5
TARGET_P99_ADDED_MS = 2.0
WARMUP = 200
POOL = 32
#: The load's upstream is the emulator in light mode (see the module docstring).
LIGHT = True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")


@contextmanager
def _process(args: list[str], health: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "promptcache.cli", *args], stdout=out, stderr=subprocess.STDOUT
        )
        try:
            _wait_http(health, proc)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _waited_seconds(pid: int) -> float:
    """Seconds the threads of process ``pid`` spent runnable but not running, waiting for a
    core (Linux /proc/PID/task/*/schedstat, second field), or NaN elsewhere."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue  # a thread that ended meanwhile
    except OSError:
        return float("nan")
    return total / 1e9


def _clock(i: int) -> str:
    return f"Current time: 2026-12-07T{10 + i // 3600:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z\n\n"


def _system(i: int) -> str:
    from promptcache.lab.bundled import AGENTS

    return _clock(i) + (AGENTS / "tau_bench_airline_system_prompt.md").read_text()


class _Arm:
    """One arm's client and results."""

    def __init__(self, base: str, keys: int | None = KEYS) -> None:
        self.base = base
        self.keys = keys  # API keys cycled through (None: a new key, so a new tenant, per request)
        self.session: Any = None
        self.ms: list[float] = []  # from the scheduled send time
        self.sent_ms: list[float] = []  # from the actual send
        self.by_tick: dict[int, float] = {}
        self.failed = 0
        self.errors: dict[str, int] = {}

    async def open(self) -> None:
        """The arm's keep-alive pool (aiohttp: its C parser keeps the generator's own cost low)."""
        import aiohttp

        # At most POOL requests in flight per arm, as a client's pool allows; more wait in the
        # generator, their time counted from the schedule. Without a bound a stall of the shared
        # machine opened hundreds of connections, so as many emulator threads fighting for its
        # GIL, and the emulator (not what is measured) never caught up.
        connector = aiohttp.TCPConnector(limit=POOL, keepalive_timeout=60)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))

    async def close(self) -> None:
        """Close the pool."""
        await self.session.close()

    async def call(self, i: int, body: bytes, record: bool = True, due: float | None = None) -> None:
        """Send request ``i`` (``body``: its JSON) and read the whole answer; ``due``: its
        scheduled send time (``perf_counter``), which its latency is counted from."""
        import aiohttp

        key = i % self.keys if self.keys else i
        headers = {"authorization": f"Bearer sk-bench-{key}", "content-type": "application/json"}
        t0 = time.perf_counter()
        start = t0 if due is None else due
        try:
            async with self.session.post(self.base + "/v1/chat/completions", data=body, headers=headers) as r:
                await r.read()
                ok = r.status == 200
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok = False
            self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
        end = time.perf_counter()
        if not record:
            return
        if not ok:
            self.failed += 1
            return
        ms = (end - start) * 1e3
        self.ms.append(ms)
        self.sent_ms.append((end - t0) * 1e3)
        self.by_tick[i] = ms


def _body(i: int, system: str) -> bytes:
    body: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": f"question {i}"}],
    }
    if i % STREAM_EVERY == 0:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _load(
    arms: list[_Arm],
    seconds: float,
    *,
    rate: int = RATE,
    during: Any = None,
    warmup: int = WARMUP,
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Open loop: request ``k`` is due at ``start + k / rate``, and goes to the arm whose window
    it falls in (windows of :data:`WINDOW_S`, arms in the order ABBA...); returns when all
    finished. ``pids``: processes whose CPU time is read at each window edge, charged to the arm
    of that window."""
    policy = _system(0).split("\n\n", 1)[1]
    bodies = [_body(i, _clock(i) + policy) for i in range(int(seconds * rate) + warmup)]
    for arm in arms:
        await arm.open()
    # Warm-up (not recorded): connections opened, tokenizers loaded, families learned.
    for w in range(0, warmup, 20):
        await asyncio.gather(
            *(arm.call(i, bodies[i], record=False) for arm in arms for i in range(w, w + 20))
        )
    n = int(seconds * rate)
    per_window = max(1, round(WINDOW_S * rate))
    watched = {"load_generator": os.getpid(), **(pids or {})}
    cpu = {id(arm): dict.fromkeys(watched, 0.0) for arm in arms}
    waited = {id(arm): dict.fromkeys(watched, 0.0) for arm in arms}
    sent = {id(arm): 0 for arm in arms}
    tasks: list[asyncio.Task[None]] = []
    load_before = os.getloadavg()
    start = time.perf_counter()
    fired = False
    lag_ms: list[float] = []
    arm, edge = arms[0], {name: _cpu_seconds(pid) for name, pid in watched.items()}
    wedge = {name: _waited_seconds(pid) for name, pid in watched.items()}
    for k in range(n):
        i = warmup + k
        due = start + k / rate
        if k % per_window == 0:
            window = k // per_window
            # ABBA: each arm first and second in turn, so a trend within a pair favours neither.
            now_cpu = {name: _cpu_seconds(pid) for name, pid in watched.items()}
            now_waited = {name: _waited_seconds(pid) for name, pid in watched.items()}
            for name in watched:
                cpu[id(arm)][name] += now_cpu[name] - edge[name]
                waited[id(arm)][name] += now_waited[name] - wedge[name]
            edge, wedge = now_cpu, now_waited
            arm = arms[((window + 1) // 2) % len(arms)]
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        lag_ms.append((time.perf_counter() - due) * 1e3)
        sent[id(arm)] += 1
        tasks.append(asyncio.create_task(arm.call(i, bodies[i], due=due)))
        if during is not None and not fired and k >= n // 2:
            fired = True
            during()
    sent_in = time.perf_counter() - start
    await asyncio.gather(*tasks)
    final = {name: _cpu_seconds(pid) for name, pid in watched.items()}
    final_waited = {name: _waited_seconds(pid) for name, pid in watched.items()}
    for name in watched:
        cpu[id(arm)][name] += final[name] - edge[name]
        waited[id(arm)][name] += final_waited[name] - wedge[name]
    for a in arms:
        await a.close()
    return {
        "requests": n,
        "achieved_rate": round(n / sent_in, 1),
        "window_s": WINDOW_S,
        "schedule_lag_ms_p50": round(_pct(lag_ms, 50), 2),
        "schedule_lag_ms_p99": round(_pct(lag_ms, 99), 2),
        "load_average_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cpu_ms_per_request": {
            a.base: {name: round(t / max(1, sent[id(a)]) * 1e3, 3) for name, t in cpu[id(a)].items()}
            for a in arms
        },
        "waited_ms_per_request": {
            a.base: {name: round(t / max(1, sent[id(a)]) * 1e3, 3) for name, t in waited[id(a)].items()}
            for a in arms
        },
        "per_window": per_window,
    }


def _summary(arm: _Arm) -> dict[str, Any]:
    return {
        "ok": len(arm.ms),
        "failed": arm.failed,
        "errors": arm.errors,
        "p50_ms": round(_pct(arm.ms, 50), 3),
        "p90_ms": round(_pct(arm.ms, 90), 3),
        "p99_ms": round(_pct(arm.ms, 99), 3),
        "mean_ms": round(statistics.fmean(arm.ms), 3) if arm.ms else None,
        "from_actual_send_p50_ms": round(_pct(arm.sent_ms, 50), 3),
        "from_actual_send_p99_ms": round(_pct(arm.sent_ms, 99), 3),
    }


def _degradations(base: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith("promptcache_gateway_degradations_total{"):
            name, value = line.rsplit(" ", 1)
            out[name.split('kind="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def _run_load(workdir: Path, seconds: float, rate: int = RATE) -> dict[str, Any]:
    emu_port, gw_port = _free_port(), _free_port()
    emu_url, gw_url = f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{gw_port}"
    with (
        _process(
            ["emulate", "--port", str(emu_port), *(["--light"] if LIGHT else [])],
            emu_url + "/healthz",
            workdir / "emulator.log",
        ) as emu,
        _process(
            [
                "proxy", "--port", str(gw_port), "--openai-upstream", emu_url + "/v1",
                "--anthropic-upstream", emu_url, "--log-level", "warning",
            ],
            gw_url + "/healthz",
            workdir / "gateway.log",
        ) as gw,
    ):  # fmt: skip

        async def main() -> tuple[dict[str, Any], _Arm, _Arm]:
            through, direct = _Arm(gw_url), _Arm(emu_url)
            info = await _load(
                [through, direct], seconds, rate=rate, pids={"gateway": gw.pid, "emulator": emu.pid}
            )
            return info, direct, through

        info, direct, through = _run(main())
    d, t = _summary(direct), _summary(through)
    paired = _paired(through, direct, info.pop("per_window"))
    cpu = info.pop("cpu_ms_per_request")
    cpu_gw, cpu_direct = cpu[gw_url], cpu[emu_url]
    waited = info.pop("waited_ms_per_request")
    wait_gw, wait_direct = waited[gw_url], waited[emu_url]
    return {
        **info,
        "seconds": seconds,
        "rate": rate,
        "streamed_share": round(1 / STREAM_EVERY, 2),
        "tenants": KEYS,
        "latency_from": "scheduled send time",
        "upstream": "emulator, light mode" if LIGHT else "emulator, simulator",
        "direct": d,
        "gateway": t,
        "added_p50_ms": round(t["p50_ms"] - d["p50_ms"], 3),
        "added_p99_ms": round(t["p99_ms"] - d["p99_ms"], 3),
        "paired_added_p50_ms": round(_pct(paired, 50), 3),
        "paired_added_p99_ms": round(_pct(paired, 99), 3),
        "pairs": len(paired),
        "failed": d["failed"] + t["failed"],
        "cpu_ms_per_request": {
            "gateway": cpu_gw["gateway"],
            "emulator_direct": cpu_direct["emulator"],
            "emulator_behind_gateway": cpu_gw["emulator"],
            "load_generator": round((cpu_gw["load_generator"] + cpu_direct["load_generator"]) / 2, 3),
        },
        # Time runnable but not running (waiting for a core the machine's other work holds), per
        # request: what a process busier with CPU loses on a shared machine.
        "waited_for_a_core_ms_per_request": {
            "gateway": wait_gw["gateway"],
            "emulator_direct": wait_direct["emulator"],
            "emulator_behind_gateway": wait_gw["emulator"],
        },
        # What the proxied arm asks of the two cores at this rate: gateway and emulator together,
        # in cores (1.0: one core busy all the time).
        "proxied_arm_cores": round((cpu_gw["gateway"] + cpu_gw["emulator"]) * rate / 1e3, 3),
        "direct_arm_cores": round(cpu_direct["emulator"] * rate / 1e3, 3),
        "target_p99_added_ms": TARGET_P99_ADDED_MS,
        "target_met": t["failed"] == 0 and t["p99_ms"] - d["p99_ms"] <= TARGET_P99_ADDED_MS,
    }


def _paired(through: _Arm, direct: _Arm, per_window: int) -> list[float]:
    """The k-th request of each gateway window minus the k-th of the direct window next to it."""
    out: list[float] = []
    for i, ms in through.by_tick.items():
        k = i - WARMUP
        window, offset = divmod(k, per_window)
        # ABBA: windows 2m and 2m+1 hold one window of each arm.
        twin = window + 1 if window % 2 == 0 else window - 1
        j = WARMUP + twin * per_window + offset
        if j in direct.by_tick:
            out.append(ms - direct.by_tick[j])
    return out


def _run_fault(workdir: Path, seconds: float) -> dict[str, Any]:
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        return {"skipped": "redis-server is not installed (make redis-server)"}
    redis_port, emu_port, gw_port = _free_port(), _free_port(), _free_port()
    redis = subprocess.Popen(
        [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    emu_url, gw_url = f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{gw_port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", redis_port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        with (
            _process(["emulate", "--port", str(emu_port)], emu_url + "/healthz", workdir / "emu-fault.log"),
            _process(
                [
                    "proxy", "--port", str(gw_port), "--openai-upstream", emu_url + "/v1",
                    "--store", f"redis://127.0.0.1:{redis_port}/0", "--log-level", "warning",
                ],
                gw_url + "/healthz",
                workdir / "gateway-fault.log",
            ),
        ):  # fmt: skip
            killed_at: list[float] = []

            def kill() -> None:
                redis.kill()
                killed_at.append(time.perf_counter())

            async def main() -> tuple[dict[str, Any], _Arm, dict[str, float]]:
                # A new tenant per request: every request meets the store (its family's shared state).
                through = _Arm(gw_url, keys=None)
                before: dict[str, float] = {}

                def during() -> None:
                    before.update(_degradations(gw_url))
                    kill()

                info = await _load([through], seconds, during=during)
                info.pop("cpu_ms_per_request")
                info.pop("waited_ms_per_request")
                info.pop("per_window")
                return info, through, before

            info, through, before = _run(main())
            after = _degradations(gw_url)
    finally:
        if redis.poll() is None:
            redis.kill()
        redis.wait(10)
    t = _summary(through)
    return {
        **info,
        "seconds": seconds,
        "redis_killed_after_s": round(seconds / 2, 1),
        "gateway": t,
        "failed": t["failed"],
        "degradations_before_kill": before,
        "degradations_after": after,
        "outage_counted": sum(after.values()) > sum(before.values()),
        "target_met": t["failed"] == 0 and sum(after.values()) > sum(before.values()),
    }


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


SECTIONS = ("load", "load_low_rate", "fault")


def run(
    seconds: float = SECONDS, fault_seconds: float = FAULT_SECONDS, only: tuple[str, ...] = SECTIONS
) -> dict[str, Any]:
    """The sections named in ``only`` (default: all; see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="pc-bench-gateway-") as tmp:
        work = Path(tmp)
        env_dir = work / "cache"
        os.environ.setdefault("PROMPTCACHE_CACHE_DIR", str(env_dir))
        out: dict[str, Any] = {}
        if "load" in only:
            out["load"] = _run_load(work, seconds)
        if "load_low_rate" in only:
            # The same at a rate this shared machine sustains beside its other work: the gateway's
            # added latency when nothing queues.
            out["load_low_rate"] = _run_load(work, seconds, LOW_RATE)
        if "fault" in only:
            out["fault"] = _run_fault(work, fault_seconds)
        return out


def main() -> int:
    """Run and print the JSON figures; write them to ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=SECONDS)
    ap.add_argument("--fault-seconds", type=float, default=FAULT_SECONDS)
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run this section only (repeatable; default: all), e.g. --only load for 200 requests/s",
    )
    args = ap.parse_args()
    result = run(args.seconds, args.fault_seconds, tuple(args.only or SECTIONS))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
