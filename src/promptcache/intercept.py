"""More provider SDK calls under promptcache: ``google-genai`` clients and structured-output ``parse``.

:mod:`promptcache.llm_bridge` rewrites the request methods that framework LLMs use for chat
(``messages.create``, ``chat.completions.create``, ``responses.create``, ``converse``). Two
kinds of call it does not see:

* **google-genai** (Gemini). ``google.genai.Client`` builds the REST body itself and hands it to
  its API client (``_api_client.request(method, path, body)``, ``request_streamed`` and the
  async twins). That body *is* the ``gemini`` wire format, with the model in the path
  (``models/{model}:generateContent``), so the API client is where ``prepare_request`` applies.
  With a :class:`~promptcache.providers.gemini_cache.GeminiCacheManager` the static prefix then
  moves into an explicit cached content (``cachedContent``); if the provider refuses that cache
  (expired or deleted behind our back) the handle is dropped and the request is sent once more
  without it.
* **Structured-output helpers**: anthropic's ``beta.messages.parse`` and openai's
  ``responses.parse`` take a Python type (``output_format``/``text_format``) next to the body
  fields. The type and the ``betas`` header list are set aside, the rest is rewritten like any
  request, and they are put back for the SDK to turn into the schema it sends.

:func:`intercept_sdk_client` is :func:`promptcache.llm_bridge.intercept_client` plus both; like it,
it returns a copy (the caller's client is untouched) that rewrites only while a
:class:`~promptcache.llm_bridge.CallContext` is current, and reads the provider's usage back
(streams included) into that context. :class:`GenAIClientTransport` lets a
``GeminiCacheManager`` create and delete cached contents through the same client's credentials.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from promptcache.formats import WireFormat
from promptcache.llm_bridge import (
    HINT_REJECTIONS,
    CallContext,
    Delegate,
    acall_with_hint_fallback,
    call_with_hint_fallback,
    current_call,
    intercept_client,
    is_intercepted,
    mark_first_chunk,
    rewrite_payload,
    to_plain,
)
from promptcache.providers.gemini_cache import GeminiCacheManager, GeminiPrepared
from promptcache.providers.usage import usage_from_response, usage_from_stream
from promptcache.usage import CacheUsage
from promptcache.wire import WireFormatError

__all__ = [
    "GenAIClientTransport",
    "intercept_genai_client",
    "intercept_sdk_client",
    "is_genai_client",
]

_MARK = "__promptcache_intercepted__"
_GENERATE = re.compile(r"(?:^|/)models/([^/:?]+):(generateContent|streamGenerateContent)")
# Keyword arguments of the parse helpers that are not body JSON: a Python type the SDK turns into
# a schema, and the beta flags it sends as a header.
_PARSE_ASIDE = frozenset({"output_format", "text_format", "betas"})


def is_genai_client(client: Any) -> bool:
    """Whether ``client`` is a ``google.genai.Client`` (or a copy made here)."""
    return type(client).__module__.startswith("google.genai") or (
        isinstance(client, Delegate) and is_genai_client(object.__getattribute__(client, "_target"))
    )


def intercept_sdk_client(client: Any, *, gemini_caches: GeminiCacheManager | None = None) -> Any:
    """:func:`promptcache.llm_bridge.intercept_client`, plus google-genai clients and the
    anthropic/openai structured-output ``parse`` methods.

    ``gemini_caches`` (google-genai only) moves each request's static prefix into an explicit
    cached content. Unknown clients and ``None`` are returned as they are.
    """
    if client is None or is_intercepted(client):
        return client
    if is_genai_client(client):
        return intercept_genai_client(client, caches=gemini_caches)
    hooked = intercept_client(client)
    if hooked is client:
        return client
    module = type(client).__module__.split(".")[0]
    if module == "anthropic" and hasattr(client, "beta"):
        msgs = client.beta.messages
        hooked.__dict__["beta"] = Delegate(
            client.beta,
            {"messages": Delegate(msgs, {"parse": _ParseMethod(msgs.parse, WireFormat.ANTHROPIC_MESSAGES)})},
        )
    elif module == "openai" and hasattr(client, "responses"):
        responses = hooked.responses
        hooked.__dict__["responses"] = Delegate(
            responses,
            {"parse": _ParseMethod(client.responses.parse, WireFormat.OPENAI_RESPONSES)},
        )
    return hooked


# -- structured-output parse ----------------------------------------------------------------


def _read_usage(ctx: CallContext, fmt: WireFormat, response: Any) -> None:
    dump = getattr(response, "model_dump", None)
    # A parsed answer holds the caller's type under a generic field: pydantic warns on dumping it.
    plain = dump(mode="json", warnings=False) if callable(dump) else to_plain(response)
    try:
        ctx.usage = usage_from_response(fmt, plain)
    except (ValueError, TypeError) as exc:
        ctx.notes.append(f"provider usage unreadable: {exc}"[:300])


class _ParseMethod:
    """``parse(**kwargs)`` whose body fields are rewritten inside a call context."""

    def __init__(self, fn: Any, fmt: WireFormat) -> None:
        self._fn = fn
        self._fmt = fmt

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = current_call.get()
        if ctx is None or args:
            return self._fn(*args, **kwargs)
        aside = {k: v for k, v in kwargs.items() if k in _PARSE_ASIDE}
        body = {k: v for k, v in kwargs.items() if k not in _PARSE_ASIDE}
        ctx.usage = None

        def send() -> Any:
            # Rebuilt on a resend: rewrite_payload then leaves out the hints the provider refused.
            return self._fn(**rewrite_payload(ctx, body, self._fmt), **aside)

        out = call_with_hint_fallback(ctx, send, answered=False)
        if inspect.isawaitable(out):
            return self._await(ctx, out, send)
        ctx.body = None  # answered (see CallContext.body)
        _read_usage(ctx, self._fmt, out)
        return out

    async def _await(self, ctx: CallContext, pending: Awaitable[Any], send: Callable[[], Any]) -> Any:
        # An async client raises only when awaited: the first attempt is the pending request.
        first = [pending]
        out = await acall_with_hint_fallback(ctx, lambda: first.pop() if first else send())
        _read_usage(ctx, self._fmt, out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fn, name)


# -- google-genai ---------------------------------------------------------------------------


def intercept_genai_client(client: Any, *, caches: GeminiCacheManager | None = None) -> Any:
    """A stand-in for a ``google.genai.Client`` whose ``generateContent`` and
    ``streamGenerateContent`` requests (``models``, ``chats`` and their ``aio`` twins) promptcache
    rewrites inside a call context; everything else is the client's own.

    A delegate rather than a copy: a copied ``Client`` would close the shared HTTP client when it
    is garbage-collected.
    """
    if client is None or is_intercepted(client):
        return client
    api = client._api_client
    hooked_api = Delegate(
        api,
        {
            "request": _GenAIRequest(api.request, caches, streamed=False),
            "request_streamed": _GenAIRequest(api.request_streamed, caches, streamed=True),
            "async_request": _GenAIRequest(api.async_request, caches, streamed=False),
            "async_request_streamed": _GenAIRequest(api.async_request_streamed, caches, streamed=True),
        },
    )
    models = type(client.models)(hooked_api)
    aio = client.aio
    amodels = type(aio.models)(hooked_api)
    chats_cls, achats_cls = type(client.chats), type(aio.chats)
    hooked_aio = Delegate(
        aio,
        {
            "_api_client": hooked_api,
            "_models": amodels,
            "models": amodels,
            "chats": achats_cls(modules=amodels),
        },
    )
    return Delegate(
        client,
        {
            "_api_client": hooked_api,
            "_models": models,
            "models": models,
            "chats": chats_cls(modules=models),
            "_aio": hooked_aio,
            "aio": hooked_aio,
            _MARK: True,
        },
    )


class GenAIClientTransport:
    """A :class:`~promptcache.providers.gemini_cache.GeminiTransport` over a ``google.genai.Client``:
    cached contents are created, refreshed and deleted with the client's own credentials and base
    URL (Gemini API keys and Vertex AI alike)."""

    def __init__(self, client: Any) -> None:
        target = object.__getattribute__(client, "_target") if isinstance(client, Delegate) else client
        self._api = target._api_client

    def _call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self._api.request(method, path, body)
        text = getattr(resp, "body", None) or "{}"
        out = json.loads(text)
        return out if isinstance(out, dict) else {}

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST cachedContents``."""
        return self._call("post", "cachedContents", body)

    def update_ttl(self, name: str, ttl: str) -> dict[str, Any]:
        """``PATCH {name}?updateMask=ttl``."""
        return self._call("patch", f"{name}?updateMask=ttl", {"ttl": ttl})

    def delete(self, name: str) -> None:
        """``DELETE {name}``."""
        self._call("delete", name, {})


def _genai_model(path: str) -> str | None:
    m = _GENERATE.search(path)
    return m.group(1) if m else None


class _GenAIRequest:
    """One of the API client's four request methods, rewriting ``generateContent`` bodies."""

    def __init__(self, fn: Any, caches: GeminiCacheManager | None, *, streamed: bool) -> None:
        self._fn = fn
        self._caches = caches
        self._streamed = streamed

    def __call__(self, http_method: str, path: str, request_dict: dict[str, Any], *rest: Any) -> Any:
        ctx = current_call.get()
        model = _genai_model(path)
        if ctx is None or model is None or not isinstance(request_dict, dict):
            return self._fn(http_method, path, request_dict, *rest)
        sent, prepared = self._prepare(ctx, model, request_dict)
        write = prepared.create_usage if prepared is not None else None

        def send(body: dict[str, Any]) -> Any:
            return self._fn(http_method, path, body, *rest)

        def resend(exc: Exception) -> Any:
            # A refused cached content is a cache fault: the call goes on without it.
            retry = self._fallback_body(ctx, exc, prepared, request_dict)
            return None if retry is None else send(retry)

        out = self._send(send, sent, resend)
        if inspect.isawaitable(out):
            return self._await(ctx, out, write, resend)
        return self._wrap(ctx, out, write, resend)

    # -- the body -----------------------------------------------------------------------

    def _prepare(
        self, ctx: CallContext, model: str, request_dict: dict[str, Any]
    ) -> tuple[dict[str, Any], GeminiPrepared | None]:
        ctx.stream_events.clear()
        ctx.usage = None
        ctx.requests += 1
        ctx.format_used = WireFormat.GEMINI
        ctx.model = model
        # google-genai keeps routing data under underscore keys (``_url``, ``_query``); not body.
        aside = {k: v for k, v in request_dict.items() if k.startswith("_")}
        body = {k: v for k, v in request_dict.items() if not k.startswith("_")}
        try:
            prep = ctx.cache.prepare_request(body, format=WireFormat.GEMINI, tenant=ctx.tenant, model=model)
        except (WireFormatError, TypeError, ValueError) as exc:
            # A cache problem must never fail the call (DESIGN: failure behaviour): send it as built.
            ctx.notes.append(f"request sent unchanged: {type(exc).__name__}: {exc}"[:300])
            ctx.plan = ctx.body = None
            return dict(request_dict), None
        ctx.plan, ctx.body = prep.plan, prep.body
        out = prep.body
        explicit: GeminiPrepared | None = None
        if self._caches is not None:
            try:
                explicit = self._caches.prepare(out, tenant=ctx.tenant, model=model)
            except Exception as exc:
                # Creating the cached content failed (quota, auth, network): implicit caching only.
                ctx.notes.append(f"explicit cache skipped: {type(exc).__name__}"[:300])
            else:
                ctx.notes.extend(explicit.notes)
                out = explicit.body
        return {**out, **aside}, explicit

    def _fallback_body(
        self, ctx: CallContext, exc: Exception, prepared: GeminiPrepared | None, original: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The body to resend when the provider refused our cached content, else None."""
        if prepared is None or prepared.handle is None or self._caches is None:
            return None
        if getattr(exc, "code", None) not in (400, 403, 404):
            return None
        handle = prepared.handle
        self._caches.invalidate(tenant=handle.tenant, prefix_key=handle.prefix_key)
        ctx.notes.append(f"provider refused {handle.name}; handle dropped and resent without it")
        HINT_REJECTIONS["hint_rejected"] += 1
        body = ctx.body if ctx.body is not None else original
        return {**body, **{k: v for k, v in original.items() if k.startswith("_")}}

    def _send(self, send: Any, sent: dict[str, Any], resend: Any) -> Any:
        if self._streamed:
            return send(sent)  # a lazy generator (sync) or a coroutine (async): nothing sent yet
        try:
            return send(sent)
        except Exception as exc:
            out = resend(exc)
            if out is None:
                raise
            return out

    async def _await(self, ctx: CallContext, pending: Any, write: CacheUsage | None, resend: Any) -> Any:
        try:
            out = await pending
        except Exception as exc:
            # Streamed or not, the async SDK sends on await: the refusal surfaces here.
            again = resend(exc)
            if again is None:
                raise
            out = await again
        return self._wrap(ctx, out, write, resend)

    # -- the answer ---------------------------------------------------------------------

    def _wrap(self, ctx: CallContext, out: Any, write: CacheUsage | None, resend: Any) -> Any:
        if not self._streamed:
            chunk = _body_json(out)
            if chunk is not None:
                _set_usage(ctx, lambda: usage_from_response(WireFormat.GEMINI, chunk), write)
            return out
        if hasattr(out, "__aiter__"):
            return _agen_tee(ctx, out, write, resend)
        return _gen_tee(ctx, out, write, resend)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fn, name)


def _body_json(response: Any) -> dict[str, Any] | None:
    text = getattr(response, "body", None)
    if not text:
        return None
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _set_usage(ctx: CallContext, read: Any, write: CacheUsage | None) -> None:
    try:
        usage: CacheUsage = read()
    except (ValueError, TypeError) as exc:
        ctx.notes.append(f"provider usage unreadable: {exc}"[:300])
        return
    if write is not None:
        # Creating the cached content was billed in this call: its tokens were written once,
        # even when the provider then refused the content and the call was resent without it.
        usage = usage.model_copy(
            update={
                "input_tokens": usage.input_tokens + write.input_tokens,
                "cache_write_tokens": usage.cache_write_tokens + write.cache_write_tokens,
            }
        )
    ctx.usage = usage


def _note_chunk(ctx: CallContext, response: Any) -> None:
    mark_first_chunk(ctx)
    chunk = _body_json(response)
    if chunk is not None:
        ctx.stream_events.append(chunk)


def _finish(ctx: CallContext, write: CacheUsage | None) -> None:
    events = list(ctx.stream_events)
    _set_usage(ctx, lambda: usage_from_stream(WireFormat.GEMINI, events), write)


def _gen_tee(
    ctx: CallContext, stream: Iterator[Any], write: CacheUsage | None, resend: Any = None
) -> Iterator[Any]:
    it = iter(stream)
    try:
        # The sync SDK sends a streamed request lazily: a refused cached content
        # surfaces at the first chunk, before anything reached the caller.
        first = next(it)
    except StopIteration:
        _finish(ctx, write)
        return
    except Exception as exc:
        again = resend(exc) if resend is not None else None
        if again is None:
            raise
        it = iter(again)
        first = next(it, _END)
        if first is _END:
            _finish(ctx, write)
            return
    _note_chunk(ctx, first)
    yield first
    for response in it:
        _note_chunk(ctx, response)
        yield response
    _finish(ctx, write)


async def _agen_tee(
    ctx: CallContext, stream: AsyncIterator[Any], write: CacheUsage | None, resend: Any = None
) -> AsyncIterator[Any]:
    it = aiter(stream)
    try:
        first = await anext(it)
    except StopAsyncIteration:
        _finish(ctx, write)
        return
    except Exception as exc:
        again = resend(exc) if resend is not None else None
        if inspect.isawaitable(again):
            again = await again
        if again is None:
            raise
        it = aiter(again)
        first = await anext(it, _END)
        if first is _END:
            _finish(ctx, write)
            return
    _note_chunk(ctx, first)
    yield first
    async for response in it:
        _note_chunk(ctx, response)
        yield response
    _finish(ctx, write)


_END = object()
