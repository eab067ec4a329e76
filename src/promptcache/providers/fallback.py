"""Resend without caching hints when a provider rejects one.

A model, region or OpenAI-compatible server that does not know a caching field answers 400
(``cache_control: Extra inputs are not permitted``, ``Unrecognized request argument
supplied: prompt_cache_key``, a Bedrock ``ValidationException`` naming ``cachePoint``). The
design's rule is that a cache feature never fails the agent's call: such a request is sent
once more with every caching hint removed, and the event is counted as ``hint_rejected``.

>>> body = {"model": "m", "prompt_cache_key": "pc-1", "messages": [{"role": "user", "content": "hi"}]}
>>> strip_hints(body, "openai-chat")
{'model': 'm', 'messages': [{'role': 'user', 'content': 'hi'}]}

Only a 4xx (other than 429) whose message names a hint field triggers the resend: providers
answer 400, OpenAI-compatible servers built on FastAPI 422 (``extra_forbidden``). Anything else
is raised unchanged, and so is a second failure. A rejection is remembered per endpoint and model
for :data:`REJECTION_TTL_S` (:class:`RejectionMemory`), so the next calls go out without hints
at once instead of paying the refused request again. Gemini explicit caches are not hints in this sense
(a ``cachedContent`` reference replaces the system instruction it holds), so Gemini bodies
are never stripped: :mod:`promptcache.providers.gemini_cache` handles a stale handle.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping
from typing import Any, Protocol, TypeVar

from promptcache.figures import Degradation
from promptcache.formats import WireFormat, parse_format

__all__ = [
    "ALL_HINT_KINDS",
    "HINT_FIELDS",
    "REJECTIONS",
    "REJECTION_TTL_S",
    "HintCounter",
    "RejectionMemory",
    "async_send_with_hint_fallback",
    "is_hint_rejection",
    "may_be_rejection",
    "rejected_fields",
    "send_with_hint_fallback",
    "strip_hints",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# The field names whose presence in a 400's message marks it as a rejected caching hint.
HINT_FIELDS = (
    "cache_control",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "prompt_cache_breakpoint",
    "cachePoint",
    # Anthropic cache diagnostics (providers.diagnostics): an opt-in field a gateway or an older
    # deployment may refuse; the call goes on without it.
    "diagnostics",
    # OpenAI's (providers.openai_diagnostics), inside prompt_cache_options: a refusal may name
    # only the nested key. Detection only: stripping prompt_cache_options removes it.
    "comparison_response_id",
)
ALL_HINT_KINDS = frozenset(HINT_FIELDS)
# The enum's plain value: counters keyed by it stay plain-str dicts (orjson, JSON exports).
COUNTER_NAME = Degradation.HINT_REJECTED.value


class _Adds(Protocol):
    def add(self, name: str) -> None: ...


HintCounter = MutableMapping[str, int] | _Adds | Callable[[str], None]
"""Where ``hint_rejected`` is counted: a mapping (e.g. ``collections.Counter``), an object
with ``add(name)`` (the tiers' ``StatsCounter``) or a callable taking the counter name."""


# -- detection ---------------------------------------------------------------------------


def _status(exc: BaseException) -> int | None:
    # anthropic.APIStatusError / openai.APIStatusError carry status_code; httpx's
    # HTTPStatusError carries the response; botocore's ClientError a response dict.
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    if isinstance(response, Mapping):
        meta = response.get("ResponseMetadata")
        if isinstance(meta, Mapping) and isinstance(meta.get("HTTPStatusCode"), int):
            return int(meta["HTTPStatusCode"])
    return None


def _error_text(exc: BaseException) -> str:
    parts = [str(exc)]
    body = getattr(exc, "body", None)  # the SDKs' parsed error body
    if body is not None:
        parts.append(repr(body))
    response = getattr(exc, "response", None)
    if response is not None and not isinstance(response, Mapping):
        # A streamed response whose body was not read raises on .text.
        with contextlib.suppress(Exception):
            parts.append(str(response.text))
    elif isinstance(response, Mapping):
        parts.append(repr(response.get("Error")))
    return "\n".join(parts)


def may_be_rejection(status: int) -> bool:
    """Whether an answer with HTTP ``status`` can be a refused caching hint: a client error, but
    not a rate limit (400 from the providers, 422 from FastAPI-style compatible servers)."""
    return 400 <= status < 500 and status != 429


#: How long a refused hint is remembered for an endpoint and model. A server may learn the field
#: after an upgrade; an hour bounds how long its calls go without hints after that.
REJECTION_TTL_S = 3600.0


class RejectionMemory:
    """Endpoints and models that refused caching hints lately, so their calls go out without any.

    At most ``max_entries`` pairs (the oldest go first), each for ``ttl_s`` seconds.

    >>> m = RejectionMemory(clock=lambda: 0.0)
    >>> url = "https://llm.local/v1/chat/completions"
    >>> m.remember(url, "m")
    >>> m.rejects(url, "m"), m.rejects(url, "n")
    (True, False)
    """

    def __init__(
        self,
        ttl_s: float = REJECTION_TTL_S,
        max_entries: int = 1024,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._ttl, self._max = ttl_s, max_entries
        self._clock = clock or time.monotonic
        self._until: OrderedDict[tuple[str, str | None], float] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, endpoint: str, model: str | None) -> None:
        """Note that ``endpoint`` refused a hint for ``model``."""
        with self._lock:
            self._until.pop((endpoint, model), None)
            self._until[(endpoint, model)] = self._clock() + self._ttl
            while len(self._until) > self._max:
                self._until.popitem(last=False)

    def clear(self) -> None:
        """Forget every refusal (a test's fresh start, or after fixing a server's configuration)."""
        with self._lock:
            self._until.clear()

    def rejects(self, endpoint: str, model: str | None) -> bool:
        """Whether ``endpoint`` refused a hint for ``model`` within the last ``ttl_s`` seconds."""
        if not self._until:  # the usual case: nothing ever refused
            return False
        with self._lock:
            until = self._until.get((endpoint, model))
            if until is None:
                return False
            if until <= self._clock():
                del self._until[(endpoint, model)]
                return False
            return True


#: The process's memory of refused hints (the HTTP seam consults and feeds it).
REJECTIONS = RejectionMemory()


def rejected_fields(exc: BaseException) -> list[str]:
    """The hint field names a client error's message mentions (empty for any other error)."""
    status = _status(exc)
    if status is None or not may_be_rejection(status):
        return []
    text = _error_text(exc)
    return [f for f in HINT_FIELDS if f in text]


def is_hint_rejection(exc: BaseException) -> bool:
    """True if ``exc`` is a client error (not a rate limit) that names a caching hint field."""
    return bool(rejected_fields(exc))


# -- stripping ---------------------------------------------------------------------------


def _drop_key(seq: Any, key: str) -> tuple[Any, bool]:
    """``seq`` (a list of blocks) with ``key`` removed from each dict block."""
    if not isinstance(seq, list):
        return seq, False
    changed = False
    out = []
    for b in seq:
        if isinstance(b, dict) and key in b:
            b = {k: v for k, v in b.items() if k != key}
            changed = True
        out.append(b)
    return (out, True) if changed else (seq, False)


def _strip_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    # Only the places the Messages API takes cache_control: a tool schema may well have a
    # property named "cache_control", which must survive.
    out = {k: v for k, v in body.items() if k != "cache_control"}
    out["tools"], _ = _drop_key(out.get("tools"), "cache_control")
    if out["tools"] is None:
        del out["tools"]
    if isinstance(out.get("system"), list):
        out["system"], _ = _drop_key(out["system"], "cache_control")
    messages = out.get("messages")
    if isinstance(messages, list):
        new_messages = []
        for m in messages:
            if isinstance(m, dict) and isinstance(m.get("content"), list):
                content, _ = _drop_key(m["content"], "cache_control")
                nested = []
                for block in content:
                    if isinstance(block, dict) and isinstance(block.get("content"), list):
                        inner, changed = _drop_key(block["content"], "cache_control")
                        if changed:
                            block = {**block, "content": inner}
                    nested.append(block)
                m = {**m, "content": nested}
            new_messages.append(m)
        out["messages"] = new_messages
    return out


def _strip_openai(body: dict[str, Any], fmt: WireFormat, kinds: Collection[str]) -> dict[str, Any]:
    top = {"prompt_cache_key", "prompt_cache_retention", "prompt_cache_options"} & set(kinds)
    out = {k: v for k, v in body.items() if k not in top}
    if "prompt_cache_breakpoint" in kinds:
        key = "messages" if fmt is WireFormat.OPENAI_CHAT else "input"
        items = out.get(key)
        if isinstance(items, list):
            new_items = []
            for it in items:
                # A Responses tool result carries its parts in ``output`` (breakpoints included).
                field = (
                    "output"
                    if isinstance(it, dict) and it.get("type") == "function_call_output"
                    else "content"
                )
                if isinstance(it, dict) and isinstance(it.get(field), list):
                    content, changed = _drop_key(it[field], "prompt_cache_breakpoint")
                    if changed:
                        it = {**it, field: content}
                new_items.append(it)
            out[key] = new_items
    return out


def _strip_bedrock(body: dict[str, Any]) -> dict[str, Any]:
    def without_points(seq: Any) -> Any:
        if not isinstance(seq, list):
            return seq
        return [b for b in seq if not (isinstance(b, dict) and "cachePoint" in b)]

    out = dict(body)
    if "system" in out:
        out["system"] = without_points(out["system"])
    tc = out.get("toolConfig")
    if isinstance(tc, dict) and "tools" in tc:
        out["toolConfig"] = {**tc, "tools": without_points(tc["tools"])}
    if isinstance(out.get("messages"), list):
        out["messages"] = [
            {**m, "content": without_points(m["content"])} if isinstance(m, dict) and "content" in m else m
            for m in out["messages"]
        ]
    return out


def strip_hints(
    body: Mapping[str, Any], fmt: str | WireFormat, kinds: Collection[str] = ALL_HINT_KINDS
) -> dict[str, Any]:
    """A copy of ``body`` without the caching hints of ``kinds`` (all by default).

    Removes the caller's hints as well as promptcache's: a provider that rejects the field
    rejects it wherever it came from. The input is never modified.
    """
    wf = parse_format(fmt)
    out = dict(body)
    if wf is WireFormat.ANTHROPIC_MESSAGES or (
        wf is WireFormat.BEDROCK_CONVERSE and "anthropic_version" in out
    ):
        if "diagnostics" in kinds:
            out.pop("diagnostics", None)
        return _strip_anthropic(out) if "cache_control" in kinds else out
    if wf in (WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES):
        out = _strip_openai(out, wf, kinds)
        # OpenAI-compatible gateways in front of Claude take Anthropic markers on content parts.
        if "cache_control" in kinds and isinstance(out.get("messages"), list):
            out["messages"] = _strip_anthropic({"messages": out["messages"]})["messages"]
        return out
    if wf is WireFormat.BEDROCK_CONVERSE:
        return _strip_bedrock(out) if "cachePoint" in kinds else out
    return out


# -- sending -----------------------------------------------------------------------------


def _count(counter: HintCounter | None) -> None:
    if counter is None:
        return
    if isinstance(counter, MutableMapping):
        counter[COUNTER_NAME] = counter.get(COUNTER_NAME, 0) + 1
    elif hasattr(counter, "add"):
        counter.add(COUNTER_NAME)
    else:
        counter(COUNTER_NAME)


def _retry_body(exc: BaseException, body: Mapping[str, Any], fmt: WireFormat) -> dict[str, Any] | None:
    fields = rejected_fields(exc)
    if not fields:
        return None
    stripped = strip_hints(body, fmt)
    if stripped == body:
        return None  # nothing of ours to remove: the 400 is about something else
    # Field names and the model only: error messages may quote the prompt.
    log.warning(
        "provider rejected a caching hint (%s) for model %s; resending without hints",
        ", ".join(fields),
        body.get("model") or body.get("modelId"),
    )
    return stripped


def send_with_hint_fallback(
    send: Callable[[dict[str, Any]], T],
    prepared_body: Mapping[str, Any],
    fmt: str | WireFormat,
    *,
    counter: HintCounter | None = None,
) -> T:
    """``send(prepared_body)``; on a 400 naming a hint field, ``send`` once more without hints.

    ``send`` is whatever calls the provider (``lambda b: client.messages.create(**b)``) and
    raises the SDK's error (``anthropic.BadRequestError``, ``openai.BadRequestError``,
    ``httpx.HTTPStatusError``, botocore ``ClientError``). Counts ``hint_rejected`` in
    ``counter`` when it resends. Other errors, and an error on the resend, propagate.
    """
    wf = parse_format(fmt)
    body = dict(prepared_body)
    try:
        return send(body)
    except Exception as exc:
        retry = _retry_body(exc, body, wf)
        if retry is None:
            raise
    _count(counter)
    return send(retry)


async def async_send_with_hint_fallback(
    send: Callable[[dict[str, Any]], Awaitable[T]],
    prepared_body: Mapping[str, Any],
    fmt: str | WireFormat,
    *,
    counter: HintCounter | None = None,
) -> T:
    """The asyncio form of :func:`send_with_hint_fallback` (``send`` returns an awaitable)."""
    wf = parse_format(fmt)
    body = dict(prepared_body)
    try:
        return await send(body)
    except Exception as exc:
        retry = _retry_body(exc, body, wf)
        if retry is None:
            raise
    _count(counter)
    return await send(retry)
