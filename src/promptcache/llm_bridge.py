"""The call context of one model call under promptcache, and what is done with it.

Integrations set a :class:`CallContext` around the framework call; the seams into the SDKs
rewrite the request while it is current and read the provider's usage back into it:
:mod:`promptcache.transport` (an httpx transport: ``openai``, ``anthropic``, ``google-genai``)
and :mod:`promptcache.botocore_events` (botocore's event system: boto3 ``bedrock-runtime``).

This module is framework-agnostic (it imports no agent framework):

* :class:`CallContext` / :func:`use_call` — one model call under promptcache, set in a context
  variable around the framework call (and around each step of a stream);
* :func:`rewrite_payload` — ``prepare_request`` with the failure rule (a cache problem never fails
  the call: the request goes out as built, and the reason is noted);
* :func:`intercept_client` — for an ``openai``/``anthropic`` SDK client that cannot go through
  the transport (``AnthropicBedrock`` signs its body before httpx sees it): a copy whose request
  methods (``messages.create``, ``chat.completions.create``, ``responses.create``) rewrite their
  keyword arguments while a call context is set and record the provider's usage (streams are
  teed, not buffered);
* :func:`call_with_hint_fallback` / :func:`acall_with_hint_fallback` — run a framework call that
  sends the context's request; if the provider rejects a caching hint (a 400 naming
  ``cache_control``, ``prompt_cache_key``, ...), run it once more with every hint stripped
  (:mod:`promptcache.providers.fallback`), counted in :data:`HINT_REJECTIONS`;
* :func:`plan_summary` / :func:`record_call` — what was done (no prompt text) and the usage fed to
  the cache's shared stats (``promptcache.stats.recorder_for``).

Outside a call context the intercepted client behaves exactly like the original.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from promptcache.engine import PromptCache
from promptcache.formats import WireFormat
from promptcache.metrics import CallFigures, figures_from_usage
from promptcache.plan import Plan
from promptcache.providers.fallback import rejected_fields, strip_hints
from promptcache.providers.usage import usage_from_response, usage_from_stream
from promptcache.stats import recorder_for
from promptcache.telemetry import hooks
from promptcache.telemetry.events import ProviderCallEvent
from promptcache.usage import CacheUsage
from promptcache.wire import WireFormatError

__all__ = [
    "HINT_REJECTIONS",
    "TRANSPORT_KWARGS",
    "CallContext",
    "acall_with_hint_fallback",
    "call_with_hint_fallback",
    "current_call",
    "intercept_client",
    "is_intercepted",
    "new_call_id",
    "plan_summary",
    "record_call",
    "rewrite_payload",
    "to_plain",
    "use_call",
]

log = logging.getLogger("promptcache.llm_bridge")

TRANSPORT_KWARGS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})
"""SDK keyword arguments that configure the transport, not the request body."""

_MARK = "__promptcache_intercepted__"

T = TypeVar("T")

HINT_REJECTIONS: Counter[str] = Counter()
"""Process-wide count of requests resent without caching hints (key ``hint_rejected``)."""


def new_call_id() -> str:
    """A fresh call id: 32 random hex digits, like ``uuid4().hex`` at a fraction of its cost (it is
    made on every model call)."""
    return os.urandom(16).hex()


@dataclass(slots=True)
class CallContext:
    """One model call under promptcache: who it runs for, what was sent, what the provider said."""

    cache: PromptCache
    tenant: str
    format: WireFormat | None = None
    """A forced wire format (None: the intercepted SDK method decides)."""
    call_id: str = field(default_factory=new_call_id)
    plan: Plan | None = None
    """The plan of the request as sent (None: not rewritten)."""
    body: dict[str, Any] | None = None
    """The rewritten body, kept only until the provider answered: a hint rejection needs it.

    Dropped then (:func:`call_with_hint_fallback`) rather than with the context: freed right
    after the SDK serialized it, its objects are still in the CPU's cache; freed after the
    answer was parsed and described, they cost several times as much (measured: ~130k cycles
    a 16k-token request on a cold path, ~40k right after the call)."""
    format_used: WireFormat | None = None
    model: str | None = None
    usage: CacheUsage | None = None
    requests: int = 0
    stream_events: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hints_off: bool = False
    """Set once the provider rejected a caching hint: every later send of this call carries none."""
    started: float = field(default_factory=time.perf_counter)
    first_chunk_at: float | None = None
    """When the first streamed chunk arrived (None: not streamed); for time to first token."""


def mark_first_chunk(ctx: CallContext) -> None:
    """Note the first streamed chunk of ``ctx`` (later calls change nothing)."""
    if ctx.first_chunk_at is None:
        ctx.first_chunk_at = time.perf_counter()


current_call: ContextVar[CallContext | None] = ContextVar("promptcache_llm_call", default=None)
"""The call being made; set only around a framework call or one step of its stream."""


@contextmanager
def use_call(ctx: CallContext) -> Iterator[CallContext]:
    """Make ``ctx`` the current call for the duration of the block."""
    token = current_call.set(ctx)
    try:
        yield ctx
    finally:
        current_call.reset(token)


def to_plain(obj: Any) -> Any:
    """An SDK response or event as plain JSON data (dicts pass through)."""
    if isinstance(obj, Mapping):
        return dict(obj)
    for name in ("to_dict", "model_dump"):
        fn = getattr(obj, name, None)
        if callable(fn):
            try:
                return fn(mode="json") if name == "model_dump" else fn()
            except TypeError:
                return fn()
    return obj


def rewrite_payload(ctx: CallContext, payload: Mapping[str, Any], fmt: WireFormat) -> dict[str, Any]:
    """``ctx.cache.prepare_request(payload)`` for ``ctx.tenant``; the payload unchanged on failure.

    Transport options (:data:`TRANSPORT_KWARGS`) are set aside and put back untouched. After a
    hint rejection (``ctx.hints_off``) the body goes out with every caching hint stripped.
    """
    fmt = ctx.format or fmt
    if TRANSPORT_KWARGS.isdisjoint(payload):
        # The usual payload: nothing to set aside, and prepare_request never writes to its body.
        body, transport = payload if type(payload) is dict else dict(payload), {}
    else:
        body = {k: v for k, v in payload.items() if k not in TRANSPORT_KWARGS}
        transport = {k: v for k, v in payload.items() if k in TRANSPORT_KWARGS}
    ctx.requests += 1
    ctx.format_used = fmt
    model = body.get("model")
    ctx.model = model if isinstance(model, str) else None
    try:
        prepared = ctx.cache.prepare_request(body, format=fmt, tenant=ctx.tenant)
    except (WireFormatError, TypeError, ValueError) as exc:
        # A cache problem must never fail the call (DESIGN: failure behaviour): send it as built.
        # The exception text names fields, not prompt text.
        ctx.notes.append(f"request sent unchanged: {type(exc).__name__}: {exc}"[:300])
        ctx.plan = ctx.body = None
        return {**strip_hints(body, fmt), **transport} if ctx.hints_off else dict(payload)
    ctx.plan, ctx.body = prepared.plan, prepared.body
    out = strip_hints(prepared.body, fmt) if ctx.hints_off else prepared.body
    return {**out, **transport}


def _should_resend(ctx: CallContext, exc: BaseException) -> bool:
    """Whether ``exc`` is the provider refusing one of our hints, and the request had some to drop.

    Marks the context so the resend is built without hints, notes and counts the event.
    """
    body = ctx.body
    if ctx.hints_off or body is None or ctx.format_used is None:
        return False
    fields = rejected_fields(exc)
    if not fields or strip_hints(body, ctx.format_used) == body:
        return False
    ctx.hints_off = True
    HINT_REJECTIONS["hint_rejected"] += 1
    ctx.notes.append(f"provider rejected caching hint ({', '.join(fields)}); resent without hints")
    # Field names and the model only: provider error messages may quote the prompt.
    log.warning("provider rejected a caching hint (%s) for model %s; resending", ", ".join(fields), ctx.model)
    return True


def call_with_hint_fallback(ctx: CallContext, call: Callable[[], T], *, answered: bool = True) -> T:
    """``call()``, which sends ``ctx``'s request through a framework; once more without hints if
    the provider rejected one (DESIGN: "provider rejects a hint: resend without it, count").

    For frameworks that build and send the body inside one call (LangChain's ``_generate``), so
    :func:`promptcache.providers.fallback.send_with_hint_fallback`, which needs the body in hand,
    does not fit: the retry re-runs the framework call with ``ctx.hints_off`` set, and
    :func:`rewrite_payload` strips the hints from the rebuilt body. Other errors propagate.

    ``answered``: ``call()`` returning means the provider answered, so ``ctx.body`` is let go
    (see :attr:`CallContext.body`). Pass False for a call that may return an awaitable which
    sends the request only when awaited: the caller then lets the body go itself, or
    :func:`acall_with_hint_fallback` does after the await. (Telling the two apart here, with
    ``inspect.isawaitable``, cost ~30k cycles on a cold CPU cache: an ABC check per call.)
    """
    try:
        out = call()
    except Exception as exc:
        if not _should_resend(ctx, exc):
            raise
        out = call()
    if answered:
        ctx.body = None
    return out


async def acall_with_hint_fallback(ctx: CallContext, call: Callable[[], Awaitable[T]]) -> T:
    """The asyncio form of :func:`call_with_hint_fallback`."""
    try:
        out = await call()
    except Exception as exc:
        if not _should_resend(ctx, exc):
            raise
        out = await call()
    ctx.body = None
    return out


def plan_summary(ctx: CallContext) -> dict[str, Any]:
    """What promptcache did to the call and what the provider reported: no prompt text."""
    out: dict[str, Any] = {"tenant": ctx.tenant, "mode": ctx.cache.mode, "call_id": ctx.call_id}
    fmt = ctx.format_used
    if fmt is not None:
        # ``_value_`` is ``.value`` without Enum's Python-level descriptor (a call per read).
        out["format"] = fmt._value_
    plan = ctx.plan
    if plan is not None:
        out.update(
            prefix_key=plan.prefix_key,
            hints=[{"kind": h.kind, "where": h.where, "ttl": h.ttl} for h in plan.hints],
            relocated_values=len(plan.fragments),
            explain=plan.explain_text(),
        )
    u = ctx.usage
    if u is not None:
        out.update(
            model=u.model,
            input_tokens=u.input_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            output_tokens=u.output_tokens,
        )
    if ctx.hints_off:
        out["hint_rejected"] = True
    if ctx.notes:
        out["notes"] = list(ctx.notes)
    return out


def record_call(ctx: CallContext) -> CallFigures | None:
    """Feed the call's provider usage to the cache's shared stats; its priced figures, or None.

    Also reports the provider call to telemetry (duration, and time to first token on
    streamed calls, split by whether the provider read the prompt from its cache).
    """
    if hooks.enabled():
        _emit_provider_call(ctx)
    usage = ctx.usage
    if usage is None:
        return None
    figures = figures_from_usage(usage, call_id=ctx.call_id, tenant=ctx.tenant)
    recorder_for(ctx.cache).record(ctx.tenant, usage, figures=figures)
    return figures


def _emit_provider_call(ctx: CallContext) -> None:
    # Called only when something listens (hooks.enabled()).
    fmt = ctx.format_used or ctx.format
    u = ctx.usage
    provider = fmt.provider if fmt is not None else "unknown"
    model = ctx.model or (u.model if u is not None and u.model else "unknown")
    now = time.perf_counter()
    # The provider request as a client span: its end is only known now (a stream may
    # just have finished), so it is recorded with its real start and end times.
    end_ns = time.time_ns()
    start_ns = end_ns - int((now - ctx.started) * 1e9)
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "promptcache.tenant": ctx.tenant,
        "promptcache.streaming": ctx.first_chunk_at is not None,
    }
    if u is not None:
        attrs.update(
            {
                "gen_ai.usage.input_tokens": u.input_tokens,
                "gen_ai.usage.output_tokens": u.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": u.cache_read_tokens,
                "gen_ai.usage.cache_creation.input_tokens": u.cache_write_tokens,
            }
        )
    if ctx.first_chunk_at is not None:
        attrs["promptcache.ttft_s"] = ctx.first_chunk_at - ctx.started
    hooks.record_span(f"chat {model}", start_ns, end_ns, attrs, kind="client")
    hooks.emit(
        ProviderCallEvent(
            tenant=ctx.tenant,
            provider=provider,
            model=model,
            streaming=ctx.first_chunk_at is not None,
            duration_s=now - ctx.started,
            ttft_s=None if ctx.first_chunk_at is None else ctx.first_chunk_at - ctx.started,
            provider_cache_hit=bool(u is not None and u.cache_read_tokens > 0),
            agent=hooks.current_agent(),
        )
    )


# -- reading usage back -------------------------------------------------------------------


def _observe_response(ctx: CallContext, fmt: WireFormat, response: Any) -> None:
    try:
        ctx.usage = usage_from_response(fmt, to_plain(response))
    except (ValueError, TypeError) as exc:
        ctx.notes.append(f"provider usage unreadable: {exc}"[:300])


def _finish_stream(ctx: CallContext, fmt: WireFormat) -> None:
    try:
        ctx.usage = usage_from_stream(fmt, ctx.stream_events)
    except (ValueError, TypeError) as exc:
        ctx.notes.append(f"stream usage unreadable: {exc}"[:300])


class _TeeStream:
    """A provider stream that records each event's data for the usage read-back, then passes it on."""

    def __init__(self, stream: Any, ctx: CallContext, fmt: WireFormat) -> None:
        self._stream = stream
        self._ctx = ctx
        self._fmt = fmt
        self._it: Iterator[Any] | None = None
        self._done = False

    def __iter__(self) -> _TeeStream:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._it = iter(self._stream)
        try:
            event = next(self._it)
        except StopIteration:
            self._finish()
            raise
        mark_first_chunk(self._ctx)
        d = to_plain(event)
        if isinstance(d, dict):
            self._ctx.stream_events.append(d)
        return event

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            _finish_stream(self._ctx, self._fmt)

    def __enter__(self) -> _TeeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying stream."""
        fn = getattr(self._stream, "close", None)
        if callable(fn):
            fn()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _AsyncTeeStream:
    """The asyncio twin of :class:`_TeeStream`."""

    def __init__(self, stream: Any, ctx: CallContext, fmt: WireFormat) -> None:
        self._stream = stream
        self._ctx = ctx
        self._fmt = fmt
        self._it: AsyncIterator[Any] | None = None
        self._done = False

    def __aiter__(self) -> _AsyncTeeStream:
        return self

    async def __anext__(self) -> Any:
        if self._it is None:
            self._it = aiter(self._stream)
        try:
            event = await anext(self._it)
        except StopAsyncIteration:
            if not self._done:
                self._done = True
                _finish_stream(self._ctx, self._fmt)
            raise
        mark_first_chunk(self._ctx)
        d = to_plain(event)
        if isinstance(d, dict):
            self._ctx.stream_events.append(d)
        return event

    async def __aenter__(self) -> _AsyncTeeStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the underlying stream."""
        fn = getattr(self._stream, "close", None)
        if callable(fn):
            out = fn()
            if inspect.isawaitable(out):
                await out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# -- intercepting SDK methods ---------------------------------------------------------------


def _prepare_kwargs(
    ctx: CallContext, fmt: WireFormat, kwargs: dict[str, Any], stream: bool
) -> dict[str, Any]:
    ctx.stream_events.clear()
    ctx.usage = None
    if stream and fmt is WireFormat.OPENAI_CHAT:
        # Chat Completions streams report usage (cache reads included) only when asked to; the
        # extra last chunk has empty ``choices``, which every OpenAI client already handles.
        opts = dict(kwargs.get("stream_options") or {})
        if "include_usage" not in opts:
            opts["include_usage"] = True
            kwargs = {**kwargs, "stream_options": opts}
    return rewrite_payload(ctx, kwargs, fmt)


class _Method:
    """A request method (``create``) that rewrites its kwargs inside a call context."""

    def __init__(self, fn: Any, fmt: WireFormat) -> None:
        self._fn = fn
        self._fmt = fmt

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = current_call.get()
        if ctx is None or args:
            return self._fn(*args, **kwargs)
        stream = bool(kwargs.get("stream"))

        def send() -> Any:
            # Rebuilt on a resend: rewrite_payload then leaves out the hints the provider refused.
            return self._fn(**_prepare_kwargs(ctx, self._fmt, kwargs, stream))

        out = call_with_hint_fallback(ctx, send, answered=False)
        if inspect.isawaitable(out):
            # Async SDK methods are plain functions returning a coroutine (decorated): test the result.
            return self._await(ctx, out, send, stream)
        ctx.body = None  # answered (see CallContext.body)
        return self._wrap(ctx, out, stream)

    async def _await(
        self, ctx: CallContext, pending: Awaitable[Any], send: Callable[[], Any], stream: bool
    ) -> Any:
        # An async client raises only when awaited: the first attempt is the pending request.
        first = [pending]
        out = await acall_with_hint_fallback(ctx, lambda: first.pop() if first else send())
        return self._wrap(ctx, out, stream)

    def _wrap(self, ctx: CallContext, out: Any, stream: bool) -> Any:
        if not stream:
            _observe_response(ctx, self._fmt, out)
            return out
        if hasattr(out, "__aiter__"):
            return _AsyncTeeStream(out, ctx, self._fmt)
        return _TeeStream(out, ctx, self._fmt)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fn, name)


class Delegate:
    """Delegates everything to ``target`` except the attributes given in ``overrides``.

    How an intercepted SDK client stands in for the caller's: the caller's client is
    never modified. Shared with :mod:`promptcache.intercept`.
    """

    def __init__(self, target: Any, overrides: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_overrides", dict(overrides))

    def __getattr__(self, name: str) -> Any:
        ov = object.__getattribute__(self, "_overrides")
        if name in ov:
            return ov[name]
        return getattr(object.__getattribute__(self, "_target"), name)


def is_intercepted(client: Any) -> bool:
    """Whether ``client`` is already a copy made by :func:`intercept_client`."""
    return getattr(client, _MARK, False) is True


def _sdk_copy(client: Any, attrs: Mapping[str, Any]) -> Any:
    # A shallow copy keeps the class (isinstance checks such as Azure/Vertex/Bedrock detection
    # still hold) and shares the HTTP connection pool; only the copy gets the wrapped resources.
    dup = copy.copy(client)
    for name, value in attrs.items():
        dup.__dict__[name] = value
    dup.__dict__[_MARK] = True
    return dup


def intercept_client(client: Any) -> Any:
    """A copy of an ``openai``/``anthropic`` SDK client whose request methods apply promptcache
    while a :class:`CallContext` is current (boto3 ``bedrock-runtime`` clients: see
    :mod:`promptcache.botocore_events`).

    Returns ``client`` itself when it is ``None``, already intercepted, or of a kind this module
    does not know (the call then goes out unchanged).
    """
    if client is None or is_intercepted(client):
        return client
    module = type(client).__module__.split(".")[0]
    if module == "anthropic" and hasattr(client, "messages"):
        messages = client.messages
        return _sdk_copy(
            client,
            {
                "messages": Delegate(
                    messages, {"create": _Method(messages.create, WireFormat.ANTHROPIC_MESSAGES)}
                )
            },
        )
    if module == "openai" and hasattr(client, "chat"):
        chat, responses = client.chat, client.responses
        completions = chat.completions
        return _sdk_copy(
            client,
            {
                "chat": Delegate(
                    chat,
                    {
                        "completions": Delegate(
                            completions, {"create": _Method(completions.create, WireFormat.OPENAI_CHAT)}
                        )
                    },
                ),
                "responses": Delegate(
                    responses, {"create": _Method(responses.create, WireFormat.OPENAI_RESPONSES)}
                ),
            },
        )
    log.debug("intercept_client: %s is not a known SDK client; calls go out unchanged", type(client).__name__)
    return client
