"""Fuzzing for the reliability report and tests: hypothesis over the canonicalizer, the wire adapters,
``prepare_request``, the usage parsers and policy loading; a bounded atheris run in a subprocess.

Documented error types: ``CanonicalizationError`` (canonical_json), ``WireFormatError``/``ValueError``
(adapters, prepare_request), ``ValueError`` (usage parsers), ``PolicyError`` (Policy.load).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FORMATS = ("openai-chat", "openai-responses", "anthropic-messages", "bedrock-converse", "gemini")
FIELDS = [
    "model",
    "modelId",
    "messages",
    "role",
    "content",
    "system",
    "tools",
    "input",
    "instructions",
    "contents",
    "parts",
    "text",
    "type",
    "usage",
    "prompt_tokens",
    "input_tokens",
    "cache_read_input_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "usageMetadata",
    "cachedContentTokenCount",
    "promptTokenCount",
    "inputTokens",
    "cacheReadInputTokens",
    "toolResult",
    "tool_calls",
    "function",
    "name",
    "systemInstruction",
    "cache_control",
    "message",
    "delta",
    "choices",
    "response",
    "entries",
    "ttl",
    "version",
]

TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    [
        "system",
        "user",
        "assistant",
        "tool",
        "developer",
        "model",
        "text",
        "gpt-4o",
        "2024-05-16T10:00:00Z",
        "\r\n",
        "é",
    ]
)
SCALAR = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | TEXT
JSON = st.recursive(
    SCALAR,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | TEXT, c, max_size=5),
    max_leaves=30,
)
BODY = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6)


def _target(fn: Callable[..., None], strat: Any, examples: int) -> dict[str, Any]:
    counts = {"examples": 0, "escaped": 0, "not_idempotent": 0}
    escaped: list[str] = []
    first: list[str] = []

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strat)
    def run(x: Any) -> None:
        counts["examples"] += 1
        try:
            fn(x)
        except AssertionError:
            counts["not_idempotent"] += 1
        except Exception as exc:
            counts["escaped"] += 1
            escaped.append(type(exc).__name__)
            if len(first) < 2:  # fuzz data only (never user prompts): kept for a repro
                tb = exc.__traceback__
                while tb is not None and tb.tb_next is not None:
                    tb = tb.tb_next
                where = f"{tb.tb_frame.f_code.co_filename.split('/')[-1]}:{tb.tb_lineno}" if tb else "?"
                first.append(f"{type(exc).__name__} at {where}: {repr(x)[:300]}")

    run()
    return {**counts, "escaped_types": sorted(set(escaped)), "first_escapes": first}


def run_hypothesis(examples: int = 300) -> dict[str, Any]:
    """Each target: examples run, undocumented exceptions escaped, idempotence failures."""
    import orjson

    from promptcache import PromptCache
    from promptcache.canonical import CanonicalizationError, canonical_json, canonical_text
    from promptcache.policy import Policy, PolicyError
    from promptcache.providers.usage import usage_from_response, usage_from_stream
    from promptcache.wire import WireFormatError, get_adapter

    cache = PromptCache()

    def canon_text(s: str) -> None:
        once = canonical_text(s)
        assert canonical_text(once) == once

    def canon_json(v: Any) -> None:
        try:
            once = canonical_json(v)
        except CanonicalizationError:
            return
        assert canonical_json(orjson.loads(once)) == once

    def split(arg: tuple[str, dict[str, Any]]) -> None:
        fmt, body = arg
        with contextlib.suppress(WireFormatError):
            get_adapter(fmt).split(body)

    def prepare(arg: tuple[str, dict[str, Any]]) -> None:
        fmt, body = arg
        body.setdefault("model", "gpt-4o")
        try:
            p = cache.prepare_request(body, format=fmt, tenant="t")
        except (WireFormatError, CanonicalizationError):
            return
        # a rewritten body, prepared again, is a fixed point of the layout (idempotent)
        try:
            again = cache.prepare_request(p.body, format=fmt, tenant="t")
        except (WireFormatError, CanonicalizationError):
            return
        assert (
            again.plan.prefix_key == cache.prepare_request(again.body, format=fmt, tenant="t").plan.prefix_key
        )

    def usage(arg: tuple[str, dict[str, Any]]) -> None:
        fmt, body = arg
        with contextlib.suppress(ValueError):
            usage_from_response(fmt, body, model="m")

    def stream(arg: tuple[str, list[Any]]) -> None:
        fmt, events = arg
        with contextlib.suppress(ValueError):
            usage_from_stream(fmt, events, model="m")

    def policy(d: dict[str, Any]) -> None:
        with contextlib.suppress(PolicyError):
            Policy.load(d)

    fmt = st.sampled_from(FORMATS)
    return {
        "canonical_text_idempotent": _target(canon_text, st.text(max_size=200), examples),
        "canonical_json_idempotent": _target(canon_json, JSON, examples),
        "wire_adapter_split": _target(split, st.tuples(fmt, BODY), examples),
        "prepare_request": _target(prepare, st.tuples(fmt, BODY), examples),
        "usage_from_response": _target(usage, st.tuples(fmt, BODY), examples),
        "usage_from_stream": _target(stream, st.tuples(fmt, st.lists(BODY, max_size=4)), examples),
        "policy_load": _target(policy, BODY, examples),
    }


ATHERIS_HARNESS = r"""
import sys, atheris
with atheris.instrument_imports():
    import orjson
    from promptcache import PromptCache
    from promptcache.canonical import CanonicalizationError
    from promptcache.providers.usage import usage_from_response
    from promptcache.wire import WireFormatError
FORMATS = ("openai-chat", "openai-responses", "anthropic-messages", "bedrock-converse", "gemini")
cache = PromptCache()
def test(data):
    fdp = atheris.FuzzedDataProvider(data)
    fmt = FORMATS[fdp.ConsumeIntInRange(0, 4)]
    try:
        body = orjson.loads(fdp.ConsumeBytes(4096))
    except orjson.JSONDecodeError:
        return
    if not isinstance(body, dict):
        return
    try:
        usage_from_response(fmt, body, model="m")
    except ValueError:
        pass
    body.setdefault("model", "gpt-4o")
    try:
        cache.prepare_request(body, format=fmt, tenant="t")
    except (WireFormatError, CanonicalizationError):
        pass
atheris.Setup(sys.argv, test)
atheris.Fuzz()
"""


def run_atheris(runs: int = 20000, timeout: float = 120) -> dict[str, Any]:
    """A bounded libFuzzer run (``-runs``) over prepare_request and usage_from_response in a subprocess."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        return {"skipped": "atheris not installed", "crashes": 0}
    try:
        r = subprocess.run(
            [sys.executable, "-c", ATHERIS_HARNESS, f"-runs={runs}", "-max_len=4200", "-seed=9"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"runs": runs, "timed_out": True, "crashes": 0}
    tail = [ln for ln in r.stderr.splitlines() if ln.startswith(("#", "==", "Done", "Uncaught"))][-3:]
    crashed = r.returncode != 0
    err = [ln for ln in r.stderr.splitlines() if "Error" in ln or "Exception" in ln][:3]
    return {
        "runs": runs,
        "exit_code": r.returncode,
        "crashes": int(crashed),
        "last_status": tail,
        "first_error_lines": err if crashed else [],
    }
