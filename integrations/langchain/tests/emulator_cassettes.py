"""vcrpy cassettes recorded against promptcache's own provider emulator, and replayed without it.

Shared by the LangChain, LangGraph and LlamaIndex cassette tests and their recorder scripts
(``record_cassettes_*.py``). Not a test module and not a conftest.py.

* :func:`emulator_vcr` — the one VCR configuration: auth headers stripped, requests matched on
  method + path + JSON body (a body that differs by one byte of meaning fails the replay), and
  cassette files that start with a YAML comment saying what they were recorded against.
* :func:`closed_base_url` — a loopback URL where nothing listens (checked), for the replays.
* :func:`recorded_bodies` / :func:`recorded_usages` — the request bodies and the provider usage
  (read independently of promptcache, straight from the wire JSON/SSE) stored in a cassette.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import vcr
import yaml
from vcr.serializers import yamlserializer

STABLE_API_KEY = "sk-emulator-cassette"
"""The API key every recording and replay uses (the emulator names its cache org after it)."""

AUTH_HEADERS = ["authorization", "x-api-key", "api-key", "openai-organization", "openai-project"]
MATCH_ON = ["method", "path", "json_body"]
SUFFIX = "__emulator.yaml"
HEADER_FIRST_LINE = "# Recorded against promptcache's own provider emulator"
REPO = Path(__file__).resolve().parents[3]


def _header(command: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"{HEADER_FIRST_LINE} (promptcache.lab.emulate.Emulator on 127.0.0.1),\n"
        "# NOT a real provider: every answer and every usage figure here comes from the emulator's\n"
        "# scripted turns (or its echo of the last user text) and its simulated prompt cache.\n"
        f"# Recorded at {when} with: {command}\n"
        "# Auth headers are stripped; the recording used a fixed fake API key.\n"
    )


class _HeaderSerializer:
    """vcrpy's YAML serializer, with the provenance comment in front."""

    def __init__(self, command: str) -> None:
        self.command = command

    def serialize(self, cassette_dict: dict[str, Any]) -> str:
        return _header(self.command) + yamlserializer.serialize(cassette_dict)

    def deserialize(self, cassette_string: str) -> Any:
        return yamlserializer.deserialize(cassette_string)  # YAML ignores the comment


def _json(body: Any) -> Any:
    if body is None or body == b"" or body == "":
        return None
    if isinstance(body, bytes):
        body = body.decode()
    return json.loads(body)


def json_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the two request bodies are the same JSON (key order aside)."""
    a, b = _json(r1.body), _json(r2.body)
    if a != b:
        diff = _first_difference(a, b)
        raise AssertionError(f"request bodies differ at {diff}")


def _first_difference(a: Any, b: Any, where: str = "$") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{where}.{k} (present on one side only)"
            if a[k] != b[k]:
                return _first_difference(a[k], b[k], f"{where}.{k}")
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where} (length {len(a)} != {len(b)})"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return f"{where}: {str(a)[:160]!r} != {str(b)[:160]!r}"


def emulator_vcr(cassette_dir: Path, *, record_mode: str = "none", command: str = "") -> vcr.VCR:
    """The VCR for emulator cassettes: ``record_mode="none"`` replays, ``"all"`` re-records."""
    v = vcr.VCR(
        cassette_library_dir=str(cassette_dir),
        record_mode=record_mode,
        match_on=MATCH_ON,
        filter_headers=AUTH_HEADERS,
        serializer="emulator_yaml",
        decode_compressed_response=True,
    )
    v.register_serializer("emulator_yaml", _HeaderSerializer(command or recorder_command()))
    v.register_matcher("json_body", json_body)
    return v


def recorder_command() -> str:
    """How this process was started, the script repository-relative (for the header)."""
    argv = [sys.argv[0], *sys.argv[1:]]
    with contextlib.suppress(ValueError):
        argv[0] = str(Path(argv[0]).resolve().relative_to(REPO))
    return "python " + " ".join(argv) + "  (from the repository root)"


# -- replay side ---------------------------------------------------------------------------------


def closed_base_url() -> str:
    """``http://127.0.0.1:PORT`` for a port where nothing listens (asserted by a refused connect)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert_nothing_listens(port)
    return f"http://127.0.0.1:{port}"


def assert_nothing_listens(port: int) -> None:
    with socket.socket() as s, contextlib.suppress(ConnectionRefusedError):
        s.settimeout(1)
        s.connect(("127.0.0.1", port))
        raise AssertionError(f"something listens on 127.0.0.1:{port}: the replay must not need a server")


def read_header(path: Path) -> list[str]:
    """The leading comment lines of a cassette file."""
    lines = []
    with path.open() as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines.append(line.rstrip("\n"))
    return lines


def check_cassette_file(path: Path) -> None:
    """The cassette exists, is named ``*__emulator.yaml`` and says what it was recorded against."""
    assert path.name.endswith(SUFFIX), path.name
    assert path.exists(), f"{path} missing: re-record it with the record_cassettes_*.py script"
    header = read_header(path)
    assert header and header[0].startswith(HEADER_FIRST_LINE), header[:1]
    assert any("Recorded at " in h and " with: " in h for h in header), header


def _interactions(path: Path) -> list[dict[str, Any]]:
    data = yaml.load(path.read_text(), Loader=yamlserializer._CassetteLoader)
    return list(data["interactions"])


def recorded_bodies(path: Path) -> list[dict[str, Any]]:
    """The JSON request bodies stored in a cassette, in recorded order."""
    return [json.loads(i["request"]["body"]) for i in _interactions(path)]


def recorded_paths(path: Path) -> list[str]:
    return [i["request"]["uri"].split("://", 1)[1].split("/", 1)[1] for i in _interactions(path)]


def _response_text(interaction: dict[str, Any]) -> str:
    body = interaction["response"]["body"]["string"]
    return body.decode() if isinstance(body, bytes) else str(body)


def _sse_data(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
            yield json.loads(line[5:])


def wire_usage(text: str) -> dict[str, int]:
    """Provider usage of one recorded answer (JSON or SSE; OpenAI Chat or Responses, Anthropic
    Messages), normalised: ``input`` counts every prompt token, cached or not (Anthropic's own
    ``input_tokens`` excludes cache reads and writes)."""
    text = text.strip()
    events = [json.loads(text)] if text.startswith("{") else list(_sse_data(text))
    out = {"input": 0, "read": 0, "write": 0, "output": 0}
    for ev in events:
        if ev.get("type") == "message_start":
            ev = ev["message"]
        elif ev.get("type") == "response.completed":  # OpenAI Responses stream: the last event
            ev = ev["response"]
        u = ev.get("usage")
        if not u:
            continue
        if "input_tokens_details" in u:  # OpenAI Responses
            details = u.get("input_tokens_details") or {}
            out = {
                "input": u["input_tokens"],
                "read": details.get("cached_tokens", 0),
                "write": details.get("cache_write_tokens", 0),
                "output": u["output_tokens"],
            }
        elif "prompt_tokens" in u:  # OpenAI Chat: one usage object per answer
            details = u.get("prompt_tokens_details") or {}
            out = {
                "input": u["prompt_tokens"],
                "read": details.get("cached_tokens", 0),
                "write": details.get("cache_write_tokens", 0),
                "output": u["completion_tokens"],
            }
        else:  # Anthropic: message_start then a cumulative message_delta
            read = u.get("cache_read_input_tokens", out["read"]) or 0
            write = u.get("cache_creation_input_tokens", out["write"]) or 0
            plain = u.get("input_tokens")
            if plain is not None:
                out["input"] = plain + read + write
            out.update(read=read, write=write, output=u.get("output_tokens", out["output"]))
    return out


def recorded_usages(path: Path) -> list[dict[str, int]]:
    """The provider usage of every recorded answer, in order."""
    return [wire_usage(_response_text(i)) for i in _interactions(path)]


def totals(usages: list[dict[str, int]]) -> dict[str, int]:
    return {k: sum(u[k] for u in usages) for k in ("input", "read", "write", "output")}


def isolated_cache_dir(tmp: str | os.PathLike[str]) -> None:
    """Point promptcache's on-disk tiers at ``tmp`` (record and replay start from nothing)."""
    os.environ["PROMPTCACHE_CACHE_DIR"] = str(tmp)


def airline(task_id: int = 2) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The real tau-bench airline trajectory ``task_id`` (gpt-4o) and the airline tool schemas."""
    from promptcache.lab.traces import AGENTS, load_trajectories

    run = next(r for r in load_trajectories() if r["task_id"] == task_id)
    tools: list[dict[str, Any]] = json.loads((AGENTS / "tau_bench_airline_tools.json").read_text())
    return run["traj"], tools


class BaseUrls:
    """Stands in for an ``Emulator`` where only its base URLs are read (the replays)."""

    def __init__(self, root: str) -> None:
        self.base_url = root
        self.openai_base_url = root + "/v1"
        self.anthropic_base_url = root
