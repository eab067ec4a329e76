"""The seam into the provider SDKs at their HTTP layer: an ``httpx`` transport.

The ``openai``, ``anthropic`` and ``google-genai`` SDKs all send through an ``httpx`` client, and
each takes the caller's own (``http_client=``). :func:`wrap_http_client` returns a new client of
the same kind whose transport is a :class:`PromptCacheTransport` around the caller's transport
(its proxies, retries, TLS settings and connection pool stay in charge of the wire); the caller's
client is never modified. Frameworks that pass ``http_client`` to the SDK (LangChain's
``ChatOpenAI``/``ChatAnthropic``, LlamaIndex's ``OpenAI``/``Anthropic``) therefore need no
change to their classes: a copy of the model with another ``http_client`` is enough.

While a :class:`~promptcache.llm_bridge.CallContext` is current (:func:`~promptcache.llm_bridge.use_call`,
set by an integration around the framework call), the transport:

1. tells the wire format from the endpoint (``/chat/completions`` → ``openai-chat``,
   ``/responses`` → ``openai-responses``, ``/messages`` → ``anthropic-messages``,
   ``models/{m}:generateContent`` → ``gemini``, ``/model/{id}/converse`` (and ``converse-stream``)
   → ``bedrock-converse``);
2. rewrites the JSON body through ``PromptCache.prepare_request`` for the context's tenant (a
   cache problem never fails the call: the request then goes out as built, and the reason is
   noted);
3. resends once without caching hints when the provider answers 400 naming one
   (:mod:`promptcache.providers.fallback`; counted in ``HINT_REJECTIONS``);
4. reads the provider's usage back into the context: from the JSON answer, or from a
   server-sent-event stream as it passes through to the SDK, event by event, never buffered.

Given a :class:`~promptcache.providers.gemini_cache.GeminiCacheManager` (``gemini_caches=``),
a ``generateContent`` request's static prefix then moves into an explicit cached content
(``cachedContent``); when Gemini refuses that content (expired or deleted behind our back: a
400, 403 or 404) the handle is dropped and the request is sent once more without it, and the
tokens written by creating it are still counted in the call's usage.

Outside a call context, and for any other request (model listings, token counting, uploads,
the cached contents themselves), the transport only forwards.

:func:`wrap_genai_client` puts a ``google.genai.Client`` on this seam through the SDK's own
``HttpOptions(httpx_client=..., httpx_async_client=...)``.

anthropic's Bedrock and Vertex clients sign the body (or move the model into the URL) before
httpx sees the request: they go through :mod:`promptcache.anthropic_middleware` instead, which
drives the same :class:`ProviderRequest` and stream readers.
"""

from __future__ import annotations

import json
import logging
import re
import weakref
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol
from urllib.parse import unquote

import httpx
import orjson

from promptcache.figures import Degradation
from promptcache.formats import WireFormat
from promptcache.llm_bridge import HINT_REJECTIONS, CallContext, current_call, mark_first_chunk
from promptcache.providers import openai_diagnostics as oai
from promptcache.providers.diagnostics import (
    diagnosis_from_answer,
    diagnosis_from_stream,
    response_id_from_answer,
    response_id_from_stream,
)
from promptcache.providers.fallback import HINT_FIELDS, REJECTIONS, may_be_rejection, strip_hints
from promptcache.providers.gemini_cache import GeminiCacheManager, GeminiPrepared
from promptcache.providers.mid_conversation import TOOL_CHANGES_BETA
from promptcache.providers.usage import usage_from_response, usage_from_stream
from promptcache.usage import CacheUsage
from promptcache.wire import WireFormatError

__all__ = [
    "AsyncPromptCacheTransport",
    "PromptCacheTransport",
    "ProviderRequest",
    "SSEReader",
    "StreamReader",
    "endpoint_format",
    "is_genai_client",
    "tee_response",
    "wrap_genai_client",
    "wrap_http_client",
]

log = logging.getLogger("promptcache.transport")

_GEMINI = re.compile(r"/models/([^/:?]+):(generateContent|streamGenerateContent)$")
_CONVERSE = re.compile(r"/model/([^/]+)/converse(?:-stream)?$")


def endpoint_format(path: str) -> tuple[WireFormat, str | None] | None:
    """The wire format of a request to ``path`` and the model the path names (None: not a
    model call this transport rewrites; ``/messages/count_tokens`` and batches are not)."""
    if path.endswith("/chat/completions"):
        return WireFormat.OPENAI_CHAT, None
    if path.endswith("/responses"):
        return WireFormat.OPENAI_RESPONSES, None
    if path.endswith("/messages"):
        return WireFormat.ANTHROPIC_MESSAGES, None
    m = _GEMINI.search(path)
    if m is not None:
        return WireFormat.GEMINI, m.group(1)
    m = _CONVERSE.search(path)
    if m is not None:
        # botocore percent-encodes model ids and ARNs (whose "/" becomes %2F) in the path.
        return WireFormat.BEDROCK_CONVERSE, unquote(m.group(1))
    return None


# -- the request --------------------------------------------------------------------------


class ProviderRequest:
    """One request of a call context to a provider, whichever SDK hook saw it: what was sent,
    how to resend it once, how to read the answer.

    The httpx transport here and the botocore event handlers
    (:mod:`promptcache.botocore_events`) both drive it, so rewriting, the hint fallback and
    the usage read-back are written once.
    """

    __slots__ = (
        "beta",
        "body_bytes",
        "caches",
        "ctx",
        "endpoint",
        "explicit",
        "fmt",
        "model",
        "sent",
        "stream",
        "write",
    )

    def __init__(
        self,
        ctx: CallContext,
        fmt: WireFormat,
        model: str | None,
        *,
        caches: GeminiCacheManager | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.ctx, self.fmt, self.model, self.caches = ctx, fmt, model, caches
        # Where the request goes (scheme, host, path): a refused hint is remembered for it.
        self.endpoint = endpoint
        self.sent: dict[str, Any] = {}
        self.stream = False
        self.explicit: GeminiPrepared | None = None
        self.write: CacheUsage | None = None
        #: The body's size as the SDK encoded it (the engine's size check need not measure it).
        self.body_bytes: int | None = None
        #: An ``anthropic-beta`` value the rewritten body needs (mid-conversation tool changes).
        self.beta: str | None = None

    def prepare(self, body: dict[str, Any], path_streams: bool) -> dict[str, Any]:
        """The body to send for ``body`` (``path_streams``: the endpoint itself streams)."""
        ctx, fmt = self.ctx, self.ctx.format or self.fmt
        self.fmt = fmt
        ctx.stream_events.clear()
        ctx.usage = None
        ctx.requests += 1
        ctx.format_used = fmt
        self.stream = path_streams or bool(body.get("stream"))
        if self.stream and fmt is WireFormat.OPENAI_CHAT:
            # Chat Completions streams report usage (cache reads included) only when asked to;
            # the extra last chunk has empty ``choices``, which every OpenAI client handles.
            opts = body.get("stream_options")
            opts = dict(opts) if isinstance(opts, dict) else {}
            if "include_usage" not in opts:
                body = {**body, "stream_options": {**opts, "include_usage": True}}
        model = self.model or body.get("model")
        ctx.model = model if isinstance(model, str) else None
        if not ctx.hints_off and self.endpoint is not None and REJECTIONS.rejects(self.endpoint, ctx.model):
            # This endpoint refused a hint for this model lately: send none rather than pay the
            # refused request again (providers.fallback.REJECTION_TTL_S).
            ctx.hints_off = True
            ctx.notes.append("caching hints off: this endpoint refused them for this model lately")
        try:
            prepared = ctx.cache.prepare_request(
                body, format=fmt, tenant=ctx.tenant, model=self.model, body_bytes=self.body_bytes
            )
        except (WireFormatError, TypeError, ValueError) as exc:
            # A cache problem must never fail the call (DESIGN: failure behaviour): send it as built.
            # The exception text names fields, not prompt text.
            ctx.notes.append(f"request sent unchanged: {type(exc).__name__}: {exc}"[:300])
            ctx.plan = ctx.body = None
            self.sent = strip_hints(body, fmt) if ctx.hints_off else body
            return self.sent
        except Exception as exc:  # a fault of promptcache itself: the call still goes out, as built
            # Its text may quote the request: the type only, in the note and the log.
            HINT_REJECTIONS[Degradation.REQUEST_UNCHANGED.value] += 1
            ctx.notes.append(f"request sent unchanged: promptcache fault ({type(exc).__name__})")
            log.warning(
                "promptcache could not prepare a %s request (%s); sent as built",
                fmt.value,
                type(exc).__name__,
            )
            ctx.plan = ctx.body = None
            self.sent = strip_hints(body, fmt) if ctx.hints_off else body
            return self.sent
        ctx.plan, ctx.body = prepared.plan, prepared.body
        if fmt is WireFormat.ANTHROPIC_MESSAGES and any(h.kind == "tool_change" for h in prepared.plan.hints):
            self.beta = TOOL_CHANGES_BETA
        self.sent = strip_hints(prepared.body, fmt) if ctx.hints_off else prepared.body
        if self.caches is not None and fmt is WireFormat.GEMINI and ctx.model is not None:
            self.sent = self._explicit(self.caches, self.sent, ctx.model)
        return self.sent

    def _explicit(self, caches: GeminiCacheManager, body: dict[str, Any], model: str) -> dict[str, Any]:
        ctx = self.ctx
        try:
            explicit = caches.prepare(body, tenant=ctx.tenant, model=model)
        except Exception as exc:
            # Creating the cached content failed (quota, auth, network): implicit caching only.
            ctx.notes.append(f"explicit cache skipped: {type(exc).__name__}"[:300])
            return body
        ctx.notes.extend(explicit.notes)
        self.explicit, self.write = explicit, explicit.create_usage
        return explicit.body

    def may_retry(self, status: int) -> bool:
        """Whether an answer with ``status`` could be a refusal this request resends after."""
        if self.fmt is WireFormat.GEMINI:
            return (
                status in (400, 403, 404) and self.explicit is not None and self.explicit.handle is not None
            )
        return may_be_rejection(status) and not self.ctx.hints_off

    def retry_body(self, status: int, text: str) -> dict[str, Any] | None:
        """The body to send once more when the provider refused a caching hint (or a Gemini
        cached content), else None."""
        if not self.may_retry(status):
            return None
        if self.fmt is WireFormat.GEMINI:
            return self._without_cached_content()
        ctx = self.ctx
        fields = [f for f in HINT_FIELDS if f in text]
        stripped = strip_hints(self.sent, self.fmt)
        if not fields or stripped == self.sent:
            return None
        ctx.hints_off = True
        HINT_REJECTIONS["hint_rejected"] += 1
        if self.endpoint is not None:
            REJECTIONS.remember(self.endpoint, ctx.model)
        ctx.notes.append(f"provider rejected caching hint ({', '.join(fields)}); resent without hints")
        # Field names and the model only: provider error messages may quote the prompt.
        log.warning(
            "provider rejected a caching hint (%s) for model %s; resending", ", ".join(fields), ctx.model
        )
        self.sent = stripped
        return stripped

    def _without_cached_content(self) -> dict[str, Any] | None:
        # A refused cached content is a cache fault: the call goes on without it, as promptcache
        # laid it out (``ctx.body``: the prefix back in systemInstruction and contents).
        explicit, caches, ctx = self.explicit, self.caches, self.ctx
        if explicit is None or explicit.handle is None or caches is None or ctx.body is None:
            return None
        handle = explicit.handle
        self.explicit = None
        caches.invalidate(tenant=handle.tenant, prefix_key=handle.prefix_key)
        ctx.notes.append(f"provider refused {handle.name}; handle dropped and resent without it")
        HINT_REJECTIONS["hint_rejected"] += 1
        self.sent = ctx.body
        return self.sent

    def read_json(self, data: bytes) -> None:
        """Read the usage of a JSON answer into the context."""
        try:
            plain = _loads(data)
            if not isinstance(plain, dict):
                raise TypeError("answer is not a JSON object")
        except (ValueError, TypeError) as exc:
            self.ctx.body = None  # answered (see CallContext.body)
            self.ctx.notes.append(f"provider usage unreadable: {type(exc).__name__}"[:300])
            return
        self.read_answer(plain)

    def read_answer(self, plain: dict[str, Any]) -> None:
        """Read the usage of an answer already parsed (a dict in the provider's wire shape)."""
        ctx = self.ctx
        ctx.body = None  # answered (see CallContext.body)
        try:
            ctx.usage = self._with_write(usage_from_response(self.fmt, plain, model=self._model()))
        except (ValueError, TypeError) as exc:
            ctx.notes.append(f"provider usage unreadable: {type(exc).__name__}"[:300])
        if ctx.plan is None:
            return
        # Cache diagnostics: the id chains the conversation's next request; the verdict, if any,
        # joins the plan's explanation.
        if self.fmt is WireFormat.ANTHROPIC_MESSAGES:
            ctx.cache.record_answer(ctx.plan, response_id_from_answer(plain), diagnosis_from_answer(plain))
        elif self.fmt is WireFormat.OPENAI_RESPONSES:
            verdict = oai.miss_diagnosis(oai.diagnosis_from_response(plain))
            ctx.cache.record_answer(ctx.plan, oai.response_id(plain), verdict)

    def finish_stream(self) -> None:
        """Read the usage of the stream events gathered in the context."""
        ctx = self.ctx
        try:
            ctx.usage = self._with_write(usage_from_stream(self.fmt, ctx.stream_events, model=self._model()))
        except (ValueError, TypeError) as exc:
            ctx.notes.append(f"stream usage unreadable: {exc}"[:300])
        if ctx.plan is None:
            return
        events = ctx.stream_events
        if self.fmt is WireFormat.ANTHROPIC_MESSAGES:
            ctx.cache.record_answer(ctx.plan, response_id_from_stream(events), diagnosis_from_stream(events))
        elif self.fmt is WireFormat.OPENAI_RESPONSES:
            verdict = oai.miss_diagnosis(oai.diagnosis_from_stream(events))
            ctx.cache.record_answer(ctx.plan, oai.response_id_from_stream(events), verdict)

    def _with_write(self, usage: CacheUsage) -> CacheUsage:
        write = self.write
        if write is None:
            return usage
        # Creating the cached content was billed in this call: its tokens were written once,
        # even when the provider then refused the content and the call was resent without it.
        return usage.model_copy(
            update={
                "input_tokens": usage.input_tokens + write.input_tokens,
                "cache_write_tokens": usage.cache_write_tokens + write.cache_write_tokens,
            }
        )

    def _model(self) -> str | None:
        # Converse answers carry no model id, and Gemini's name it only sometimes: the path does.
        return self.ctx.model if self.fmt in (WireFormat.BEDROCK_CONVERSE, WireFormat.GEMINI) else None


def _start(
    request: httpx.Request, content: bytes, caches: GeminiCacheManager | None
) -> tuple[ProviderRequest, dict[str, Any]] | None:
    """The call and the parsed body of ``request`` when the transport rewrites it, else None."""
    ctx = current_call.get()
    if ctx is None or request.method != "POST":
        return None
    found = endpoint_format(request.url.path)
    if found is None:
        return None
    try:
        body = _loads(content)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    endpoint = f"{request.url.scheme}://{request.url.netloc.decode()}{request.url.path}"
    call = ProviderRequest(ctx, found[0], found[1], caches=caches, endpoint=endpoint)
    call.body_bytes = len(content)
    return call, body


def _loads(data: bytes | str) -> Any:
    # orjson parses a 16k-token body in a fraction of the stdlib's time (on every call); the
    # stdlib takes what orjson refuses (integers beyond 64 bits), so nothing parses differently.
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def _dumps(body: dict[str, Any]) -> bytes:
    # Compact UTF-8, as the SDKs send; the stdlib for what orjson refuses (non-str keys, big ints).
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _encoded(sent: dict[str, Any], body: dict[str, Any], content: bytes) -> bytes:
    """The bytes of ``sent``, the rewrite of ``body`` (which the SDK encoded as ``content``).

    The usual rewrite of a request already laid out for caching adds members (a routing key)
    and leaves the others equal: ``content`` is then sent with those members appended, and the
    16k-token body is not encoded a second time. The members kept are the SDK's own bytes, as
    the request would have gone without promptcache. Anything else is encoded whole.
    """
    n = len(body)
    if n == 0 or len(sent) <= n or content[-1:] != b"}":
        return _dumps(sent)
    items = iter(sent.items())
    # Equal by value, key order included (an equal list or dict compares its shared items at
    # the cost of a pointer comparison each).
    # ``body`` first: zip stops on it without taking a member of ``sent`` past the last shared one.
    for (was_key, was), (key, value) in zip(body.items(), items, strict=False):
        if key != was_key or value != was:
            return _dumps(sent)
    added = _dumps(dict(items))  # the members after the body's own, in order
    return content[:-1] + b"," + added[1:]


def _rebuilt(request: httpx.Request, body: dict[str, Any] | bytes, beta: str | None = None) -> httpx.Request:
    content = body if isinstance(body, bytes) else _dumps(body)
    # ``Headers.copy`` and a ``ByteStream``: the same headers and stream that ``Headers(...)``
    # and ``content=`` give, without httpx normalizing every header again (~4x faster per call).
    headers = request.headers.copy()
    headers["content-length"] = str(len(content))
    if beta is not None:
        # Added to the caller's betas, never in place of them.
        have = [b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip()]
        if beta not in have:
            headers["anthropic-beta"] = ",".join([*have, beta])
    out = httpx.Request(
        request.method,
        request.url,
        headers=headers,
        stream=httpx.ByteStream(content),
        extensions=request.extensions,
    )
    out.read()  # as ``content=`` leaves it: the body readable as ``out.content``
    return out


def _is_sse(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).startswith("text/event-stream")


# -- the answer -----------------------------------------------------------------------------


class StreamReader(Protocol):
    """What reads a streamed answer's events off its raw bytes as they pass (:func:`tee_response`)."""

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of raw (still encoded) bytes."""

    def close(self) -> None:
        """The stream ended or was closed: read the usage of what was seen."""


class SSEReader:
    """Reads server-sent events off the raw bytes as they pass, into the call's stream events."""

    def __init__(self, call: ProviderRequest, encoding: str) -> None:
        self._call = call
        self._buf = ""
        self._utf8 = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
        if encoding == "deflate":
            self._utf8 = zlib.decompressobj()
        self._broken = encoding not in ("", "identity", "gzip", "deflate")
        self._done = False

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of raw bytes; each complete event goes to the call's stream events."""
        mark_first_chunk(self._call.ctx)
        if self._broken:
            return
        try:
            data = self._utf8.decompress(chunk) if self._utf8 is not None else chunk
        except zlib.error:
            self._broken = True
            return
        self._buf += data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        while "\n\n" in self._buf:
            raw, self._buf = self._buf.split("\n\n", 1)
            self._event(raw)

    def _event(self, raw: str) -> None:
        data = "\n".join(line[5:].lstrip(" ") for line in raw.split("\n") if line.startswith("data:"))
        if not data or data == "[DONE]":
            return
        try:
            event = _loads(data)
        except ValueError:
            return
        if isinstance(event, dict):
            self._call.ctx.stream_events.append(event)

    def close(self) -> None:
        """Read the last event, if unterminated, then the usage of the whole stream."""
        if self._done:
            return
        self._done = True
        if self._buf.strip():
            self._event(self._buf)
        self._call.finish_stream()


class _TeeStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, reader: StreamReader) -> None:
        self._inner, self._reader = inner, reader

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._reader.feed(chunk)
            yield chunk
        self._reader.close()

    def close(self) -> None:
        # SDKs stop reading at their end marker (``[DONE]``) and close: the usage is final then.
        self._reader.close()
        self._inner.close()


class _AsyncTeeStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, reader: StreamReader) -> None:
        self._inner, self._reader = inner, reader

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._reader.feed(chunk)
            yield chunk
        self._reader.close()

    async def aclose(self) -> None:
        self._reader.close()
        await self._inner.aclose()


def _buffered(response: httpx.Response, raw: bytes) -> httpx.Response:
    # The raw (still encoded) bytes with the original headers, decoded once here: the SDK then
    # reads the same content it would have read from the wire.
    out = httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=httpx.ByteStream(raw),
        extensions=response.extensions,
    )
    out.read()
    return out


def tee_response(
    response: httpx.Response,
    reader: StreamReader,
    *,
    sync: bool,
    request: httpx.Request | None = None,
) -> httpx.Response:
    """A response standing in for ``response`` (not yet read) whose raw bytes pass through
    ``reader`` as whoever holds it consumes them: nothing is buffered. ``request``: the request
    it answers (an httpx client's response has one; a transport's does not yet)."""
    stream: Any = response.stream
    tee: Any = _TeeStream(stream, reader) if sync else _AsyncTeeStream(stream, reader)
    # The raw bytes with the original headers: the new response decodes them as the old one would.
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=tee,
        extensions=response.extensions,
        request=request,
    )


def _sse(response: httpx.Response, call: ProviderRequest, *, sync: bool) -> httpx.Response:
    reader = SSEReader(call, response.headers.get("content-encoding", "").strip().lower())
    return tee_response(response, reader, sync=sync)


# -- the transports -------------------------------------------------------------------------


class PromptCacheTransport(httpx.BaseTransport):
    """An ``httpx`` transport that applies promptcache to model calls, then hands them to ``inner``.

    See the module docstring for what is rewritten and read back. ``inner`` defaults to a plain
    ``httpx.HTTPTransport()``; ``gemini_caches`` moves Gemini prefixes into cached contents.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        close_inner: bool | None = None,
        gemini_caches: GeminiCacheManager | None = None,
    ) -> None:
        self.inner = inner if inner is not None else httpx.HTTPTransport()
        # A transport borrowed from the caller's client is the caller's to close.
        self.close_inner = inner is None if close_inner is None else close_inner
        self.gemini_caches = gemini_caches

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Rewrite, forward, read the usage back (see the module docstring)."""
        if current_call.get() is None:
            return self.inner.handle_request(request)
        content = request.read()
        started = _start(request, content, self.gemini_caches)
        if started is None:
            return self.inner.handle_request(request)
        call, body = started
        sent = call.prepare(body, _path_streams(request))
        response = self.inner.handle_request(_rebuilt(request, _encoded(sent, body, content), call.beta))
        if call.may_retry(response.status_code):
            refused = _buffered(response, b"".join(_iter(response)))
            response.close()
            retry = call.retry_body(refused.status_code, _text(refused))
            if retry is None:
                call.ctx.body = None
                return refused
            response = self.inner.handle_request(_rebuilt(request, retry, call.beta))
        if response.status_code >= 300:
            call.ctx.body = None
            return response
        if _is_sse(response):
            call.ctx.body = None
            return _sse(response, call, sync=True)
        # Read here (decoded, and the connection released), so the usage is known when the SDK
        # returns; the SDK's own read then finds the content already there.
        call.read_json(response.read())
        return response

    def close(self) -> None:
        """Close the inner transport if this transport made it."""
        if self.close_inner:
            self.inner.close()


class AsyncPromptCacheTransport(httpx.AsyncBaseTransport):
    """The asyncio twin of :class:`PromptCacheTransport`."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        close_inner: bool | None = None,
        gemini_caches: GeminiCacheManager | None = None,
    ) -> None:
        self.inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self.close_inner = inner is None if close_inner is None else close_inner
        self.gemini_caches = gemini_caches

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Rewrite, forward, read the usage back (see the module docstring)."""
        if current_call.get() is None:
            return await self.inner.handle_async_request(request)
        content = await request.aread()
        started = _start(request, content, self.gemini_caches)
        if started is None:
            return await self.inner.handle_async_request(request)
        call, body = started
        # Creating a Gemini cached content blocks the event loop (the manager is synchronous);
        # it happens once per prefix and TTL, not per request.
        sent = call.prepare(body, _path_streams(request))
        rebuilt = _rebuilt(request, _encoded(sent, body, content), call.beta)
        response = await self.inner.handle_async_request(rebuilt)
        if call.may_retry(response.status_code):
            refused = _buffered(response, b"".join([c async for c in _aiter(response)]))
            await response.aclose()
            retry = call.retry_body(refused.status_code, _text(refused))
            if retry is None:
                call.ctx.body = None
                return refused
            response = await self.inner.handle_async_request(_rebuilt(request, retry, call.beta))
        if response.status_code >= 300:
            call.ctx.body = None
            return response
        if _is_sse(response):
            call.ctx.body = None
            return _sse(response, call, sync=False)
        call.read_json(await response.aread())
        return response

    async def aclose(self) -> None:
        """Close the inner transport if this transport made it."""
        if self.close_inner:
            await self.inner.aclose()


def _iter(response: httpx.Response) -> Iterator[bytes]:
    stream = response.stream
    assert isinstance(stream, httpx.SyncByteStream)
    return iter(stream)


def _aiter(response: httpx.Response) -> AsyncIterator[bytes]:
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    return aiter(stream)


def _path_streams(request: httpx.Request) -> bool:
    path = request.url.path
    return path.endswith(":streamGenerateContent") or path.endswith("/converse-stream")


def _text(response: httpx.Response) -> str:
    try:
        return response.text
    except Exception:  # an undecodable error body names no hint field
        return ""


def wrap_http_client(
    client: httpx.Client | httpx.AsyncClient | None,
    *,
    asynchronous: bool = False,
    gemini_caches: GeminiCacheManager | None = None,
) -> Any:
    """A new ``httpx`` client like ``client`` (None: a default one) whose transports apply
    promptcache around ``client``'s own.

    ``client`` itself is left as it is: the new client borrows its transports (and so its
    connection pool, proxies and TLS settings) and copies its base URL, headers, cookies, auth,
    query parameters, timeout, redirect policy and event hooks. Closing the new client does not
    close the borrowed transports: they stay the caller's. ``gemini_caches``: see the module
    docstring.
    """
    if client is None:
        if asynchronous:
            return httpx.AsyncClient(transport=AsyncPromptCacheTransport(gemini_caches=gemini_caches))
        return httpx.Client(transport=PromptCacheTransport(gemini_caches=gemini_caches))
    common: dict[str, Any] = {
        "base_url": client.base_url,
        "headers": client.headers,
        "cookies": client.cookies,
        "auth": client.auth,
        "params": client.params,
        "timeout": client.timeout,
        "follow_redirects": client.follow_redirects,
        "max_redirects": client.max_redirects,
        "event_hooks": client.event_hooks,
        # The caller's proxies are in its mounts, copied below: the environment is not read twice.
        "trust_env": False,
    }
    # httpx has no public accessor for a client's transports: ``_transport`` serves every URL
    # without a more specific mount (``_mounts``: proxies, per-host transports).
    inner, mounts = client._transport, client._mounts
    # A plain httpx client, never the SDK's own subclass: those close their transport when
    # garbage-collected, and this transport is the caller's.
    if isinstance(client, httpx.AsyncClient):
        amounts = {
            p.pattern: AsyncPromptCacheTransport(t, gemini_caches=gemini_caches)
            for p, t in mounts.items()
            if isinstance(t, httpx.AsyncBaseTransport)
        }
        assert isinstance(inner, httpx.AsyncBaseTransport)
        atransport = AsyncPromptCacheTransport(inner, gemini_caches=gemini_caches)
        return httpx.AsyncClient(transport=atransport, mounts=amounts, **common)
    smounts = {
        p.pattern: PromptCacheTransport(t, gemini_caches=gemini_caches)
        for p, t in mounts.items()
        if isinstance(t, httpx.BaseTransport)
    }
    assert isinstance(inner, httpx.BaseTransport)
    transport = PromptCacheTransport(inner, gemini_caches=gemini_caches)
    return httpx.Client(transport=transport, mounts=smounts, **common)


# -- google-genai ---------------------------------------------------------------------------

# Each client made by wrap_genai_client keeps the caller's alive: it borrows the caller's httpx
# transports, which the caller's client (the SDK's own httpx subclass) closes when collected.
_borrowed: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def is_genai_client(client: Any) -> bool:
    """Whether ``client`` is a ``google.genai.Client``."""
    return type(client).__module__.startswith("google.genai") and hasattr(client, "_api_client")


def wrap_genai_client(client: Any, *, gemini_caches: GeminiCacheManager | None = None) -> Any | None:
    """A new ``google.genai.Client`` configured like ``client`` whose requests go through this
    transport (``models``, ``chats`` and their ``aio`` twins, streams included); None when
    ``client`` does not send through ``httpx``.

    Made through the SDK's own ``HttpOptions(httpx_client=..., httpx_async_client=...)`` over
    :func:`wrap_http_client` copies of ``client``'s httpx clients, with the same API key or
    credentials, project, location and HTTP options; ``client`` is not modified. google-genai
    never closes an httpx client it was given, so neither client closes the other's transport.

    Not on this seam (None): the ``httpx2`` backend (``GOOGLE_GENAI_HTTP_CLIENT=httpx2``) and
    Vertex AI over mTLS, where the SDK sends through google-auth sessions. A client whose
    async side has no httpx client sends its async calls unchanged.
    """
    from google.genai import Client

    api = client._api_client
    sync_http, async_http = api._httpx_client, api._async_httpx_client
    if not isinstance(sync_http, httpx.Client) or api._use_google_auth_sync():
        log.debug("google-genai client does not send through httpx; its calls go out unchanged")
        return None
    update: dict[str, Any] = {"httpx_client": wrap_http_client(sync_http, gemini_caches=gemini_caches)}
    if isinstance(async_http, httpx.AsyncClient):
        # Given an httpx async client, the SDK no longer picks aiohttp for async calls.
        update["httpx_async_client"] = wrap_http_client(
            async_http, asynchronous=True, gemini_caches=gemini_caches
        )
    wrapped = Client(
        vertexai=api.vertexai,
        api_key=api.api_key,
        credentials=api._credentials,
        project=api.project,
        location=api.location,
        http_options=api._http_options.model_copy(update=update),
    )
    _borrowed[wrapped] = client
    return wrapped
