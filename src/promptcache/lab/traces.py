"""Bench traces built from the real tau-bench agent trajectories, with the cache killers users report.

A trace is JSON lines, one model call each: ``{"ts": seconds, "tenant": "...",
"format": "openai-chat" | "anthropic-messages" | ..., "body": {...}}``. Each
assistant turn of a recorded trajectory is one call whose body holds the system
prompt, the tools and the history before that turn (gpt-4o as recorded).

Scenarios (:data:`SCENARIOS`):

* ``clean`` — as recorded (the airline prompt's own fixed clock line included);
* ``clock`` — a clock line in the system prompt that changes every call (the airline
  prompt's recorded ``The current time is ...`` line is rewritten; the retail prompt has
  none, so one is added after its first paragraph);
* ``tool_order`` — the tool list in a different order on every call;
* ``call_ids`` — a per-call request id line in the system prompt;
* ``memory`` — per-call memory spliced before the history: a second system message
  ``Relevant memory: ...`` that changes on every call;
* ``combined`` — all of the above.

Several trajectories are interleaved in time (conversations of one app run
concurrently and share its prompt), each turn 8–40 s after the previous one.
``domain="retail"`` uses the retail prompt and tools; tau-bench ships no recorded
retail trajectory here, so the retail traces replay the recorded airline
conversations under the retail prefix — the prefix shape changes (no clock line,
different tools), the conversation does not.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from promptcache.formats import WireFormat
from promptcache.lab.bundled import AGENTS
from promptcache.lab.convert import convert
from promptcache.lab.emulate import ScriptItem, ScriptText, ScriptToolCall, ScriptToolCalls

__all__ = [
    "AGENTS",
    "SCENARIOS",
    "TraceError",
    "TraceLine",
    "build_trace",
    "load_trajectories",
    "read_trace",
    "read_trace_for",
    "script_from_trajectory",
    "trace_digest",
    "write_trace",
]

Json = dict[str, Any]
Scenario = Literal["clean", "clock", "tool_order", "call_ids", "memory", "combined"]
SCENARIOS: tuple[Scenario, ...] = ("clean", "clock", "tool_order", "call_ids", "memory", "combined")
Domain = Literal["airline", "retail"]

_TIME_LINE = re.compile(r"^The current time is .*$", re.MULTILINE)
_MEMORY_FACTS = (
    "prefers aisle seats",
    "usually pays with a travel certificate first",
    "asked about baggage allowance last time",
    "is a gold member since 2021",
    "had a cancelled flight in March",
    "prefers morning departures",
    "lives near JFK",
    "asked for a refund to the original card",
    "travels with one checked bag",
    "declined travel insurance twice",
)


class TraceLine(BaseModel):
    """One logged or synthetic model call."""

    model_config = ConfigDict(extra="forbid")

    ts: float = Field(description="seconds since the trace started")
    tenant: str
    format: WireFormat
    body: Json


def load_trajectories(agents: Path = AGENTS) -> list[Json]:
    """The recorded tau-bench airline trajectories (gpt-4o agent), as stored."""
    data: list[Json] = json.loads((agents / "tau_bench_airline_gpt4o_trajectories_sample.json").read_text())
    return data


def _prompt_and_tools(domain: Domain, agents: Path) -> tuple[str | None, list[Json]]:
    tools: list[Json] = json.loads((agents / f"tau_bench_{domain}_tools.json").read_text())
    if domain == "airline":
        return None, tools  # the trajectories carry the airline prompt as recorded
    return (agents / "tau_bench_retail_system_prompt.md").read_text(), tools


def _clock(system: str, ts: float) -> str:
    minute, second = divmod(int(ts), 60)
    hour, minute = divmod(minute, 60)
    line = f"The current time is 2024-05-15 {15 + hour:02d}:{minute:02d}:{second:02d} EST."
    if _TIME_LINE.search(system):
        return _TIME_LINE.sub(line, system, count=1)
    return system.replace("\n\n", f"\n\n{line}\n\n", 1)


def _request_id(system: str, rng: random.Random) -> str:
    rid = "req_" + "".join(rng.choice("0123456789abcdef") for _ in range(24))
    head, sep, rest = system.partition("\n\n")
    return f"{head}{sep}Request ID: {rid}\n\n{rest}" if sep else f"Request ID: {rid}\n{system}"


def _memory(rng: random.Random, call: int) -> str:
    facts = rng.sample(_MEMORY_FACTS, 3)
    return "Relevant memory: " + "; ".join(facts) + f". (retrieved {call} notes, score {rng.random():.3f})"


def build_trace(
    scenario: Scenario,
    *,
    domain: Domain = "airline",
    tasks: Sequence[int] | None = None,
    format: str | WireFormat = WireFormat.OPENAI_CHAT,
    seed: int = 7,
    tenant: str | None = None,
    agents: Path = AGENTS,
) -> list[TraceLine]:
    """One call per assistant turn of the chosen trajectories (all by default), interleaved in time.

    ``tasks`` are indices into the stored trajectory list; ``format`` converts each body
    (:func:`promptcache.lab.convert.convert`) as an app on that provider would send it.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r}: use one of {', '.join(SCENARIOS)}")
    fmt = WireFormat(format)
    trajs = load_trajectories(agents)
    chosen = [trajs[i] for i in (tasks if tasks is not None else range(len(trajs)))]
    system_override, tools = _prompt_and_tools(domain, agents)
    rng = random.Random(f"{seed}:{scenario}:{domain}")
    kill = {scenario} if scenario != "combined" else set(SCENARIOS) - {"clean", "combined"}

    # Conversation k starts 7k s in; each turn 8-40 s after the previous one.
    calls: list[tuple[float, int, int, list[Json]]] = []
    for k, t in enumerate(chosen):
        traj: list[Json] = t["traj"]
        ts = 7.0 * k
        for i, m in enumerate(traj):
            if m["role"] != "assistant":
                continue
            ts += rng.uniform(8.0, 40.0)
            calls.append((round(ts, 3), k, i, traj))
    calls.sort(key=lambda c: (c[0], c[1]))

    lines: list[TraceLine] = []
    for n, (ts, _k, i, traj) in enumerate(calls):
        system = system_override if system_override is not None else str(traj[0]["content"])
        if "clock" in kill:
            system = _clock(system, ts)
        if "call_ids" in kill:
            system = _request_id(system, rng)
        call_tools = list(tools)
        if "tool_order" in kill:
            rng.shuffle(call_tools)
        messages: list[Json] = [{"role": "system", "content": system}]
        if "memory" in kill:
            messages.append({"role": "system", "content": _memory(rng, n)})
        messages += [dict(m) for m in traj[1:i]]
        body: Json = {"model": "gpt-4o", "messages": messages, "tools": call_tools}
        if fmt is not WireFormat.OPENAI_CHAT:
            body = convert(body, WireFormat.OPENAI_CHAT, fmt)
        lines.append(TraceLine(ts=ts, tenant=tenant or f"tau-{domain}", format=fmt, body=body))
    return lines


def write_trace(path: str | Path, lines: Iterable[TraceLine]) -> int:
    """Write ``lines`` as JSON lines; returns how many."""
    n = 0
    with Path(path).open("w") as f:
        for line in lines:
            f.write(line.model_dump_json() + "\n")
            n += 1
    return n


class TraceError(ValueError):
    """A request log or trace that cannot be read: ``str()`` names the file, the line and the field."""

    def __init__(self, path: str | Path, line: int | None, message: str, field: str | None = None) -> None:
        """``line`` is 1-based (None: the whole file); ``field`` the top-level field at fault."""
        self.path, self.line, self.field = str(path), line, field
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


_FIELDS = "ts (seconds), tenant, format (wire format), body (the request as sent)"
_FORMATS = ", ".join(f.value for f in WireFormat)
_HINTS = {
    "ts": "a number of seconds, e.g. time.time()",
    "tenant": "a string naming the tenant",
    "body": "the request body as sent, a JSON object",
}
_BODY_KEYS = {"messages", "model", "contents", "input", "system", "modelId", "tools"}


def _line_error(path: str | Path, no: int, raw: str) -> TraceError:
    """Why ``raw`` is not a trace line, as precisely as the line allows."""
    from pydantic import ValidationError

    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        return TraceError(
            path, no, f"not JSON ({exc.msg} at column {exc.colno}); each line is one JSON object"
        )
    if not isinstance(doc, dict):
        return TraceError(path, no, f"a JSON {type(doc).__name__}, not an object; each line is {{{_FIELDS}}}")
    if not {"ts", "tenant", "format", "body"} & doc.keys() and _BODY_KEYS & doc.keys():
        return TraceError(
            path,
            no,
            "a bare request body without its envelope; write each request as "
            '{"ts": ..., "tenant": ..., "format": ..., "body": <the request>}',
        )
    try:
        TraceLine.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else None
        if err["type"] == "missing":
            msg = f"field {field!r} is missing; each line needs {_FIELDS}"
        elif err["type"] == "extra_forbidden":
            msg = f"field {field!r} is not part of a trace line; the fields are {_FIELDS}"
        elif field == "format":
            msg = f"field 'format': {doc.get('format')!r} is not a wire format; use one of {_FORMATS}"
        else:
            hint = _HINTS.get(field or "")
            msg = f"field {field!r}: {err['msg']}" + (f"; it must be {hint}" if hint else "")
        return TraceError(path, no, msg, field)
    return TraceError(path, no, "not a trace line")


def read_trace_for(command: str, path: str | Path, what: str = "trace") -> list[TraceLine] | None:
    """:func:`read_trace` for a CLI command: the lines, or None after one error line on stderr.

    A missing, unreadable, malformed or empty file is the same for every command that reads
    traces: ``promptcache COMMAND: <what went wrong>``, and the command exits 2.
    """
    try:
        lines = read_trace(path)
    except (OSError, ValueError) as exc:
        print(f"promptcache {command}: {exc}", file=sys.stderr)
        return None
    if not lines:
        print(f"promptcache {command}: the {what} is empty", file=sys.stderr)
        return None
    return lines


def read_trace(path: str | Path) -> list[TraceLine]:
    """Read a JSON-lines trace (blank lines skipped).

    Raises :class:`TraceError` naming the file, the line and the field at fault.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(path, None, "no such file") from None
    except IsADirectoryError:
        raise TraceError(path, None, "a directory, not a JSON-lines file") from None
    except UnicodeDecodeError as exc:
        raise TraceError(path, None, f"not UTF-8 text (byte {exc.start}); a trace is JSON lines") from None
    out = []
    for no, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            out.append(TraceLine.model_validate_json(raw))
        except ValueError:
            raise _line_error(path, no, raw) from None
    return out


def script_from_trajectory(traj: Sequence[Json]) -> list[ScriptItem]:
    """A recorded trajectory's assistant turns as an :class:`~promptcache.lab.emulate.Emulator` script."""
    items: list[ScriptItem] = []
    for m in traj:
        if m.get("role") != "assistant":
            continue
        calls = m.get("tool_calls") or []
        if calls:
            items.append(
                ScriptToolCalls(
                    text=m.get("content") or None,
                    tool_calls=[
                        ScriptToolCall(
                            name=c["function"]["name"],
                            arguments=json.loads(c["function"].get("arguments") or "{}"),
                        )
                        for c in calls
                    ],
                )
            )
        else:
            items.append(ScriptText(text=str(m.get("content") or "")))
    return items


def trace_digest(lines: Sequence[TraceLine]) -> str:
    """A short digest of a trace's content, to tell traces apart in reports."""
    h = hashlib.sha256()
    for line in lines:
        h.update(line.model_dump_json().encode())
    return h.hexdigest()[:12]
