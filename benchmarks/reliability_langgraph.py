"""Redis faults in the middle of a multi-worker LangGraph run (issue 9, faults section: ``redis_langgraph``).

Each worker process runs real LangGraph agent runs in a loop: a ``StateGraph`` (``MessagesState`` +
``CacheMetricsState``) whose agent node calls ``CachingChatModel(ChatOpenAI(...))`` bound to the
tau-bench airline tools, and whose tools node is ``cached_tool_node(tools, cache, tool_specs=...)``.
The model is promptcache's provider emulator (one per worker, its own loopback port), scripted so
each run reads the reservation, reads it again, writes it (invalidating ``reservation:{id}``),
reads it again and answers. Every worker shares one ``PromptCache(store=<redis URL>)`` namespace
through a stalling proxy, while the parent kills, ``DEBUG SLEEP``-s, SIGSTOP-s and restarts Redis
and stalls the network.

The backing read/write functions seal their output with a SHA-256 over its fields (tenant and
reservation included); every ``ToolMessage`` the agent sees is checked, so a served output whose
seal fails (or that names another tenant or reservation) is a corrupted read. Any exception that
escapes ``graph.invoke`` is a failed agent run. Nothing printed or returned holds prompt text.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from benchmarks.reliability_infra import RedisProc, StallProxy, pct

ROOT = Path(__file__).resolve().parents[1]
LC_TESTS = ROOT / "integrations" / "langchain" / "tests"
CTX = mp.get_context("spawn")
TENANT = "acme"
READ_TOOL, WRITE_TOOL = "get_reservation_details", "update_reservation_baggages"

#: Fault names, in the order the controller injects them.
ALL_FAULTS = (
    "redis_killed_then_restarted",
    "redis_debug_sleep",
    "redis_sigstop_sigcont",
    "l2_network_stall_proxy",
)


def seal(fields: dict[str, Any]) -> str:
    """``fields`` as JSON with a ``sha`` over their canonical form."""
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return json.dumps({**fields, "sha": hashlib.sha256(body.encode()).hexdigest()})


def sealed_ok(content: Any, tenant: str, reservation_id: str) -> bool:
    """Whether a tool output is intact (its seal holds) and belongs to ``tenant`` and ``reservation_id``."""
    try:
        d = json.loads(content)
        sha = d.pop("sha")
    except (TypeError, ValueError, KeyError, AttributeError):
        return False
    body = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return (
        hashlib.sha256(body.encode()).hexdigest() == sha
        and d.get("tenant") == tenant
        and d.get("reservation_id") == reservation_id
    )


def _script(res: str) -> list[dict[str, Any]]:
    def call(name: str, **arguments: Any) -> dict[str, Any]:
        return {"tool_calls": [{"name": name, "arguments": arguments}]}

    return [
        call(READ_TOOL, reservation_id=res),
        call(READ_TOOL, reservation_id=res),
        call(WRITE_TOOL, reservation_id=res, total_baggages=2, nonfree_baggages=0, payment_id="cc_4421486"),
        call(READ_TOOL, reservation_id=res),
        {"text": "Your reservation now has 2 checked bags."},
    ]


# the worker ------------------------------------------------------------------------------------


def lg_fault_worker(url: str, wid: int, t0_box: Any, go: Any, duration: float, q: Any) -> None:
    """LangGraph agent runs against ``url`` for ``duration`` seconds after ``go`` is set.

    Puts ``{"ready": wid}`` once built and warmed up, then one result: events
    ``(t, op, ok, tier, ms, corrupt, error)`` with ``op`` in ``run``/``model``/``read``/``write``
    (``tier``: where a tool output came from, ``computed`` when the backing function ran) and the
    store's counters.
    """
    if str(LC_TESTS) not in sys.path:
        sys.path.insert(0, str(LC_TESTS))
    from airline_tools_lc import AIRLINE_SPECS, RES, Backend
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import tools_condition
    from promptcache_langchain import CachingChatModel
    from promptcache_langgraph import CacheMetricsState, cached_tool_node

    from promptcache import PromptCache
    from promptcache.lab.emulate import Emulator

    class State(MessagesState, CacheMetricsState):
        pass

    class SealedBackend(Backend):
        """The airline backend, its reservation reads and writes sealed with a checksum."""

        seq = 0

        def run(self, name: str, args: dict[str, Any]) -> str:
            if name not in (READ_TOOL, WRITE_TOOL):
                return super().run(name, args)
            self.calls[name] += 1
            r = self.reservations[args["reservation_id"]]
            if name == WRITE_TOOL:
                r["total_baggages"], r["nonfree_baggages"] = args["total_baggages"], args["nonfree_baggages"]
            self.seq += 1
            pad = hashlib.sha256(f"{wid}:{self.seq}".encode()).hexdigest() * 4
            return seal({**r, "tenant": TENANT, "writer": wid, "seq": self.seq, "pad": pad})

    cache = PromptCache(store=url)
    backend = SealedBackend()
    tools = backend.tools()
    events: list[tuple[float, str, bool, str | None, float, bool, str | None]] = []
    stored: list[tuple[float, str, tuple[int, int] | None, bool]] = []  # outputs this worker computed
    served: list[tuple[float, str, tuple[int, int] | None, bool]] = []  # outputs served from a tier
    t0 = [0.0]
    last_tool = [0.0]

    def now() -> float:
        return time.time() - t0[0]

    with Emulator(script=_script(RES)) as emu:
        model = CachingChatModel(
            ChatOpenAI(model="gpt-4o", api_key="k", base_url=emu.openai_base_url, max_retries=0, timeout=10),
            cache,
        ).bind_tools(tools)

        def agent(state: State) -> dict[str, Any]:
            last = state["messages"][-1]
            if isinstance(last, ToolMessage):  # the tools node just answered: judge what it served
                meta = last.response_metadata.get("promptcache") or {}
                tier = (meta.get("tier") or "l?") if meta.get("hit") else "computed"
                op = "read" if last.name == READ_TOOL else "write"
                corrupt = op == "read" and not sealed_ok(last.content, TENANT, RES)
                if op == "read":
                    try:
                        d = json.loads(last.content)
                        origin = (int(d["writer"]), int(d["seq"]))
                    except (TypeError, ValueError, KeyError):
                        origin = None
                    (stored if tier == "computed" else served).append((now(), tier, origin, corrupt))
                events.append(
                    (now(), op, True, tier, (time.perf_counter() - last_tool[0]) * 1000, corrupt, None)
                )
            t = time.perf_counter()
            try:
                msg = model.invoke(state["messages"])
            except Exception as exc:
                events.append(
                    (now(), "model", False, None, (time.perf_counter() - t) * 1000, False, type(exc).__name__)
                )
                raise
            events.append((now(), "model", True, None, (time.perf_counter() - t) * 1000, False, None))
            last_tool[0] = time.perf_counter()
            return {"messages": [msg]}

        g = StateGraph(State)
        g.add_node("agent", agent)
        g.add_node("tools", cached_tool_node(tools, cache, tool_specs=AIRLINE_SPECS))
        g.add_edge(START, "agent")
        g.add_conditional_edges("agent", tools_condition)
        g.add_edge("tools", "agent")
        graph = g.compile()
        config = {"configurable": {"tenant_id": TENANT}, "recursion_limit": 20}

        def one_run() -> None:
            emu.reset()
            t = time.perf_counter()
            start = now()
            try:
                graph.invoke({"messages": [HumanMessage("Add a bag to my reservation.")]}, config)
                ok, err = True, None
            except Exception as exc:  # an escaped exception is a failed agent run: counted, never hidden
                ok, err = False, type(exc).__name__
            events.append((start, "run", ok, None, (time.perf_counter() - t) * 1000, False, err))

        one_run()  # warm up (imports, connections) before the clock starts
        events.clear()
        stored.clear()
        served.clear()
        q.put({"ready": wid})
        go.wait(120)
        t0[0] = t0_box.value
        rng = random.Random(wid)
        while now() < duration:
            one_run()
            # users do not arrive in lockstep: without a jitter, workers with the same cycle can stay
            # phase-locked so that one never reads what another wrote before the next write
            time.sleep(rng.uniform(0.0, 0.15))
        st = cache.store.stats()
        counters = {
            "l2_tier_skipped": st.tiers["l2"].tier_skipped,
            "l2_corrupt": st.tiers["l2"].corrupt,
            "writeback_failed": st.writeback_failed,
            "writeback_dropped": st.writeback_dropped,
            "publish_failed": st.publish_failed,
            "tools": cache.tools.stats().model_dump(),
        }
        if "l3" in st.tiers:
            counters["l3_tier_skipped"] = st.tiers["l3"].tier_skipped
    cache.store.close(timeout=2)
    q.put(
        {
            "wid": wid,
            "events": events,
            "stored": stored,
            "served": served,
            "counters": counters,
            "backend_calls": dict(backend.calls),
        }
    )


# the parent -------------------------------------------------------------------------------------


def _r(x: float | None, n: int = 2) -> float | None:
    return None if x is None else round(x, n)


def _figures(
    results: list[dict[str, Any]], faults: list[tuple[str, float, float]], duration: float
) -> dict[str, Any]:
    """The same shape as the core ``redis`` fault figures, plus agent-run and model/tool counts."""
    events = [e for r in results for e in r["events"]]
    runs = [e for e in events if e[1] == "run"]
    calls = [e for e in events if e[1] != "run"]
    failed_runs = [e for e in runs if not e[2]]
    per_fault: dict[str, Any] = {}
    for name, start, end in faults:
        during = [e for e in calls if start <= e[0] < end]
        runs_during = [e for e in runs if start <= e[0] < end]
        recov: list[float] = []
        for r in results:  # the first L2 hit of each worker after the fault ended
            after = [e[0] for e in r["events"] if e[0] >= end and e[1] == "read" and e[3] == "l2"]
            recov.append(after[0] - end if after else float("inf"))
        finite = [x for x in recov if x != float("inf")]
        per_fault[name] = {
            "window_s": [round(start, 2), round(end, 2)],
            "agent_runs": len(runs_during),
            "failed_agent_runs": sum(1 for e in runs_during if not e[2]),
            "calls": len(during),
            "failed_calls": sum(1 for e in during if not e[2]),
            "p50_ms": _r(pct([e[4] for e in during], 0.5)),
            "p99_ms": _r(pct([e[4] for e in during], 0.99)),
            "max_ms": _r(max((e[4] for e in during), default=None)),
            "run_p50_ms": _r(pct([e[4] for e in runs_during], 0.5)),
            "run_max_ms": _r(max((e[4] for e in runs_during), default=None)),
            "served_from": dict(Counter(str(e[3]) for e in during if e[1] == "read")),
            "recovery_s_per_worker": [None if x == float("inf") else round(x, 3) for x in recov],
            "recovered_all_workers": len(finite) == len(recov),
            "recovery_s_max": _r(max(finite)) if finite else None,
        }
    base = [e for e in calls if e[0] < faults[0][1]] if faults else calls
    counters: dict[str, int] = defaultdict(int)
    for r in results:
        for k, v in r["counters"].items():
            for k2, v2 in v.items() if isinstance(v, dict) else [("", v)]:
                counters[f"{k}.{k2}" if k2 else k] += v2
    reads = [e for e in calls if e[1] == "read"]
    return {
        "workers": len(results),
        "duration_s": duration,
        "agent_runs": len(runs),
        "failed_agent_runs": len(failed_runs),
        "model_calls": sum(1 for e in calls if e[1] == "model"),
        "tool_calls": sum(1 for e in calls if e[1] in ("read", "write")),
        "calls": len(calls),
        "failed_calls": sum(1 for e in calls if not e[2]),
        "failed_by_error": dict(Counter(e[6] for e in events if not e[2])),
        "tool_reads_served_from": dict(Counter(str(e[3]) for e in reads)),
        "corrupted_reads": sum(1 for e in reads if e[5]),
        "corrupted_served_reads": sum(1 for e in reads if e[5] and e[3] != "computed"),
        "baseline_p50_ms": _r(pct([e[4] for e in base], 0.5)),
        "baseline_run_p50_ms": _r(pct([e[4] for e in runs if not faults or e[0] < faults[0][1]], 0.5)),
        "faults": per_fault,
        "counters_sum": {k: v for k, v in counters.items() if v},
    }


def _written_in_fault(
    results: list[dict[str, Any]], faults: list[tuple[str, float, float]]
) -> dict[str, Any]:
    """Outputs computed (and written through) during a fault window, or within 1 s after it, and
    later served from a tier to any worker: how many, and how many of those failed their seal."""
    written_at = {
        (r["wid"], s[2][1]): s[0]
        for r in results
        for s in r["stored"]
        if s[2] is not None and s[2][0] == r["wid"]
    }

    def in_fault(t: float) -> bool:
        return any(s <= t < e + 1.0 for _, s, e in faults)

    in_fault_keys = {k for k, t in written_at.items() if in_fault(t)}
    hits = [s for r in results for s in r["served"]]
    of_fault = [s for s in hits if s[2] is not None and tuple(s[2]) in in_fault_keys]
    return {
        "outputs_written_in_fault_windows": len(in_fault_keys),
        "served_reads_of_those": len(of_fault),
        "served_reads_of_those_from": dict(Counter(s[1] for s in of_fault)),
        "served_reads_of_those_corrupted": sum(1 for s in of_fault if s[3]),
        "served_reads_unattributable": sum(1 for s in hits if s[2] is None),
    }


def _read_back(url: str) -> dict[str, Any]:
    """Read the reservation back from Redis in this (fresh) process, as the tools node keys it."""
    if str(LC_TESTS) not in sys.path:
        sys.path.insert(0, str(LC_TESTS))
    from airline_tools_lc import AIRLINE_SPECS, RES

    from promptcache import PromptCache

    cache = PromptCache(store=url)
    try:
        out = cache.tools.run(
            AIRLINE_SPECS[READ_TOOL], {"reservation_id": RES}, lambda: {"content": "{}"}, tenant=TENANT
        )
        hit = out.lookup.hit
        ok = sealed_ok(out.value.get("content"), TENANT, RES) if hit else True
    except Exception:
        hit, ok = True, False
    finally:
        cache.store.close(timeout=2)
    return {"read_back_hits": int(hit), "read_back_corrupted": int(hit and not ok)}


def faults_redis_langgraph(
    tmp: Path,
    quick: bool = False,
    *,
    workers: int = 3,
    faults: tuple[str, ...] = ALL_FAULTS,
    fault_s: float | None = None,
    gap_s: float = 3.0,
) -> dict[str, Any]:
    """Kill, DEBUG SLEEP, SIGSTOP and restart Redis, and stall L2, while ``workers`` processes run agents."""
    unknown = set(faults) - set(ALL_FAULTS)
    if unknown:
        raise ValueError(f"unknown faults: {sorted(unknown)}")
    server = RedisProc(tmp / "redis-faults-langgraph")
    proxy = StallProxy(server.port)
    d = fault_s if fault_s is not None else (1.5 if quick else 2.0)
    lead = 3.0
    duration = lead + len(faults) * (d + gap_s) + 1

    def controller(t0: float) -> list[tuple[str, float, float]]:
        out = []

        def at(t: float) -> None:
            while time.time() - t0 < t:
                time.sleep(0.005)

        t = lead
        for name in faults:
            at(t)
            if name == "redis_killed_then_restarted":
                server.kill()
                at(t + d)
                server.start()
                out.append((name, t, time.time() - t0))
            elif name == "redis_debug_sleep":
                server.debug_sleep(d)
                out.append((name, t, t + d))
            elif name == "redis_sigstop_sigcont":
                server.pause()
                at(t + d)
                server.resume()
                out.append((name, t, time.time() - t0))
            else:
                proxy.stalled.set()
                at(t + d)
                proxy.stalled.clear()
                out.append((name, t, time.time() - t0))
            t += d + gap_s
        return out

    q = CTX.Queue()
    go = CTX.Event()
    t0_box = CTX.Value("d", 0.0)
    procs = [
        CTX.Process(target=lg_fault_worker, args=(proxy.url, i, t0_box, go, duration, q))
        for i in range(workers)
    ]
    try:
        for p in procs:
            p.start()
        for _ in procs:
            msg = q.get(timeout=120)
            if "ready" not in msg:
                raise RuntimeError("a worker answered before it was ready")
        t0 = time.time() + 0.2
        t0_box.value = t0
        go.set()
        while time.time() < t0:
            time.sleep(0.005)
        injected = controller(t0)
        results = [q.get(timeout=duration + 60) for _ in procs]
        figs = _figures(results, injected, duration)
        figs["read_back"] = _read_back(server.url)
        figs["written_during_fault"] = _written_in_fault(results, injected)
        figs["backend_calls"] = dict(sum((Counter(r["backend_calls"]) for r in results), Counter()))
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
        proxy.close()
        server.stop()
    figs["note"] = (
        f"{workers} OS processes, each running LangGraph StateGraph agent runs in a loop "
        "(CachingChatModel(ChatOpenAI) against its own provider emulator, cached_tool_node over the "
        "tau-bench airline tools: read, read, write (invalidates), read, answer), one Redis behind a "
        "stalling proxy; a failed run is any exception escaping graph.invoke; tool outputs are sealed "
        "with a SHA-256 and checked on every read the agent sees; recovery = first L2 hit per worker "
        "after the fault ended"
    )
    figs["passed"] = (
        figs["agent_runs"] > 0
        and figs["failed_agent_runs"] == 0
        and figs["failed_calls"] == 0
        and figs["corrupted_reads"] == 0
        and figs["read_back"]["read_back_corrupted"] == 0
        and figs["written_during_fault"]["served_reads_of_those_corrupted"] == 0
        and all(f["recovered_all_workers"] for f in figs["faults"].values())
    )
    return figs


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.reliability_langgraph [--quick]``: print the figures as JSON."""
    import argparse
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pc-rel-lg-") as d:
        figs = faults_redis_langgraph(Path(d), args.quick, workers=args.workers)
    print(json.dumps(figs, indent=2, default=str))
    return 0 if figs["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
