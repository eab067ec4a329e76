"""The seam for anthropic's cloud-platform clients: the SDK's own client middleware.

``AnthropicBedrock`` (and ``AnthropicBedrockMantle``) signs each request (AWS SigV4, over the
body) in its ``_prepare_request``, after the body is serialized and before ``httpx`` sends it,
so the httpx transport (:mod:`promptcache.transport`) would rewrite a body its signature no
longer matches.
``AnthropicVertex`` moves the model into the URL (``.../models/{model}:rawPredict``) at the
same point, so the transport no longer sees a Messages request there. The anthropic SDK's client
middleware (``anthropic.Middleware``, from anthropic 0.108) runs earlier: once per HTTP attempt,
inside the SDK's retry loop, on the request as ``messages.create`` built it (``/v1/messages``,
the model in the body), before the platform client prepares, signs and sends it; it gets the
``APIResponse`` back, 4xx included, with a streamed body not read yet.

While a :class:`~promptcache.llm_bridge.CallContext` is current, :class:`PromptCacheMiddleware`
drives the same :class:`~promptcache.transport.ProviderRequest` as the transport:

1. rewrites the Messages body through ``PromptCache.prepare_request`` (the platform client then
   signs what is sent);
2. sends it once more without caching hints when the provider answers 400 naming one;
3. reads the usage back: from the JSON answer, or from the stream as the caller reads it, event
   by event (Bedrock's AWS event stream, Vertex's server-sent events), never buffered.

:func:`hook_anthropic_client` returns a new client with the middleware appended to the caller's
own (the caller's client is not modified). Other anthropic clients send through the transport.
"""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import anthropic.lib.bedrock as anthropic_bedrock
import httpx

from promptcache.formats import WireFormat
from promptcache.llm_bridge import current_call, mark_first_chunk
from promptcache.transport import (
    ProviderRequest,
    SSEReader,
    StreamReader,
    _loads,
    endpoint_format,
    tee_response,
)

__all__ = ["PromptCacheMiddleware", "hook_anthropic_client", "is_platform_client"]

_BEDROCK = (anthropic.AnthropicBedrock, anthropic.AsyncAnthropicBedrock)
_PLATFORM_CLIENTS: tuple[type[Any], ...] = (
    *_BEDROCK,
    anthropic.AnthropicVertex,
    anthropic.AsyncAnthropicVertex,
    # Bedrock's Messages endpoint, SigV4-signed like AnthropicBedrock.
    anthropic_bedrock.AnthropicBedrockMantle,
    anthropic_bedrock.AsyncAnthropicBedrockMantle,
)


def is_platform_client(client: Any) -> bool:
    """Whether ``client`` is one of anthropic's Bedrock or Vertex clients (this module's seam)."""
    return isinstance(client, _PLATFORM_CLIENTS)


def hook_anthropic_client(client: Any) -> Any:
    """A new client like ``client`` (an anthropic Bedrock or Vertex client) with
    :class:`PromptCacheMiddleware` after its own middleware; ``client`` when it already has one.

    Made through the SDK's ``copy``: the new client keeps ``client``'s httpx client (its
    connection pool, proxies and TLS settings), which the platform clients' ``with_middleware``
    would replace with a default one.
    """
    middleware = tuple(client.middleware)
    if any(isinstance(m, PromptCacheMiddleware) for m in middleware):
        return client
    extra: dict[str, Any] = {}
    if isinstance(client, _BEDROCK) and client.aws_profile is not None:
        # AnthropicBedrock.copy() does not carry the profile over: without it the copy would
        # sign with the default credentials.
        extra["_extra_kwargs"] = {"aws_profile": client.aws_profile}
    # httpx has no public accessor on the SDK client; ``_client`` is the one it sends through.
    return client.copy(http_client=client._client, middleware=[*middleware, PromptCacheMiddleware()], **extra)


class PromptCacheMiddleware(anthropic.Middleware):
    """anthropic client middleware that applies promptcache to Messages calls inside a call
    context (see the module docstring); every other request passes through untouched."""

    def handle(
        self, request: anthropic.APIRequest, call_next: anthropic.CallNext
    ) -> anthropic.APIResponse[Any]:
        """Rewrite, send, resend once without hints if refused, read the usage back."""
        started = _start(request)
        if started is None:
            return call_next(request)
        call, body = started
        response = call_next(request.copy(body=call.prepare(body, request.stream)))
        if call.may_retry(response.status_code):
            raw = response.http_response
            retry = call.retry_body(raw.status_code, _text(raw.read()))
            if retry is not None:
                raw.close()
                response = call_next(request.copy(body=retry))
        raw = response.http_response
        if not raw.is_success:
            call.ctx.body = None  # answered (see CallContext.body)
            return response
        if request.stream:
            call.ctx.body = None
            teed = tee_response(raw, _reader(call, raw), sync=True, request=raw.request)
            # The SDK's own middleware (anthropic.lib.middleware) hands back a stream it taps the
            # same way: a new APIResponse over a new httpx response, the rest taken from the old.
            return anthropic.APIResponse(
                raw=teed,
                cast_to=response._cast_to,
                client=response._client,
                stream=True,
                stream_cls=response._stream_cls,
                options=response._options,
                retries_taken=response.retries_taken,
            )
        call.read_json(raw.read())
        return response

    async def handle_async(
        self, request: anthropic.APIRequest, call_next: anthropic.AsyncCallNext
    ) -> anthropic.AsyncAPIResponse[Any]:
        """The asyncio form of :meth:`handle`."""
        started = _start(request)
        if started is None:
            return await call_next(request)
        call, body = started
        response = await call_next(request.copy(body=call.prepare(body, request.stream)))
        if call.may_retry(response.status_code):
            raw = response.http_response
            retry = call.retry_body(raw.status_code, _text(await raw.aread()))
            if retry is not None:
                await raw.aclose()
                response = await call_next(request.copy(body=retry))
        raw = response.http_response
        if not raw.is_success:
            call.ctx.body = None
            return response
        if request.stream:
            call.ctx.body = None
            teed = tee_response(raw, _reader(call, raw), sync=False, request=raw.request)
            return anthropic.AsyncAPIResponse(
                raw=teed,
                cast_to=response._cast_to,
                client=response._client,
                stream=True,
                stream_cls=response._stream_cls,
                options=response._options,
                retries_taken=response.retries_taken,
            )
        call.read_json(await raw.aread())
        return response


def _start(request: anthropic.APIRequest) -> tuple[ProviderRequest, dict[str, Any]] | None:
    """The call and the body of ``request`` when it is a Messages call inside a call context."""
    ctx = current_call.get()
    if ctx is None or request.method.lower() != "post":
        return None
    found = endpoint_format(httpx.URL(request.url).path)
    body = request.json
    if found is None or found[0] is not WireFormat.ANTHROPIC_MESSAGES or not isinstance(body, dict):
        return None
    return ProviderRequest(ctx, WireFormat.ANTHROPIC_MESSAGES, None), dict(body)


def _text(data: bytes) -> str:
    # An undecodable error body names no hint field.
    return data.decode("utf-8", errors="replace")


def _reader(call: ProviderRequest, response: httpx.Response) -> StreamReader:
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if str(response.headers.get("content-type", "")).startswith("text/event-stream"):
        return SSEReader(call, encoding)
    return _EventStreamReader(call, encoding)


class _EventStreamReader:
    """Reads Bedrock's ``invoke-with-response-stream`` answer (the AWS event stream framing,
    each ``chunk`` event carrying one Messages stream event as base64 JSON) into the call's
    stream events as the bytes pass."""

    def __init__(self, call: ProviderRequest, encoding: str) -> None:
        # botocore, not needed before: an AnthropicBedrock client decodes this framing with it too.
        from botocore.eventstream import EventStreamBuffer

        self._call = call
        self._buffer = EventStreamBuffer()
        self._broken = encoding not in ("", "identity")
        self._done = False

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of raw bytes; each complete ``chunk`` event goes to the call."""
        mark_first_chunk(self._call.ctx)
        if self._broken:
            return
        try:
            self._buffer.add_data(chunk)
            for message in self._buffer:
                if message.headers.get(":event-type") == "chunk":
                    self._chunk(message.payload)
        except Exception as exc:  # botocore's ParserError family, bad base64 or JSON
            # A framing the reader cannot follow loses the usage, never the stream.
            self._broken = True
            self._call.ctx.notes.append(f"stream usage unreadable: {type(exc).__name__}"[:300])

    def _chunk(self, payload: bytes) -> None:
        outer = _loads(payload)
        data = outer.get("bytes") if isinstance(outer, dict) else None
        if not isinstance(data, str):
            return
        event = _loads(base64.b64decode(data))
        if isinstance(event, dict):
            self._call.ctx.stream_events.append(event)

    def close(self) -> None:
        """Read the usage of the events seen."""
        if self._done:
            return
        self._done = True
        self._call.finish_stream()
