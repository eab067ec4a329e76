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
   ``models/{m}:generateContent`` → ``gemini``, ``/model/{id}/converse`` → ``bedrock-converse``);
2. rewrites the JSON body through ``PromptCache.prepare_request`` for the context's tenant (a
   cache problem never fails the call: the request then goes out as built, and the reason is
   noted);
3. resends once without caching hints when the provider answers 400 naming one
   (:mod:`promptcache.providers.fallback`; counted in ``HINT_REJECTIONS``);
4. reads the provider's usage back into the context: from the JSON answer, or from a
   server-sent-event stream as it passes through to the SDK, event by event, never buffered.

Outside a call context, and for any other request (model listings, token counting, uploads),
the transport only forwards.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson

from promptcache.formats import WireFormat
from promptcache.llm_bridge import HINT_REJECTIONS, CallContext, current_call, mark_first_chunk
from promptcache.providers.fallback import HINT_FIELDS, strip_hints
from promptcache.providers.usage import usage_from_response, usage_from_stream
from promptcache.wire import WireFormatError

__all__ = [
    "AsyncPromptCacheTransport",
    "PromptCacheTransport",
    "endpoint_format",
    "wrap_http_client",
]

log = logging.getLogger("promptcache.transport")

_GEMINI = re.compile(r"/models/([^/:?]+):(generateContent|streamGenerateContent)$")
_CONVERSE = re.compile(r"/model/([^/]+)/converse$")


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
        # botocore percent-encodes model ids and ARNs in the path.
        return WireFormat.BEDROCK_CONVERSE, httpx.URL(path).path.rsplit("/", 2)[-2]
    return None


# -- the request --------------------------------------------------------------------------


class _Call:
    """One request of a call context through the transport: what was sent, how to read the answer."""

    __slots__ = ("ctx", "fmt", "model", "sent", "stream")

    def __init__(self, ctx: CallContext, fmt: WireFormat, model: str | None) -> None:
        self.ctx, self.fmt, self.model = ctx, fmt, model
        self.sent: dict[str, Any] = {}
        self.stream = False

    def prepare(self, body: dict[str, Any], path_streams: bool) -> dict[str, Any]:
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
        try:
            prepared = ctx.cache.prepare_request(body, format=fmt, tenant=ctx.tenant, model=self.model)
        except (WireFormatError, TypeError, ValueError) as exc:
            # A cache problem must never fail the call (DESIGN: failure behaviour): send it as built.
            # The exception text names fields, not prompt text.
            ctx.notes.append(f"request sent unchanged: {type(exc).__name__}: {exc}"[:300])
            ctx.plan = ctx.body = None
            self.sent = strip_hints(body, fmt) if ctx.hints_off else body
            return self.sent
        ctx.plan, ctx.body = prepared.plan, prepared.body
        self.sent = strip_hints(prepared.body, fmt) if ctx.hints_off else prepared.body
        return self.sent

    def retry_body(self, status: int, text: str) -> dict[str, Any] | None:
        """The body to send once more when the provider refused a caching hint, else None."""
        ctx = self.ctx
        if status != 400 or ctx.hints_off or self.fmt is WireFormat.GEMINI:
            return None
        fields = [f for f in HINT_FIELDS if f in text]
        stripped = strip_hints(self.sent, self.fmt)
        if not fields or stripped == self.sent:
            return None
        ctx.hints_off = True
        HINT_REJECTIONS["hint_rejected"] += 1
        ctx.notes.append(f"provider rejected caching hint ({', '.join(fields)}); resent without hints")
        # Field names and the model only: provider error messages may quote the prompt.
        log.warning(
            "provider rejected a caching hint (%s) for model %s; resending", ", ".join(fields), ctx.model
        )
        self.sent = stripped
        return stripped

    def read_json(self, data: bytes) -> None:
        ctx = self.ctx
        ctx.body = None  # answered (see CallContext.body)
        try:
            plain = _loads(data)
            if not isinstance(plain, dict):
                raise TypeError("answer is not a JSON object")
            ctx.usage = usage_from_response(self.fmt, plain, model=self._model())
        except (ValueError, TypeError) as exc:
            ctx.notes.append(f"provider usage unreadable: {type(exc).__name__}"[:300])

    def finish_stream(self) -> None:
        ctx = self.ctx
        try:
            ctx.usage = usage_from_stream(self.fmt, ctx.stream_events, model=self._model())
        except (ValueError, TypeError) as exc:
            ctx.notes.append(f"stream usage unreadable: {exc}"[:300])

    def _model(self) -> str | None:
        # Converse answers carry no model id, and Gemini's name it only sometimes: the path does.
        return self.ctx.model if self.fmt in (WireFormat.BEDROCK_CONVERSE, WireFormat.GEMINI) else None


def _start(request: httpx.Request, content: bytes) -> tuple[_Call, dict[str, Any]] | None:
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
    return _Call(ctx, found[0], found[1]), body


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


def _rebuilt(request: httpx.Request, body: dict[str, Any]) -> httpx.Request:
    content = _dumps(body)
    headers = httpx.Headers(request.headers)
    headers["content-length"] = str(len(content))
    return httpx.Request(
        request.method, request.url, headers=headers, content=content, extensions=request.extensions
    )


def _is_sse(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).startswith("text/event-stream")


# -- the answer -----------------------------------------------------------------------------


class _SSEReader:
    """Reads server-sent events off the raw bytes as they pass, into the call's stream events."""

    def __init__(self, call: _Call, encoding: str) -> None:
        self._call = call
        self._buf = ""
        self._utf8 = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
        if encoding == "deflate":
            self._utf8 = zlib.decompressobj()
        self._broken = encoding not in ("", "identity", "gzip", "deflate")
        self._done = False

    def feed(self, chunk: bytes) -> None:
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
        if self._done:
            return
        self._done = True
        if self._buf.strip():
            self._event(self._buf)
        self._call.finish_stream()


class _TeeStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, reader: _SSEReader) -> None:
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
    def __init__(self, inner: httpx.AsyncByteStream, reader: _SSEReader) -> None:
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


def _sse(response: httpx.Response, call: _Call, *, sync: bool) -> httpx.Response:
    reader = _SSEReader(call, response.headers.get("content-encoding", "").strip().lower())
    stream: Any = response.stream
    tee: Any = _TeeStream(stream, reader) if sync else _AsyncTeeStream(stream, reader)
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=tee,
        extensions=response.extensions,
    )


# -- the transports -------------------------------------------------------------------------


class PromptCacheTransport(httpx.BaseTransport):
    """An ``httpx`` transport that applies promptcache to model calls, then hands them to ``inner``.

    See the module docstring for what is rewritten and read back. ``inner`` defaults to a plain
    ``httpx.HTTPTransport()``.
    """

    def __init__(self, inner: httpx.BaseTransport | None = None, *, close_inner: bool | None = None) -> None:
        self.inner = inner if inner is not None else httpx.HTTPTransport()
        # A transport borrowed from the caller's client is the caller's to close.
        self.close_inner = inner is None if close_inner is None else close_inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Rewrite, forward, read the usage back (see the module docstring)."""
        if current_call.get() is None:
            return self.inner.handle_request(request)
        started = _start(request, request.read())
        if started is None:
            return self.inner.handle_request(request)
        call, body = started
        response = self.inner.handle_request(_rebuilt(request, call.prepare(body, _path_streams(request))))
        if response.status_code == 400:
            refused = _buffered(response, b"".join(_iter(response)))
            response.close()
            retry = call.retry_body(400, _text(refused))
            if retry is None:
                call.ctx.body = None
                return refused
            response = self.inner.handle_request(_rebuilt(request, retry))
        return self._answer(response, call)

    def _answer(self, response: httpx.Response, call: _Call) -> httpx.Response:
        if response.status_code >= 300:
            call.ctx.body = None
            return response
        if _is_sse(response):
            call.ctx.body = None
            return _sse(response, call, sync=True)
        raw = b"".join(_iter(response))
        response.close()
        out = _buffered(response, raw)
        call.read_json(out.content)
        return out

    def close(self) -> None:
        """Close the inner transport if this transport made it."""
        if self.close_inner:
            self.inner.close()


class AsyncPromptCacheTransport(httpx.AsyncBaseTransport):
    """The asyncio twin of :class:`PromptCacheTransport`."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport | None = None, *, close_inner: bool | None = None
    ) -> None:
        self.inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self.close_inner = inner is None if close_inner is None else close_inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Rewrite, forward, read the usage back (see the module docstring)."""
        if current_call.get() is None:
            return await self.inner.handle_async_request(request)
        started = _start(request, await request.aread())
        if started is None:
            return await self.inner.handle_async_request(request)
        call, body = started
        sent = _rebuilt(request, call.prepare(body, _path_streams(request)))
        response = await self.inner.handle_async_request(sent)
        if response.status_code == 400:
            refused = _buffered(response, b"".join([c async for c in _aiter(response)]))
            await response.aclose()
            retry = call.retry_body(400, _text(refused))
            if retry is None:
                call.ctx.body = None
                return refused
            response = await self.inner.handle_async_request(_rebuilt(request, retry))
        if response.status_code >= 300:
            call.ctx.body = None
            return response
        if _is_sse(response):
            call.ctx.body = None
            return _sse(response, call, sync=False)
        raw = b"".join([chunk async for chunk in _aiter(response)])
        await response.aclose()
        out = _buffered(response, raw)
        call.read_json(out.content)
        return out

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


def wrap_http_client(client: httpx.Client | httpx.AsyncClient | None, *, asynchronous: bool = False) -> Any:
    """A new ``httpx`` client like ``client`` (None: a default one) whose transports apply
    promptcache around ``client``'s own.

    ``client`` itself is left as it is: the new client borrows its transports (and so its
    connection pool, proxies and TLS settings) and copies its base URL, headers, cookies, auth,
    query parameters, timeout, redirect policy and event hooks. Closing the new client does not
    close the borrowed transports: they stay the caller's.
    """
    if client is None:
        if asynchronous:
            return httpx.AsyncClient(transport=AsyncPromptCacheTransport())
        return httpx.Client(transport=PromptCacheTransport())
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
            p.pattern: AsyncPromptCacheTransport(t)
            for p, t in mounts.items()
            if isinstance(t, httpx.AsyncBaseTransport)
        }
        assert isinstance(inner, httpx.AsyncBaseTransport)
        return httpx.AsyncClient(transport=AsyncPromptCacheTransport(inner), mounts=amounts, **common)
    smounts = {
        p.pattern: PromptCacheTransport(t) for p, t in mounts.items() if isinstance(t, httpx.BaseTransport)
    }
    assert isinstance(inner, httpx.BaseTransport)
    return httpx.Client(transport=PromptCacheTransport(inner), mounts=smounts, **common)
