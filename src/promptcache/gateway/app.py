"""The gateway's ASGI app: per request, the tenant, the call context, the forward, the relay.

Per request to ``/v1/chat/completions``, ``/v1/responses`` or ``/v1/messages`` (POST):

1. the tenant (:mod:`promptcache.gateway.tenant`: the ``X-PromptCache-Tenant`` header, else a
   keyed hash of the API key); that header is not forwarded, every other end-to-end header is
   (the API key included, untouched);
2. a :class:`~promptcache.llm_bridge.CallContext` for that tenant, current while the request
   (an ``httpx.Request``) is sent through :class:`~promptcache.transport.AsyncPromptCacheTransport`
   over ``httpx-aiohttp``'s transport (aiohttp's pool on the wire, httpx's API above it): the
   same seam as in-process use rewrites the body (``PromptCache.prepare_request``), resends
   once without hints when the provider refuses one (and remembers it), and reads the usage
   back;
3. the answer, status and headers as the upstream sent them (hop-by-hop headers aside): a
   server-sent-event stream or any body the seam did not read is relayed chunk by chunk as it
   arrives, never buffered; a JSON answer the seam read for its usage goes out as read;
4. once the answer is sent, the usage into the cache's figures
   (:func:`~promptcache.llm_bridge.record_call`: ``cache.stats()`` and, through the store,
   ``promptcache stats``) and into ``/metrics``.

The request path does each thing once (issue 24's load target is a p99 of 2 ms added at 200
requests/s): the body is parsed and re-serialized once, by the seam; the request goes straight
to the transport (no client-level cookie jar, auth, redirect or URL merging, which a proxy
does not want anyway); the upstream URL of each served route is parsed once; the Prometheus
children are kept; the figures are recorded after the answer went out.

Any other ``/v1/...`` request is forwarded untouched: to the Anthropic upstream when it carries
Anthropic's headers (``anthropic-version`` or ``x-api-key``), else to the OpenAI one (model
listings, token counting, embeddings). Upstream failures the gateway answers itself (a timeout:
504, no connection: 502) are shaped as the provider's own errors so SDKs raise their usual
exception; they are counted in ``promptcache_gateway_upstream_errors_total``.

Nothing the gateway logs holds a header value, a query string, a tenant or a body: a line per
request gives the method, path, status and time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
from httpx_aiohttp import AiohttpTransport
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from promptcache.engine import PromptCache
from promptcache.gateway.collector import settle_server_heap
from promptcache.gateway.config import GatewayConfig
from promptcache.gateway.metrics import GatewayMetrics
from promptcache.gateway.tenant import TENANT_HEADER, TenantError, resolve_request_tenant
from promptcache.llm_bridge import CallContext, record_call, use_call
from promptcache.transport import AsyncPromptCacheTransport

__all__ = ["MODEL_ROUTES", "Gateway", "GatewayApp", "create_app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = logging.getLogger("promptcache.gateway")

#: The rewritten endpoints: path -> (route label, provider).
MODEL_ROUTES: dict[str, tuple[str, str]] = {
    "/v1/chat/completions": ("chat_completions", "openai"),
    "/v1/responses": ("responses", "openai"),
    "/v1/messages": ("messages", "anthropic"),
}

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded. Content-length
# is recomputed by whoever sends the body; host comes from the upstream URL.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
_NOT_FORWARDED = _HOP_BY_HOP | {b"host", b"content-length", TENANT_HEADER.encode()}
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_ALLOW = ", ".join(sorted(_METHODS))
# The request headers the gateway itself reads (the tenant, the API key, which provider).
_READ = frozenset({b"authorization", b"x-api-key", b"api-key", TENANT_HEADER.encode(), b"anthropic-version"})


def _read_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers of :data:`_READ` by lower-case name (the first of repeated ones), decoded."""
    out: dict[str, str] = {}
    for k, v in raw:
        if k in _READ:
            out.setdefault(k.decode("latin-1"), v.decode("latin-1"))
    return out


def _request_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    named = _connection_tokens(raw)
    out = [(k, v) for k, v in raw if k not in _NOT_FORWARDED and k not in named]
    if not any(k == b"accept-encoding" for k, _ in out):
        # httpx would ask for gzip on its own, and a relayed body stays as the upstream encoded
        # it: a client that asked for no encoding must get none.
        out.append((b"accept-encoding", b"identity"))
    return out


def _response_headers(response: httpx.Response, *, decoded: bool) -> list[tuple[bytes, bytes]]:
    raw = [(k.lower(), v) for k, v in response.headers.raw]
    named = _connection_tokens(raw)
    drop = _HOP_BY_HOP | named
    if decoded:  # the body goes out as httpx decoded it: its encoding and length are not the wire's
        drop = drop | {b"content-encoding", b"content-length"}
    return [(k, v) for k, v in raw if k not in drop]


def _connection_tokens(raw: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    # Headers named in Connection are hop-by-hop too (RFC 9110 section 7.6.1).
    return frozenset(
        t.strip().lower() for k, v in raw if k.lower() == b"connection" for t in v.split(b",") if t.strip()
    )


class _Finishing:
    """A response that runs ``_finish`` once it is over: sent, or not sent because the client left
    (a ``try/finally``, not Starlette's ``background=``, which does not run then)."""

    _finish: Callable[[], Awaitable[None]]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Send the answer, then finish (once)."""
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            await self._finish()


class _Relayed(_Finishing, StreamingResponse):
    """A relayed answer that runs ``finish`` when it is over, even if its body never started."""

    def __init__(
        self, content: AsyncIterator[bytes], finish: Callable[[], Awaitable[None]], *, status_code: int
    ) -> None:
        super().__init__(content, status_code=status_code)
        self._finish = finish


class _Answered(_Finishing, Response):
    """An answer already in memory whose figures are recorded once it is sent (or not sent:
    the client left), off the latency the client sees."""

    def __init__(self, content: bytes, finish: Callable[[], Awaitable[None]], *, status_code: int) -> None:
        super().__init__(content, status_code=status_code)
        self._finish = finish


def _error(provider: str, status: int, kind: str, message: str) -> JSONResponse:
    """An error in the provider's own shape, so its SDK raises its usual exception."""
    if provider == "anthropic":
        return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status)
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status)


class Gateway:
    """The state of one gateway process: its config, ``PromptCache``, upstream client and metrics.

    ``cache``: a ``PromptCache`` to use (default: one made from ``config.policy`` and
    ``config.store``, closed with the app). The upstream client lives from the app's startup to
    its shutdown (:meth:`lifespan`), after the last stream finished. ``server_process``: the
    process is the gateway's own (``promptcache proxy``): once started, its garbage collector is
    set as a server's (:mod:`promptcache.gateway.collector`).
    """

    def __init__(
        self, config: GatewayConfig, *, cache: PromptCache | None = None, server_process: bool = False
    ) -> None:
        self.config = config
        self.server_process = server_process
        self._owns_cache = cache is None
        self.cache = cache if cache is not None else PromptCache(config.policy, store=config.store)
        self.metrics = GatewayMetrics(self.cache)
        self._transport: AsyncPromptCacheTransport | None = None
        # What httpx.AsyncClient(timeout=...) puts on each request, made once.
        self._timeout = {"timeout": httpx.Timeout(config.upstream_timeout).as_dict()}
        # Upstream URL of each served path without a query string, parsed once.
        self._urls: dict[str, httpx.URL] = {}

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Open the upstream transport; at shutdown close it and write the figures to the store."""
        n = self.config.max_connections
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=60.0)
        # httpx's API (the seam is an httpx transport) over aiohttp's connection pool and C parser:
        # httpx's own async pool queues requests under concurrency (encode/httpx#3215; measured
        # here: seconds of queueing at 100 requests/s), aiohttp's does not.
        # Requests go to the transport itself, not through an httpx.AsyncClient: the gateway is
        # the proxy, so environment proxies (trust_env=False), redirects, cookies and auth are the
        # client's business, and skipping them is a fifth of httpx's cost per request.
        inner = AiohttpTransport(limits=limits, trust_env=False)
        self._transport = AsyncPromptCacheTransport(inner, close_inner=True)
        if self.server_process:
            settle_server_heap()
        try:
            yield
        finally:
            await self._transport.aclose()
            self._transport = None
            if self._owns_cache:
                await anyio.to_thread.run_sync(self.cache.close)

    # -- routing --------------------------------------------------------------------------

    def _target(self, scope: Scope, headers: Mapping[str, str]) -> tuple[str, str, str] | None:
        """(route label, provider, upstream URL) of a request, or None for a path not served."""
        path: str = scope["path"]
        found = MODEL_ROUTES.get(path)
        if found is not None:
            label, provider = found
        elif path.startswith("/v1/"):
            h = headers
            anthropic = path.startswith("/v1/messages/") or "anthropic-version" in h or "x-api-key" in h
            label, provider = "other", "anthropic" if anthropic else "openai"
        else:
            return None
        if provider == "anthropic":
            url = self.config.anthropic_upstream + path
        else:
            url = self.config.openai_upstream + path[len("/v1") :]
        query = scope["query_string"].decode("latin-1")
        return label, provider, f"{url}?{query}" if query else url

    def _url(self, url: str) -> httpx.URL:
        # The served routes' URLs (no query string) are few: each is parsed once.
        if "?" in url:
            return httpx.URL(url)
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= 64:  # any /v1/... path is forwarded: keep the memo bounded
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def forward(self, scope: Scope, receive: Receive) -> Response | None:
        """Forward the request of ``scope`` (see the module docstring); the answer to relay, or
        None when the client left before its body arrived."""
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        headers = _read_headers(raw)
        target = self._target(scope, headers)
        if target is None:
            return _error("openai", 404, "not_found_error", f"{scope['path']}: the gateway serves /v1/...")
        route, provider, url = target
        transport = self._transport
        if transport is None:  # pragma: no cover - the server runs the lifespan before any request
            raise RuntimeError("the gateway's upstream transport is not open (lifespan not run)")
        method: str = scope["method"]
        ctx: CallContext | None = None
        if method == "POST" and route != "other":
            try:
                ctx = CallContext(cache=self.cache, tenant=resolve_request_tenant(self.cache, headers))
            except TenantError as exc:
                self.metrics.count(route, 400)
                return _error(provider, 400, "invalid_request_error", str(exc))
        body = await _body(receive)
        if body is None:
            return None
        outgoing = httpx.Request(
            method,
            self._url(url),
            headers=_request_headers(raw),
            content=body,
            extensions=self._timeout,
        )
        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            if ctx is None:
                upstream = await transport.handle_async_request(outgoing)
            else:
                with use_call(ctx):
                    upstream = await transport.handle_async_request(outgoing)
        except httpx.HTTPError as exc:
            self.metrics.in_flight.dec()
            return self._upstream_failed(route, provider, exc, started)
        self.metrics.upstream(route, time.perf_counter() - started)
        self.metrics.count(route, upstream.status_code)
        if upstream.is_stream_consumed:
            # The seam read a JSON answer for its usage (or a refusal before resending): it is in
            # memory already, decoded; it goes out as it is, and the figures are recorded after.
            content = upstream.content
            await upstream.aclose()
            status = upstream.status_code

            async def recorded() -> None:
                self._finished(scope, route, status, started, ctx)

            out = _Answered(content, recorded, status_code=status)
            out.raw_headers = [
                *_response_headers(upstream, decoded=True),
                (b"content-length", str(len(content)).encode()),
            ]
            return out
        done: list[bool] = []

        async def finish() -> None:
            # Once, whichever comes first: the relay's end, or the response's (a client gone
            # before the first chunk never starts the relay).
            if not done:
                done.append(True)
                with anyio.CancelScope(shield=True):  # also when cancelled: release the connection
                    await upstream.aclose()
                self._finished(scope, route, upstream.status_code, started, ctx)

        relayed = _Relayed(self._relay(upstream, scope, finish), finish, status_code=upstream.status_code)
        relayed.raw_headers = _response_headers(upstream, decoded=False)
        return relayed

    async def _relay(
        self, upstream: httpx.Response, scope: Scope, finish: Callable[[], Awaitable[None]]
    ) -> AsyncIterator[bytes]:
        # Raw bytes as they arrive (still encoded as the upstream sent them): the seam's tee reads
        # the stream's events for the usage on the way.
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            # The answer has started: the client sees it cut short (no final chunk), as it would
            # from the provider itself.
            self.metrics.upstream_errors.labels(_error_kind(exc)).inc()
            log.warning("upstream stream of %s broke off (%s)", scope["path"], type(exc).__name__)
            raise
        finally:
            await finish()

    def _finished(
        self, scope: Scope, route: str, status: int, started: float, ctx: CallContext | None
    ) -> None:
        self.metrics.in_flight.dec()
        if ctx is not None:
            if ctx.usage is not None:
                self.metrics.usage(ctx.usage)
            record_call(ctx)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s %d %.1f ms",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1e3,
            )

    def _upstream_failed(self, route: str, provider: str, exc: httpx.HTTPError, started: float) -> Response:
        kind = _error_kind(exc)
        status = 504 if kind == "timeout" else 502
        self.metrics.upstream_errors.labels(kind).inc()
        self.metrics.count(route, status)
        # The type only: an httpx message can quote the URL (and a query string can hold a key).
        log.warning(
            "upstream %s failed: %s after %.1f s", route, type(exc).__name__, time.perf_counter() - started
        )
        message = (
            f"promptcache gateway: the upstream did not answer within {self.config.upstream_timeout:g} s"
            if kind == "timeout"
            else f"promptcache gateway: upstream unreachable ({type(exc).__name__})"
        )
        err_type = "timeout_error" if kind == "timeout" else "api_error"
        return _error(provider, status, err_type, message)

    # -- operations -------------------------------------------------------------------------

    async def healthz(self) -> Response:
        """``GET /healthz``: the process serves (the upstreams and the store are not probed)."""
        return JSONResponse({"status": "ok"})

    async def prometheus(self) -> Response:
        """``GET /metrics``: the Prometheus text format."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        data = await anyio.to_thread.run_sync(generate_latest, self.metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)


def _error_kind(exc: httpx.HTTPError) -> str:
    # Read from the cause first: httpx-aiohttp maps aiohttp's connection errors (a refused
    # connection included) to ConnectTimeout, whatever happened.
    cause = exc.__cause__
    if isinstance(cause, TimeoutError):
        return "timeout"
    if isinstance(exc, httpx.ConnectError) or isinstance(cause, OSError):
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "protocol"


async def _body(receive: Receive) -> bytes | None:
    """The request body (None: the client disconnected before it was all there)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class GatewayApp:
    """The gateway as a plain ASGI app: ``GET /healthz``, ``GET /metrics``, and every other
    path to :meth:`Gateway.forward`; the lifespan opens and closes the gateway's upstream
    transport (:meth:`Gateway.lifespan`).

    No framework router or middleware stack sits in front of the forward: a proxy routes on
    the path alone, and each layer cost every request (Starlette's app, two middlewares, the
    router, a ``Request``: about a tenth of the gateway's CPU per request under load). The
    answers themselves are Starlette responses. An exception the app does not handle reaches
    uvicorn, which answers 500 and logs it. ``state.gateway`` is the :class:`Gateway`.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.state = SimpleNamespace(gateway=gateway)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope (``http`` or ``lifespan``)."""
        kind = scope["type"]
        if kind == "http":
            response = await self._respond(scope, receive)
            if response is not None:
                await response(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _respond(self, scope: Scope, receive: Receive) -> Response | None:
        gateway, path, method = self.gateway, scope["path"], scope["method"]
        if method in ("GET", "HEAD"):
            if path == "/healthz":
                return await gateway.healthz()
            if path == "/metrics":
                return await gateway.prometheus()
        if method not in _METHODS:
            return PlainTextResponse("Method Not Allowed", 405, headers={"allow": _ALLOW})
        return await gateway.forward(scope, receive)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # The ASGI lifespan protocol: startup, then (after the server drained its requests)
        # shutdown; a failed startup is reported to the server, which then exits.
        await receive()  # lifespan.startup
        started = False
        try:
            async with self.gateway.lifespan():
                started = True
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
        except BaseException as exc:
            failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": failed, "message": f"{type(exc).__name__}: {exc}"})
            raise
        await send({"type": "lifespan.shutdown.complete"})


def create_app(
    config: GatewayConfig | Mapping[str, Any] | None = None,
    *,
    cache: PromptCache | None = None,
    server_process: bool = False,
) -> GatewayApp:
    """The gateway as an ASGI app (serve it with uvicorn; ``promptcache proxy`` does).

    ``config``: a :class:`GatewayConfig` or its fields as a mapping (default: the real
    providers, no store); ``cache`` and ``server_process``: see :class:`Gateway`.
    ``app.state.gateway`` is the :class:`Gateway`.
    """
    if config is None:
        config = GatewayConfig()
    elif not isinstance(config, GatewayConfig):
        config = GatewayConfig.model_validate(dict(config))
    return GatewayApp(Gateway(config, cache=cache, server_process=server_process))
