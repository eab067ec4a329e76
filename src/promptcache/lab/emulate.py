"""``promptcache emulate``: a local HTTP provider emulator with simulated prompt-cache usage.

It speaks four wire formats (the first also as Bedrock and Vertex AI serve it), streaming
included, closely enough that the real ``openai``, ``anthropic`` and ``google-genai`` SDK
clients parse every response:

* Anthropic Messages — ``POST /v1/messages`` (SSE: ``message_start`` with the prompt
  usage, ``content_block_*``, ``message_delta`` with the cumulative usage, ``message_stop``);
* OpenAI Chat Completions — ``POST /v1/chat/completions`` (SSE chunks; with
  ``stream_options.include_usage`` a last chunk with empty ``choices`` carries the usage;
  ``data: [DONE]`` ends the stream);
* OpenAI Responses — ``POST /v1/responses`` (SSE ``response.*`` events with
  ``sequence_number``; the usage is in ``response.completed``);
* Anthropic Messages on Amazon Bedrock — ``POST /model/{id}/invoke`` and
  ``/invoke-with-response-stream`` (the model in the path; each stream event base64 JSON in an
  AWS event-stream ``chunk`` message), what ``anthropic.AnthropicBedrock`` sends; the request's
  SigV4 access key names the organization (the signature is not checked); and on Vertex AI —
  ``POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict`` and
  ``:streamRawPredict`` (server-sent events), what ``anthropic.AnthropicVertex`` sends;
* Gemini — ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``
  (SSE ``data:`` chunks, each with the ``usageMetadata`` so far), explicit cached contents
  (``POST /v1beta/cachedContents``, ``DELETE /v1beta/cachedContents/{id}``) and
  ``GET /v1beta/models/{model}`` (the token limits ``google-genai`` callers look up).

Each answer is either a short echo of the last user text or, when a script is
given, the next scripted turn (``{"text": ...}`` or ``{"tool_calls": [{"name": ...,
"arguments": {...}}]}``), so a recorded agent trajectory can be replayed as the
model's side. The prompt-cache usage in each answer comes from
:class:`promptcache.lab.simulate.Simulator`, one cache state per organization, the
organization being a hash of the API key the client sent (``x-api-key``,
``x-goog-api-key``, ``?key=`` or ``Authorization: Bearer``) — as providers keep caches per organization.

>>> with Emulator(script=[{"text": "hello"}]) as emu:  # doctest: +SKIP
...     client = openai.OpenAI(base_url=emu.openai_base_url, api_key="k")
"""

from __future__ import annotations

import argparse
import base64
import binascii
import errno
import hashlib
import itertools
import json
import re
import struct
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from promptcache.formats import WireFormat
from promptcache.lab.simulate import (
    BreakpointTtlOrder,
    Simulator,
    TooManyBreakpoints,
    _canon,
    _is_gpt56_or_later,
    render,
)
from promptcache.tokens import count_text
from promptcache.usage import CacheUsage

__all__ = [
    "Emulator",
    "ScriptItem",
    "ScriptText",
    "ScriptToolCall",
    "ScriptToolCalls",
    "load_script",
    "register",
]

Json = dict[str, Any]

ProviderRules = Literal["auto", "openai", "anthropic", "bedrock", "gemini"]
_ECHO_CHARS = 64


class ScriptText(BaseModel):
    """A scripted assistant turn that answers with text."""

    model_config = ConfigDict(extra="forbid")
    text: str


class ScriptToolCall(BaseModel):
    """One tool call of a scripted turn."""

    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ScriptToolCalls(BaseModel):
    """A scripted assistant turn that calls tools (optionally with some text first)."""

    model_config = ConfigDict(extra="forbid")
    tool_calls: list[ScriptToolCall] = Field(min_length=1)
    text: str | None = None


ScriptItem = ScriptToolCalls | ScriptText
_SCRIPT = TypeAdapter(list[ScriptItem])


def load_script(path: str | Path) -> list[ScriptItem]:
    """Read a script file: a JSON array of turns, or JSON lines (one turn per line)."""
    raw = Path(path).read_text()
    stripped = raw.lstrip()
    items: Any = (
        json.loads(raw)
        if stripped.startswith("[")
        else [json.loads(x) for x in raw.splitlines() if x.strip()]
    )
    return _SCRIPT.validate_python(items)


class _Turn(BaseModel):
    """What the emulated model says on one call."""

    text: str = ""
    tool_calls: list[ScriptToolCall] = Field(default_factory=list)


class _HttpError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


# Why these rules: the route decides the wire format; "auto" simulates the provider whose
# format it is, another value simulates that provider on the body converted as an app
# switching providers would (promptcache.lab.convert).
_NATIVE_RULES = {
    WireFormat.ANTHROPIC_MESSAGES: "anthropic",
    WireFormat.OPENAI_CHAT: "openai",
    WireFormat.OPENAI_RESPONSES: "openai",
    WireFormat.GEMINI: "gemini",
}
_RULE_FORMAT = {
    "anthropic": WireFormat.ANTHROPIC_MESSAGES,
    "bedrock": WireFormat.BEDROCK_CONVERSE,
    "gemini": WireFormat.GEMINI,
}


class Emulator:
    """A local Anthropic/OpenAI-compatible server whose usage figures come from the simulator.

    Use it as a context manager (or call :meth:`start`/:meth:`stop`)::

        with Emulator(port=0, script=None, provider_rules="auto") as emu:
            emu.base_url          # "http://127.0.0.1:PORT"
            emu.openai_base_url   # base_url + "/v1"
            emu.anthropic_base_url
            emu.requests          # JSON bodies received, in order
            emu.reset()           # forget requests, cache state and script position

    ``clock`` returns the simulated time in seconds for each request (default: seconds
    since the emulator started), so tests can step past a TTL without sleeping.
    """

    def __init__(
        self,
        port: int = 0,
        script: Sequence[ScriptItem | Json] | None = None,
        provider_rules: ProviderRules = "auto",
        *,
        host: str = "127.0.0.1",
        clock: Callable[[], float] | None = None,
        rejects: Sequence[str] = (),
        reject_status: int = 400,
        light: bool = False,
    ) -> None:
        """Configure the emulator; nothing listens until :meth:`start` or ``with``.

        ``light``: the usage of Anthropic Messages and OpenAI requests comes from a byte-prefix
        rule (:func:`_light_usage`) instead of the simulator, so an answer costs the emulator
        the same whatever the prompt: an upstream for load tests, where the simulator's work
        (tokenizing, comparing with earlier prompts) would differ between the arms compared.

        ``rejects``: request fields answered by a 400 naming them (``cache_control: Extra
        inputs are not permitted``), as a provider or model without that feature answers.
        ``reject_status=422``: answered instead as an OpenAI-compatible server built on FastAPI
        does (``{"detail": [{"type": "extra_forbidden", "loc": ["body", field], ...}]}``).
        """
        if provider_rules not in ("auto", "openai", "anthropic", "bedrock", "gemini"):
            raise ValueError(
                f"provider_rules={provider_rules!r}: use auto, openai, anthropic, bedrock or gemini"
            )
        self._host = host
        self._port = port
        self.rejects = tuple(rejects)
        self.reject_status = reject_status
        self.light = light
        # Light mode: each organization's previous request body, as sent.
        self._last_body: dict[str, bytes] = {}
        self.provider_rules: ProviderRules = provider_rules
        self._script: list[ScriptItem] = _SCRIPT.validate_python(list(script or []))
        self._t0 = time.monotonic()
        self._clock = clock or (lambda: time.monotonic() - self._t0)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[Json] = []
        """Every JSON request body received, in arrival order."""
        self.usages: list[CacheUsage | None] = []
        """The simulated usage of each received request, in the same order (None: rejected with a 400)."""
        self.paths: list[str] = []
        """The route of each received request (``/v1/messages``, ...), in the same order."""
        self.cached_contents: list[str] = []
        """Names of the Gemini cached contents created and not deleted."""
        self._sim = Simulator()
        self._step = 0
        self._ids = itertools.count(1)
        # Anthropic cache diagnostics: (organization, message id) -> fingerprint of its request.
        self._prints: OrderedDict[tuple[str, str], _Print] = OrderedDict()
        # Responses answered, per (organization, response id): what cache diagnostics compare.
        self._baselines: OrderedDict[tuple[str, str], tuple[Json, int]] = OrderedDict()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            return self
        emu = self

        class Handler(_Handler):
            emulator = emu

        self._server = _Server((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="promptcache-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- public state ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the OS-chosen one when constructed with ``port=0``)."""
        if self._server is None:
            raise RuntimeError("the emulator is not running; use `with Emulator() as emu:` or start()")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self._host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for ``openai.OpenAI(base_url=...)``: the root plus ``/v1``."""
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for ``anthropic.Anthropic(base_url=...)``: the root (the SDK adds ``/v1``)."""
        return self.base_url

    def reset(self) -> None:
        """Forget received requests, every organization's cache state and the script position."""
        with self._lock:
            self.requests.clear()
            self.usages.clear()
            self.paths.clear()
            self.cached_contents.clear()
            self._sim = Simulator()
            self._step = 0
            self._ids = itertools.count(1)
            self._prints.clear()
            self._baselines.clear()
            self._last_body.clear()
            self._t0 = time.monotonic()

    # -- request handling (called from server threads) ---------------------------------------

    def _next_turn(self, fmt: WireFormat, body: Json) -> _Turn:
        if self._step < len(self._script):
            item = self._script[self._step]
            self._step += 1
            if isinstance(item, ScriptToolCalls):
                return _Turn(text=item.text or "", tool_calls=item.tool_calls)
            return _Turn(text=item.text)
        return _Turn(text=_echo(fmt, body))

    def _handle(
        self,
        fmt: WireFormat,
        path: str,
        body: Json,
        org: str,
        model: str | None = None,
        raw: bytes | None = None,
    ) -> tuple[_Turn, CacheUsage, int]:
        """Record the request, simulate its cache usage and pick the answer; thread-safe.

        ``model`` is the one named by the URL (Gemini), for bodies that do not carry it;
        ``raw``: the body as sent (light mode reads its usage from it).
        """
        with self._lock:
            self.requests.append(body)
            self.paths.append(path)
            try:
                refused = [f for f in self.rejects if _has_key(body, f)]
                if refused and self.reject_status == 422:
                    raise _HttpError(422, "extra_forbidden", refused[0])
                if refused:
                    raise _HttpError(
                        400, "invalid_request_error", f"{refused[0]}: Extra inputs are not permitted"
                    )
                if fmt is WireFormat.ANTHROPIC_MESSAGES:
                    _check_mid_conversation(body)
                if self.light and raw is not None:
                    usage = _light_usage(fmt, self._last_body.get(org), raw, body.get("model"))
                    self._last_body[org] = raw
                else:
                    usage = self._simulate(fmt, body, org, model)
            except _HttpError:
                self.usages.append(None)
                raise
            self.usages.append(usage)
            turn = self._next_turn(fmt, body)
            n = next(self._ids)
        return turn, usage, n

    def _simulate(self, fmt: WireFormat, body: Json, org: str, model: str | None = None) -> CacheUsage:
        rules = _NATIVE_RULES[fmt] if self.provider_rules == "auto" else self.provider_rules
        sim_fmt, sim_body = fmt, body
        if rules != _NATIVE_RULES[fmt]:
            from promptcache.lab.convert import convert  # imported late: only cross-provider rules need it

            sim_fmt = _RULE_FORMAT.get(rules, WireFormat.OPENAI_CHAT)
            sim_body = convert(body if model is None else {"model": model, **body}, fmt, sim_fmt)
        try:
            result = self._sim.feed(self._clock(), sim_fmt, sim_body, org=org, model=model)
        except (TooManyBreakpoints, BreakpointTtlOrder) as exc:
            raise _HttpError(400, "invalid_request_error", str(exc)) from None
        except (KeyError, TypeError, ValueError) as exc:
            # The simulator could not render the body: the provider would reject it too.
            raise _HttpError(
                400, "invalid_request_error", f"malformed request body ({type(exc).__name__})"
            ) from None
        return result.usage

    def _diagnose_anthropic(self, body: Json, org: str, message_id: str) -> Json | None:
        """Anthropic cache diagnostics for a request carrying ``diagnostics``: store its
        fingerprint under ``message_id`` and compare it with the one ``previous_message_id``
        names, per organization (platform.claude.com/docs/en/build-with-claude/cache-diagnostics,
        read 2026-12-07). The answer's ``diagnostics`` object, or None when not asked for."""
        asked = body.get("diagnostics")
        if not isinstance(asked, dict):
            return None
        cur = _anthropic_fingerprint(body)
        previous = asked.get("previous_message_id")
        with self._lock:
            prev = self._prints.get((org, previous)) if isinstance(previous, str) else None
            self._prints[(org, message_id)] = cur
            while len(self._prints) > 4096:
                self._prints.popitem(last=False)
        if previous is None:
            return {"cache_miss_reason": None}
        if prev is None:
            return {"cache_miss_reason": {"type": "previous_message_not_found"}}
        return {"cache_miss_reason": _divergence(prev, cur)}

    def _create_cached_content(self, path: str, body: Json, org: str) -> Json:
        """Gemini ``POST cachedContents``: the simulator stores the prefix; thread-safe."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _HttpError(400, "INVALID_ARGUMENT", "model: field required")
        bare = model.removeprefix("models/")
        with self._lock:
            try:
                tokens = render(WireFormat.GEMINI, body).total_tokens
                name = self._sim.create_cached_content(
                    self._clock(), body, name=f"cachedContents/emu{next(self._ids):06d}", org=org
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise _HttpError(
                    400, "INVALID_ARGUMENT", f"malformed request body ({type(exc).__name__})"
                ) from None
            self.requests.append(body)
            self.paths.append(path)
            self.usages.append(
                CacheUsage(provider="gemini", model=bare, input_tokens=tokens, cache_write_tokens=tokens)
            )
            self.cached_contents.append(name)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        return {
            "name": name,
            "model": f"models/{bare}",
            "createTime": stamp,
            "updateTime": stamp,
            "expireTime": _expire_time(str(body.get("ttl") or "3600s")),
            "displayName": str(body.get("displayName") or ""),
            "usageMetadata": {"totalTokenCount": tokens},
        }

    def _delete_cached_content(self, name: str) -> bool:
        with self._lock:
            if name not in self.cached_contents:
                return False
            self.cached_contents.remove(name)
            self._sim.delete_cached_content(name)
        return True

    def _diagnose(self, body: Json, org: str, n: int, usage: CacheUsage) -> Json | None:
        """OpenAI prompt cache diagnostics for a Responses request; thread-safe.

        developers.openai.com/api/docs/guides/prompt-caching/diagnostics (read 2026-12-07): with
        ``prompt_cache_options.comparison_response_id`` the answer says ``cache_hit``, or
        ``cache_miss`` with the first classified ``reason`` (model, key, service tier, tools, text
        format, reasoning effort, verbosity, then earlier input), or that the baseline is unknown
        to the organization (``comparison_response_not_found``), or ``unavailable`` (a model
        before GPT-5.6). Every answered request is kept as a possible baseline, by response id.
        """
        mine = _fingerprint(body)
        opts = body.get("prompt_cache_options")
        wanted = opts.get("comparison_response_id") if isinstance(opts, dict) else None
        with self._lock:
            self._baselines[(org, f"resp_emu{n:06d}")] = (mine, usage.input_tokens)
            while len(self._baselines) > 4096:
                self._baselines.popitem(last=False)
            if not isinstance(wanted, str):
                return None
            if not _is_gpt56_or_later(body.get("model")):
                return {"type": "unavailable"}
            found = self._baselines.get((org, wanted))
        if found is None:
            return {"type": "comparison_response_not_found"}
        theirs, reusable = found
        reason = next((k for k in _DIAGNOSED if k != "input" and theirs[k] != mine[k]), None)
        if reason is None:
            old, new = theirs["input"], mine["input"]
            reason = "input" if new[: len(old)] != old else None
        if reason is None:
            return {"type": "cache_hit"}
        return {
            "type": "cache_miss",
            "reason": _DIAGNOSED[reason],
            "cache_missed_tokens": max(reusable - usage.cache_read_tokens, 0),
            "comparison_reusable_tokens": reusable,
        }

    def _output_tokens(self, turn: _Turn, model: str | None) -> int:
        n = count_text(turn.text, model) if turn.text else 0
        for c in turn.tool_calls:
            n += count_text(c.name + json.dumps(c.arguments), model) + 3
        return max(n, 1)


#: Light mode's rule, OpenAI's automatic prefix caching (docs: prompt caching): a prefix of at
#: least 1,024 tokens is read from the cache in steps of 128, here over the bytes as sent.
_LIGHT_MIN_TOKENS = 1024
_LIGHT_STEP = 128
_LIGHT_BYTES_PER_TOKEN = 4


def _light_usage(fmt: WireFormat, prev: bytes | None, raw: bytes, model: Any) -> CacheUsage:
    """The usage light mode answers ``raw`` with: every ``_LIGHT_BYTES_PER_TOKEN`` bytes a token,
    and the bytes it shares from the start with the organization's previous request (``prev``)
    read from the cache by OpenAI's prefix rule. No tokenizer, no JSON walk: its cost does not
    depend on what the prompt says.

    >>> a = b"x" * 8000
    >>> u = _light_usage(WireFormat.OPENAI_CHAT, a + b"1", a + b"2", "gpt-4o")
    >>> u.input_tokens, u.cache_read_tokens
    (2001, 1920)
    >>> _light_usage(WireFormat.OPENAI_CHAT, b"0" + a, b"1" + a, "gpt-4o").cache_read_tokens
    0
    """
    total = -(-len(raw) // _LIGHT_BYTES_PER_TOKEN)
    same = 0
    if prev is not None:
        # The longest common prefix by bisection over slice comparisons (memcmp, not a loop).
        lo, hi = 0, min(len(prev), len(raw))
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if prev[:mid] == raw[:mid]:
                lo = mid
            else:
                hi = mid - 1
        same = lo // _LIGHT_BYTES_PER_TOKEN
    read = same // _LIGHT_STEP * _LIGHT_STEP if same >= _LIGHT_MIN_TOKENS else 0
    return CacheUsage(
        provider=fmt.provider,
        model=model if isinstance(model, str) else None,
        input_tokens=total,
        cache_read_tokens=min(read, total),
    )


def _check_mid_conversation(body: Json) -> None:
    """Answer a 400 where the Messages API would: a ``{"role": "system"}`` message on a model the
    catalog lists without mid-conversation system messages, or a tool change naming a tool the
    request does not declare (platform.claude.com mid-conversation-system-messages, read
    2026-12-07; anthropic SDK 0.125 BetaRequestToolAdditionBlockParam)."""
    messages = body.get("messages") or []
    system = [m for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    if not system:
        return
    model = str(body.get("model") or "")
    from promptcache.catalog import default_catalog  # the lab's only catalog need: imported late

    rules = default_catalog().rules(model, provider="anthropic")
    if rules is not None and rules.family is None and "mid_conversation_system" not in rules.capabilities:
        raise _HttpError(400, "invalid_request_error", f"messages: role 'system' is not supported on {model}")
    declared = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
    for m in system:
        content = m.get("content")
        for blk in content if isinstance(content, list) else []:
            if isinstance(blk, dict) and blk.get("type") in ("tool_addition", "tool_removal"):
                ref = blk.get("tool")
                name = ref.get("name") if isinstance(ref, dict) else None
                if name not in declared:
                    raise _HttpError(
                        400, "invalid_request_error", f"{blk['type']}.tool: {name!r} is not declared in tools"
                    )


class _Print(BaseModel):
    """A request's fingerprint for cache diagnostics: hashes and token counts, no prompt text."""

    model: str
    sections: list[str]  # per rendered segment: "tools", "system" or "messages"
    hashes: list[str]  # cumulative prefix hash through each segment
    cumulative: list[int]  # prefix tokens through each segment


def _anthropic_fingerprint(body: Json) -> _Print:
    r = render(WireFormat.ANTHROPIC_MESSAGES, body)
    sections = [seg.path.split("[", 1)[0].split(".", 1)[0] for seg in r.segments]
    sections = [x if x in _CHANGED else "messages" for x in sections]
    model = str(body.get("model") or "")
    return _Print(model=model, sections=sections, hashes=r.hashes, cumulative=r.cumulative)


_CHANGED = {"tools": "tools_changed", "system": "system_changed", "messages": "messages_changed"}
_ORDER = ("tools", "system", "messages")


def _divergence(prev: _Print, cur: _Print) -> Json | None:
    """Where ``cur`` first differs from ``prev`` and the tokens ``prev`` had cached after that
    point; None when ``cur`` only appends to ``prev`` (the docs' no-miss case)."""
    total = prev.cumulative[-1] if prev.cumulative else 0
    if prev.model != cur.model:
        return {"type": "model_changed", "cache_missed_input_tokens": total}
    for i, h in enumerate(prev.hashes):
        if i >= len(cur.hashes) or cur.hashes[i] != h:
            before = prev.cumulative[i - 1] if i else 0
            # The earlier section of the two at the divergence: a tool added before the system
            # prompt diverges where the old request had its system prompt, and is a tools change.
            here = [prev.sections[i], cur.sections[i] if i < len(cur.sections) else "messages"]
            section = min(here, key=_ORDER.index)
            return {"type": _CHANGED[section], "cache_missed_input_tokens": total - before}
    return None


# What a diagnostics comparison looks at, in the order the reasons are tried, and the reason
# each difference is reported as (the guide's "Fix a cache miss" table).
_DIAGNOSED = {
    "model": "model_changed",
    "prompt_cache_key": "prompt_cache_key_changed",
    "service_tier": "service_tier_changed",
    "tools": "tools_changed",
    "text_format": "text_format_changed",
    "reasoning_effort": "reasoning_effort_changed",
    "verbosity": "verbosity_changed",
    "input": "input_changed",
}


def _fingerprint(body: Json) -> Json:
    """The cache-relevant settings and input of a Responses request, breakpoints left out (a
    marker is not content)."""
    raw_text, raw_reasoning = body.get("text"), body.get("reasoning")
    text: Json = raw_text if isinstance(raw_text, dict) else {}
    reasoning: Json = raw_reasoning if isinstance(raw_reasoning, dict) else {}
    inp = body.get("input")
    items = [{"role": "user", "content": inp}] if isinstance(inp, str) else list(inp or [])
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        items.insert(0, {"instructions": instructions})
    return {
        "model": body.get("model"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "service_tier": body.get("service_tier", "auto"),
        "tools": _canon(body.get("tools") or []),
        "text_format": _canon(text.get("format")),
        "reasoning_effort": reasoning.get("effort"),
        "verbosity": text.get("verbosity"),
        "input": [_canon(it) for it in items],
    }


def _has_key(data: Any, key: str) -> bool:
    if isinstance(data, dict):
        return key in data or any(_has_key(v, key) for v in data.values())
    if isinstance(data, list):
        return any(_has_key(v, key) for v in data)
    return False


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text"):
                parts.append(str(p.get("text", "")))
        return " ".join(parts)
    return ""


def _echo(fmt: WireFormat, body: Json) -> str:
    """A short echo of the last user text (tool results are not echoed: they are data)."""
    last = ""
    if fmt is WireFormat.GEMINI:
        for c in body.get("contents") or []:
            if isinstance(c, dict) and c.get("role", "user") == "user":
                t = " ".join(
                    str(p["text"]) for p in c.get("parts") or [] if isinstance(p, dict) and "text" in p
                )
                if t:
                    last = t
    elif fmt is WireFormat.OPENAI_RESPONSES:
        inp = body.get("input")
        if isinstance(inp, str):
            last = inp
        elif isinstance(inp, list):
            for item in inp:
                if isinstance(item, dict) and item.get("role") == "user":
                    last = _text_of(item.get("content"))
    else:
        for m in body.get("messages") or []:
            if isinstance(m, dict) and m.get("role") == "user":
                t = _text_of(m.get("content"))
                if t:
                    last = t
    last = " ".join(last.split())[:_ECHO_CHARS]
    return f"echo: {last}" if last else "ok"


def _chunks(text: str, n: int = 3) -> list[str]:
    """Split ``text`` into about ``n`` pieces so streams have several deltas."""
    if not text:
        return []
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


# --------------------------------------------------------------------------------------------
# Wire shapes
# --------------------------------------------------------------------------------------------


def _anthropic_usage(u: CacheUsage, output_tokens: int) -> Json:
    # Anthropic's input_tokens excludes cache reads and writes (CacheUsage counts them all).
    return {
        "input_tokens": u.uncached_input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.cache_write_tokens_by_ttl.get("5m", 0),
            "ephemeral_1h_input_tokens": u.cache_write_tokens_by_ttl.get("1h", 0),
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _anthropic_content(turn: _Turn, n: int) -> list[Json]:
    content: list[Json] = []
    if turn.text or not turn.tool_calls:
        content.append({"type": "text", "text": turn.text})
    for i, c in enumerate(turn.tool_calls):
        content.append(
            {"type": "tool_use", "id": f"toolu_emu{n:04d}{i:02d}", "name": c.name, "input": c.arguments}
        )
    return content


def _anthropic_message(
    body: Json, turn: _Turn, usage: CacheUsage, n: int, out: int, diagnostics: Json | None = None
) -> Json:
    msg = {
        "id": f"msg_emu{n:06d}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": _anthropic_content(turn, n),
        "stop_reason": "tool_use" if turn.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(usage, out),
    }
    if diagnostics is not None:
        # "Present (possibly null) whenever the caller supplied diagnostics" (BetaMessage).
        msg["diagnostics"] = diagnostics
    return msg


def _anthropic_stream(
    body: Json, turn: _Turn, usage: CacheUsage, n: int, out: int, diagnostics: Json | None = None
) -> Iterator[tuple[str, Json]]:
    msg = _anthropic_message(body, turn, usage, n, out, diagnostics)
    start = dict(msg, content=[], stop_reason=None, usage=_anthropic_usage(usage, 1))
    yield "message_start", {"type": "message_start", "message": start}
    for i, block in enumerate(msg["content"]):
        if block["type"] == "text":
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
            )
            if i == 0:
                yield "ping", {"type": "ping"}
            for piece in _chunks(block["text"]):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
        else:
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": i,
                    "content_block": {
                        "type": "tool_use",
                        "id": block["id"],
                        "name": block["name"],
                        "input": {},
                    },
                },
            )
            for piece in _chunks(json.dumps(block["input"])):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
        yield "content_block_stop", {"type": "content_block_stop", "index": i}
    # message_delta carries the cumulative usage, prompt-cache figures included.
    delta_usage = _anthropic_usage(usage, out)
    for k in ("cache_creation", "service_tier"):
        delta_usage.pop(k)
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
            "usage": delta_usage,
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _openai_usage(u: CacheUsage, out: int) -> Json:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": out,
        "total_tokens": u.input_tokens + out,
        "prompt_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _call_id(n: int, i: int) -> str:
    return f"call_emu{n:04d}{i:02d}"


def _chat_completion(body: Json, turn: _Turn, usage: CacheUsage, n: int, out: int, created: int) -> Json:
    message: Json = {"role": "assistant", "content": turn.text or None, "refusal": None, "annotations": []}
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": _call_id(n, i),
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for i, c in enumerate(turn.tool_calls)
        ]
    else:
        message["content"] = turn.text
    return {
        "id": f"chatcmpl-emu{n:06d}",
        "object": "chat.completion",
        "created": created,
        "model": body.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if turn.tool_calls else "stop",
            }
        ],
        "usage": _openai_usage(usage, out),
        "service_tier": "default",
        "system_fingerprint": "fp_emulator",
    }


def _chat_stream(
    body: Json, turn: _Turn, usage: CacheUsage, n: int, out: int, created: int
) -> Iterator[Json]:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": f"chatcmpl-emu{n:06d}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": body.get("model", ""),
        "service_tier": "default",
        "system_fingerprint": "fp_emulator",
    }

    def chunk(delta: Json, finish: str | None = None) -> Json:
        c = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
        if include_usage:
            c["usage"] = None  # every chunk but the last says null when usage was requested
        return c

    yield chunk({"role": "assistant", "content": "" if not turn.tool_calls else None, "refusal": None})
    for piece in _chunks(turn.text):
        yield chunk({"content": piece})
    for i, c in enumerate(turn.tool_calls):
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": i,
                        "id": _call_id(n, i),
                        "type": "function",
                        "function": {"name": c.name, "arguments": ""},
                    }
                ]
            }
        )
        for piece in _chunks(json.dumps(c.arguments)):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    yield chunk({}, "tool_calls" if turn.tool_calls else "stop")
    if include_usage:
        yield dict(base, choices=[], usage=_openai_usage(usage, out))


def _responses_usage(u: CacheUsage, out: int) -> Json:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.input_tokens + out,
    }


def _responses_output(turn: _Turn, n: int) -> list[Json]:
    items: list[Json] = []
    if turn.text or not turn.tool_calls:
        items.append(
            {
                "type": "message",
                "id": f"msg_emu{n:06d}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": turn.text, "annotations": [], "logprobs": []}],
            }
        )
    for i, c in enumerate(turn.tool_calls):
        items.append(
            {
                "type": "function_call",
                "id": f"fc_emu{n:04d}{i:02d}",
                "call_id": _call_id(n, i),
                "name": c.name,
                "arguments": json.dumps(c.arguments),
                "status": "completed",
            }
        )
    return items


def _response(
    body: Json,
    turn: _Turn,
    usage: CacheUsage | None,
    n: int,
    out: int,
    created: int,
    diagnostics: Json | None = None,
) -> Json:
    done = usage is not None
    extra = {"prompt_cache_diagnostics": diagnostics} if done and diagnostics is not None else {}
    return extra | {
        "id": f"resp_emu{n:06d}",
        "object": "response",
        "created_at": created,
        "status": "completed" if done else "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model", ""),
        "output": _responses_output(turn, n) if done else [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": _responses_usage(usage, out) if usage is not None else None,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _responses_stream(
    body: Json,
    turn: _Turn,
    usage: CacheUsage,
    n: int,
    out: int,
    created: int,
    diagnostics: Json | None = None,
) -> Iterator[Json]:
    seq = itertools.count(0)
    pending = _response(body, turn, None, n, out, created)
    yield {"type": "response.created", "sequence_number": next(seq), "response": pending}
    yield {"type": "response.in_progress", "sequence_number": next(seq), "response": pending}
    for oi, item in enumerate(_responses_output(turn, n)):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            yield {
                "type": "response.output_item.added",
                "sequence_number": next(seq),
                "output_index": oi,
                "item": dict(item, status="in_progress", content=[]),
            }
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            common = {"item_id": item["id"], "output_index": oi, "content_index": 0}
            yield {
                "type": "response.content_part.added",
                "sequence_number": next(seq),
                **common,
                "part": part,
            }
            for piece in _chunks(text):
                yield {
                    "type": "response.output_text.delta",
                    "sequence_number": next(seq),
                    **common,
                    "delta": piece,
                    "logprobs": [],
                }
            yield {
                "type": "response.output_text.done",
                "sequence_number": next(seq),
                **common,
                "text": text,
                "logprobs": [],
            }
            yield {
                "type": "response.content_part.done",
                "sequence_number": next(seq),
                **common,
                "part": dict(part, text=text),
            }
        else:
            yield {
                "type": "response.output_item.added",
                "sequence_number": next(seq),
                "output_index": oi,
                "item": dict(item, status="in_progress", arguments=""),
            }
            for piece in _chunks(item["arguments"]):
                yield {
                    "type": "response.function_call_arguments.delta",
                    "sequence_number": next(seq),
                    "item_id": item["id"],
                    "output_index": oi,
                    "delta": piece,
                }
            yield {
                "type": "response.function_call_arguments.done",
                "sequence_number": next(seq),
                "item_id": item["id"],
                "output_index": oi,
                "name": item["name"],
                "arguments": item["arguments"],
            }
        yield {
            "type": "response.output_item.done",
            "sequence_number": next(seq),
            "output_index": oi,
            "item": item,
        }
    yield {
        "type": "response.completed",
        "sequence_number": next(seq),
        "response": _response(body, turn, usage, n, out, created, diagnostics),
    }


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

_ROUTES = {
    "/v1/messages": WireFormat.ANTHROPIC_MESSAGES,
    "/v1/chat/completions": WireFormat.OPENAI_CHAT,
    "/v1/responses": WireFormat.OPENAI_RESPONSES,
}
# google-genai puts the model and the method in the path (``models/{model}:generateContent``);
# Vertex-style ``publishers/google/models/...`` paths end the same way.
_GEMINI_ROUTE = re.compile(
    r"^/v1(?:beta\d*|alpha)?/(?:.*/)?models/([^/:]+):(generateContent|streamGenerateContent)$"
)
# The anthropic SDK's platform clients: the model in the path, the Messages body otherwise.
_BEDROCK_INVOKE = re.compile(r"^/model/([^/]+)/(invoke|invoke-with-response-stream)$")
_VERTEX_PREDICT = re.compile(
    r"^(?:/v1)?/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/([^/:]+):(rawPredict|streamRawPredict)$"
)
_GEMINI_MODEL = re.compile(r"^/v1(?:beta\d*|alpha)?/models/([^/:]+)$")
_GEMINI_CACHES = re.compile(r"^/v1(?:beta\d*|alpha)?/(cachedContents(?:/[^/]+)?)$")


def _expire_time(ttl: str) -> str:
    m = re.fullmatch(r"\s*([0-9.]+)s\s*", ttl)
    seconds = float(m.group(1)) if m else 3600.0
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + seconds))


def _gemini_usage(u: CacheUsage, out: int) -> Json:
    # Gemini's promptTokenCount includes the cached tokens; cachedContentTokenCount is their part.
    meta: Json = {
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": out,
        "totalTokenCount": u.input_tokens + out,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": u.input_tokens}],
    }
    if u.cache_read_tokens:
        meta["cachedContentTokenCount"] = u.cache_read_tokens
        meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": u.cache_read_tokens}]
    return meta


def _gemini_parts(turn: _Turn, n: int) -> list[Json]:
    parts: list[Json] = []
    if turn.text or not turn.tool_calls:
        parts.append({"text": turn.text})
    for i, c in enumerate(turn.tool_calls):
        parts.append({"functionCall": {"id": _call_id(n, i), "name": c.name, "args": c.arguments}})
    return parts


def _gemini_response(model: str, parts: list[Json], meta: Json, n: int, finish: str | None) -> Json:
    candidate: Json = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": meta,
        "modelVersion": model,
        "responseId": f"emu{n:06d}",
    }


def _gemini_stream(model: str, turn: _Turn, usage: CacheUsage, n: int, out: int) -> Iterator[Json]:
    # Every chunk carries the prompt usage; the output count comes with the last one, as Gemini's do.
    pieces: list[list[Json]] = [[{"text": t}] for t in _chunks(turn.text)]
    calls = [p for p in _gemini_parts(turn, n) if "functionCall" in p]
    if calls:
        pieces.append(calls)
    if not pieces:
        pieces.append([{"text": ""}])
    for i, parts in enumerate(pieces):
        last = i == len(pieces) - 1
        meta = _gemini_usage(usage, out if last else 0)
        if not last:
            del meta["candidatesTokenCount"]
        yield _gemini_response(model, parts, meta, n, "STOP" if last else None)


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a client opening more connections at once (a
    # gateway's pool under load) saw SYNs dropped and retried a second later, or reset.
    request_queue_size = 1024


class _Handler(BaseHTTPRequestHandler):
    emulator: Emulator
    # HTTP/1.1 keeps SDK connections alive; streams use chunked transfer encoding.
    protocol_version = "HTTP/1.1"
    server_version = "promptcache-emulator/0.1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, the body waits for the
    # client's delayed ACK of the headers (~40 ms a response on a kept-alive connection).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the default logs every request line to stderr."""

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path in ("", "/health", "/healthz"):
            self._send_json(200, {"status": "ok"})
            return
        m = _GEMINI_MODEL.match(path)
        if m:
            # What google-genai's models.get reads (LlamaIndex's GoogleGenAI asks for the limits).
            model = m.group(1)
            self._send_json(
                200,
                {
                    "name": f"models/{model}",
                    "baseModelId": model,
                    "displayName": model,
                    "inputTokenLimit": 1048576,
                    "outputTokenLimit": 65536,
                    "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent"],
                },
            )
            return
        self._error(WireFormat.OPENAI_CHAT, _HttpError(404, "not_found_error", "unknown route"))

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        fmt = _ROUTES.get(path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if fmt is None and (_GEMINI_ROUTE.match(path) or _GEMINI_CACHES.match(path)):
            fmt = WireFormat.GEMINI
        if fmt is None and (_BEDROCK_INVOKE.match(path) or _VERTEX_PREDICT.match(path)):
            try:
                self._answer_platform(path, raw)
            except _HttpError as err:
                self._error(WireFormat.ANTHROPIC_MESSAGES, err)
            return
        if fmt is None:
            self._error(WireFormat.OPENAI_CHAT, _HttpError(404, "not_found_error", "unknown route"))
            return
        try:
            self._answer(fmt, path, raw)
        except _HttpError as err:
            self._error(fmt, err)

    def do_DELETE(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        m = _GEMINI_CACHES.match(path)
        try:
            self._org(WireFormat.GEMINI)
            if m is None or "/" not in m.group(1):
                raise _HttpError(404, "NOT_FOUND", "unknown route")
            if not self.emulator._delete_cached_content(m.group(1)):
                raise _HttpError(404, "NOT_FOUND", f"{m.group(1)} not found")
        except _HttpError as err:
            self._error(WireFormat.GEMINI, err)
            return
        self._send_json(200, {})

    def _org(self, fmt: WireFormat) -> str:
        key = self.headers.get("x-api-key") or self.headers.get("x-goog-api-key") or ""
        auth = self.headers.get("Authorization") or ""
        m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/", auth)
        if not key and m is not None:
            key = m.group(1)  # the SigV4 access key id
        if not key and "key=" in self.path:
            key = (parse_qs(urlsplit(self.path).query).get("key") or [""])[0]
        if not key and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if not key:
            raise _HttpError(401, "authentication_error", "missing API key")
        # Only a digest of the key is kept: it names the organization, nothing more.
        return "org-" + hashlib.sha256(key.encode()).hexdigest()[:16]

    def _answer(self, fmt: WireFormat, path: str, raw: bytes) -> None:
        org = self._org(fmt)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise _HttpError(400, "invalid_request_error", "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _HttpError(400, "invalid_request_error", "request body must be a JSON object")
        if fmt is WireFormat.GEMINI:
            self._answer_gemini(path, body, org)
            return
        if fmt is not WireFormat.OPENAI_RESPONSES and not isinstance(body.get("messages"), list):
            raise _HttpError(400, "invalid_request_error", "messages: field required")
        emu = self.emulator
        turn, usage, n = emu._handle(fmt, path, body, org, raw=raw)
        out = emu._output_tokens(turn, body.get("model"))
        created = int(time.time())
        stream = bool(body.get("stream"))
        if fmt is WireFormat.ANTHROPIC_MESSAGES:
            diag = emu._diagnose_anthropic(body, org, f"msg_emu{n:06d}")
            if stream:
                self._send_sse(
                    (
                        f"event: {e}\ndata: {json.dumps(d)}\n\n"
                        for e, d in _anthropic_stream(body, turn, usage, n, out, diag)
                    )
                )
            else:
                self._send_json(200, _anthropic_message(body, turn, usage, n, out, diag))
        elif fmt is WireFormat.OPENAI_CHAT:
            if stream:
                events = (
                    f"data: {json.dumps(c)}\n\n" for c in _chat_stream(body, turn, usage, n, out, created)
                )
                self._send_sse(itertools.chain(events, ["data: [DONE]\n\n"]))
            else:
                self._send_json(200, _chat_completion(body, turn, usage, n, out, created))
        elif stream:
            diag = emu._diagnose(body, org, n, usage)
            self._send_sse(
                f"event: {e['type']}\ndata: {json.dumps(e)}\n\n"
                for e in _responses_stream(body, turn, usage, n, out, created, diag)
            )
        else:
            diag = emu._diagnose(body, org, n, usage)
            self._send_json(200, _response(body, turn, usage, n, out, created, diag))

    def _answer_platform(self, path: str, raw: bytes) -> None:
        bedrock = _BEDROCK_INVOKE.match(path)
        route = bedrock or _VERTEX_PREDICT.match(path)
        assert route is not None
        org = self._org(WireFormat.ANTHROPIC_MESSAGES)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise _HttpError(400, "invalid_request_error", "request body is not valid JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise _HttpError(400, "invalid_request_error", "messages: field required")
        model = unquote(route.group(1))
        emu = self.emulator
        turn, usage, n = emu._handle(WireFormat.ANTHROPIC_MESSAGES, path, body, org, model)
        out = emu._output_tokens(turn, model)
        named = {"model": model, **body}
        if route.group(2) in ("invoke", "rawPredict"):
            self._send_json(200, _anthropic_message(named, turn, usage, n, out))
        elif bedrock is None:
            self._send_sse(
                f"event: {e}\ndata: {json.dumps(d)}\n\n"
                for e, d in _anthropic_stream(named, turn, usage, n, out)
            )
        else:
            self._send_chunks(
                "application/vnd.amazon.eventstream",
                (_aws_event_chunk(d) for _, d in _anthropic_stream(named, turn, usage, n, out)),
            )

    def _answer_gemini(self, path: str, body: Json, org: str) -> None:
        emu = self.emulator
        route = _GEMINI_ROUTE.match(path)
        if route is None:
            self._send_json(200, emu._create_cached_content(path, body, org))
            return
        if not isinstance(body.get("contents"), list):
            raise _HttpError(400, "INVALID_ARGUMENT", "contents: field required")
        model, method = route.group(1), route.group(2)
        named = body.get("cachedContent")
        if named is not None and named not in emu.cached_contents:
            # What Gemini answers for a deleted or expired cache (and for one of another project).
            raise _HttpError(403, "PERMISSION_DENIED", "CachedContent not found (or permission denied)")
        turn, usage, n = emu._handle(WireFormat.GEMINI, path, body, org, model)
        out = emu._output_tokens(turn, model)
        if method == "streamGenerateContent":
            self._send_sse(
                f"data: {json.dumps(c)}\r\n\r\n" for c in _gemini_stream(model, turn, usage, n, out)
            )
        else:
            self._send_json(
                200, _gemini_response(model, _gemini_parts(turn, n), _gemini_usage(usage, out), n, "STOP")
            )

    def _error(self, fmt: WireFormat, err: _HttpError) -> None:
        if fmt is WireFormat.GEMINI:
            status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}.get(
                err.status, "NOT_FOUND"
            )
            self._send_json(
                err.status, {"error": {"code": err.status, "message": err.message, "status": status}}
            )
            return
        if err.kind == "extra_forbidden":  # pydantic v2's validation error, as FastAPI sends it
            field = err.message
            detail = {
                "type": "extra_forbidden",
                "loc": ["body", field],
                "msg": "Extra inputs are not permitted",
            }
            self._send_json(err.status, {"detail": [detail]})
            return
        if fmt is WireFormat.ANTHROPIC_MESSAGES:
            payload: Json = {"type": "error", "error": {"type": err.kind, "message": err.message}}
        else:
            payload = {"error": {"message": err.message, "type": err.kind, "param": None, "code": None}}
        self._send_json(err.status, payload)

    def _send_json(self, status: int, payload: Json) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_emulator")
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, events: Iterator[str] | Any) -> None:
        self._send_chunks("text/event-stream; charset=utf-8", (ev.encode() for ev in events))

    def _send_chunks(self, content_type: str, chunks: Iterator[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for data in chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _aws_event_chunk(event: Json) -> bytes:
    """One AWS event-stream message as Bedrock frames a stream event: prelude (total and
    headers length, CRC32), string headers, the JSON payload ``{"bytes": base64(event)}``,
    CRC32 of the whole message."""
    payload = json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode()}).encode()
    headers = b""
    for name, value in (
        (":event-type", "chunk"),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ):
        v = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(v)) + v
    prelude = struct.pack(">II", 16 + len(headers) + len(payload), len(headers))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + headers + payload
    return message + struct.pack(">I", binascii.crc32(message))


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def register(sub: Any) -> None:
    """Add ``promptcache emulate`` to the CLI."""
    p = sub.add_parser(
        "emulate", help="serve an offline Anthropic/OpenAI/Gemini-compatible API with simulated cache usage"
    )
    p.add_argument("--port", type=int, default=8089, help="port on 127.0.0.1 (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--script",
        help="file of scripted answers, a JSON array or JSON lines of turns: "
        "{'text': ...} or {'tool_calls': [{'name': ..., 'arguments': {...}}]}",
    )
    p.add_argument(
        "--provider-rules",
        choices=["auto", "openai", "anthropic", "bedrock", "gemini"],
        default="auto",
        help="whose caching rules produce the usage (auto: the provider of the route's format)",
    )
    p.add_argument(
        "--light",
        action="store_true",
        help="usage of Anthropic and OpenAI requests from a byte-prefix rule, not the simulator: "
        "an upstream whose cost per answer does not depend on the prompt (load tests)",
    )
    p.set_defaults(func=_cli)


def _script_error(exc: Any) -> tuple[int, str, str]:
    """(1-based turn, field path, message) of the most specific error in a script's validation."""
    # A turn is a union: pydantic reports each member's complaint; the deepest one is the real fault.
    err = max(exc.errors(), key=lambda e: len(e["loc"]))
    loc = [x for x in err["loc"] if not (isinstance(x, str) and x[:1].isupper())]  # drop member names
    turn = int(loc[0]) + 1 if loc and isinstance(loc[0], int) else 1
    path = ""
    for x in loc[1:]:
        path += f"[{x}]" if isinstance(x, int) else (f".{x}" if path else str(x))
    return turn, path or "(the turn)", str(err["msg"])


def _cli(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        script = load_script(args.script) if args.script else None
    except FileNotFoundError:
        print(f"promptcache emulate: {args.script}: no such file", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(
            f"promptcache emulate: {args.script}:{exc.lineno}: not JSON ({exc.msg}); "
            "a script is a JSON array or JSON lines of turns",
            file=sys.stderr,
        )
        return 2
    except ValidationError as exc:
        turn, field, msg = _script_error(exc)
        print(
            f"promptcache emulate: {args.script}: turn {turn}: field {field!r}: {msg}; each turn is "
            "{'text': ...} or {'tool_calls': [{'name': ..., 'arguments': {...}}]}",
            file=sys.stderr,
        )
        return 2
    emu = Emulator(
        port=args.port, script=script, provider_rules=args.provider_rules, host=args.host, light=args.light
    )
    try:
        emu.start()
    except OSError as exc:
        why = {errno.EADDRINUSE: "the port is already in use", errno.EACCES: "permission denied"}.get(
            exc.errno or 0, exc.strerror or str(exc)
        )
        print(
            f"promptcache emulate: cannot listen on {args.host}:{args.port}: {why} "
            "(pick another with --port, or --port 0 for any free port)",
            file=sys.stderr,
        )
        return 1
    with emu:
        print(f"promptcache emulator on {emu.base_url}", flush=True)
        print(f"  OpenAI:    base_url={emu.openai_base_url}", flush=True)
        print(f"  Anthropic: base_url={emu.anthropic_base_url}", flush=True)
        print(f"  Gemini:    http_options={{'base_url': {emu.base_url!r}}}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0
