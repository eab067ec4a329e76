"""The seam into boto3 ``bedrock-runtime`` clients: botocore's own event system.

boto3 does not send through ``httpx``, so :mod:`promptcache.transport` never sees a Bedrock
call. botocore announces every step of a call on the client's event emitter instead, and
:func:`hook_bedrock_client` registers three handlers there for ``Converse`` and
``ConverseStream``. While a :class:`~promptcache.llm_bridge.CallContext` is current they:

1. ``before-call``: rewrite the serialized JSON body (the Converse wire format, blobs as base64,
   exactly what the transport rewrites for other SDKs) through ``PromptCache.prepare_request``
   for the context's tenant, before botocore signs and sends it (a cache problem never fails the
   call: the body then goes out as built, and the reason is noted);
2. ``needs-retry``: when Bedrock answers 400 naming a caching hint (a ``ValidationException``
   about ``cachePoint``), strip every hint from that body and ask botocore for one more attempt,
   which it signs and sends anew (:mod:`promptcache.providers.fallback`; counted in
   ``HINT_REJECTIONS``; this resend does not use the client's retry budget);
3. ``after-call``: read the provider's usage back into the context, from the answer or, for
   ``ConverseStream``, from the events (the last, ``metadata``, carries the usage) as the caller
   iterates the stream.

Outside a call context the handlers return at once and botocore proceeds as if they were not
there. The same :class:`~promptcache.transport.ProviderRequest` as the httpx seam rewrites,
resends and reads the usage: one implementation of those rules.

Why on the caller's client, not on a new client from the same session: a new client would drop
whatever else is registered on the caller's (tracing instrumentation, the caller's own
handlers) and could differ in credentials or config resolved since. The handlers are
registered once per client (by ``unique_id``; hooking twice changes nothing) and
:func:`unhook_bedrock_client` removes them. They are registered first, so they run before
botocore's ``Stubber`` answers a call. aiobotocore clients (aioboto3) are not hooked: their
streams are asynchronous.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson

from promptcache.llm_bridge import current_call, mark_first_chunk
from promptcache.transport import ProviderRequest, endpoint_format

__all__ = ["hook_bedrock_client", "is_bedrock_client", "unhook_bedrock_client"]

log = logging.getLogger("promptcache.botocore_events")

_OPERATIONS = ("Converse", "ConverseStream")
# Where a call's ProviderRequest waits between the events of one API call: botocore's request
# context, the dict it hands to each of them (``context=``, and ``request_dict["context"]``).
_KEY = "promptcache"


def is_bedrock_client(client: Any) -> bool:
    """Whether ``client`` is a botocore (boto3) ``bedrock-runtime`` client."""
    meta = getattr(client, "meta", None)
    service = getattr(getattr(meta, "service_model", None), "service_name", None)
    return service == "bedrock-runtime" and type(client).__module__.startswith("botocore")


def _on_before_call(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    ctx = current_call.get()
    if ctx is None:
        return
    found = endpoint_format(str(params.get("url_path", "")))
    if found is None:
        return  # not Converse: InvokeModel, guardrails, ...
    try:
        body = orjson.loads(params["body"])
    except (KeyError, TypeError, orjson.JSONDecodeError):
        return
    if not isinstance(body, dict):
        return
    call = ProviderRequest(ctx, found[0], found[1])
    context[_KEY] = call
    params["body"] = orjson.dumps(call.prepare(body, params["url_path"].endswith("/converse-stream")))
    # Returning None lets botocore send it (a value would be taken for the answer).


def _on_needs_retry(
    response: tuple[Any, dict[str, Any]] | None, request_dict: dict[str, Any], **_: Any
) -> int | None:
    call = request_dict.get("context", {}).get(_KEY)
    if not isinstance(call, ProviderRequest) or response is None:
        return None
    http, parsed = response
    status = http.status_code
    if not call.may_retry(status):
        return None
    retry = call.retry_body(status, f"{parsed.get('Error')!r}\n{http.text}")
    if retry is None:
        return None
    # botocore builds and signs each attempt anew from request_dict: this is the next body.
    request_dict["body"] = orjson.dumps(retry)
    return 0  # retry at once


def _on_after_call(http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    call = context.pop(_KEY, None)
    if not isinstance(call, ProviderRequest):
        return
    if http_response.status_code >= 300:
        call.ctx.body = None
        return
    stream = parsed.get("stream")
    if stream is None:
        call.read_answer(parsed)
        return
    call.ctx.body = None  # answered (see CallContext.body)
    # The answer dict is botocore's, made for this call: the caller gets the stream through it.
    parsed["stream"] = _TeeEventStream(stream, call)


class _TeeEventStream:
    """A ConverseStream ``EventStream`` that records each event for the usage read-back as the
    caller iterates it; everything else (``close``, ``get_initial_response``) is the stream's."""

    def __init__(self, stream: Any, call: ProviderRequest) -> None:
        self._stream = stream
        self._call = call
        self._done = False

    def __iter__(self) -> Iterator[Any]:
        ctx = self._call.ctx
        for event in self._stream:
            mark_first_chunk(ctx)
            if isinstance(event, dict):
                ctx.stream_events.append(event)
            yield event
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._call.finish_stream()

    def close(self) -> None:
        """Close the underlying stream; the usage is what the events read so far carried."""
        self._stream.close()
        self._finish()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_HANDLERS = (
    ("needs-retry", _on_needs_retry),
    ("after-call", _on_after_call),
)
# botocore calls the handlers of a more general event name ("before-call.*.*") before those of
# a specific one, whatever the registration order: a Stubber registers there and answers, so
# the rewrite registers there too, first; it acts on Converse paths only.
_BEFORE_CALL = "before-call.*.*"
_BEFORE_CALL_ID = "promptcache-before-call"


def _events() -> Iterator[tuple[str, Any, str]]:
    yield _BEFORE_CALL, _on_before_call, _BEFORE_CALL_ID
    for operation in _OPERATIONS:
        for stage, handler in _HANDLERS:
            event = f"{stage}.bedrock-runtime.{operation}"
            yield event, handler, f"promptcache-{event}"


def hook_bedrock_client(client: Any) -> bool:
    """Register promptcache's handlers on a boto3 ``bedrock-runtime`` client (see the module
    docstring); True when ``client`` is one and now carries them, False otherwise (nothing done).
    """
    if not is_bedrock_client(client):
        return False
    emitter = client.meta.events
    for event, handler, unique_id in _events():
        # First: before-call stops at the first handler that answers (a Stubber's), and the
        # hint resend must answer needs-retry before botocore's own retry handler does.
        emitter.register_first(event, handler, unique_id=unique_id)
    return True


def unhook_bedrock_client(client: Any) -> None:
    """Remove the handlers :func:`hook_bedrock_client` registered on ``client`` (if any)."""
    if not is_bedrock_client(client):
        return
    emitter = client.meta.events
    for event, handler, unique_id in _events():
        emitter.unregister(event, handler, unique_id=unique_id)
