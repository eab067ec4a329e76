"""Structured-output ``parse`` under promptcache, for SDK clients off the HTTP seam.

:mod:`promptcache.llm_bridge` rewrites the request methods that framework LLMs use for chat
(``messages.create``, ``chat.completions.create``, ``responses.create``) on clients that cannot
send through :mod:`promptcache.transport` (``AnthropicBedrock``, which signs the body before
httpx sees it). Its structured-output helpers are one more kind of call: anthropic's
``beta.messages.parse`` and openai's ``responses.parse`` take a Python type
(``output_format``/``text_format``) next to the body fields. The type and the ``betas`` header
list are set aside, the rest is rewritten like any request, and they are put back for the SDK
to turn into the schema it sends.

:func:`intercept_sdk_client` is :func:`promptcache.llm_bridge.intercept_client` plus ``parse``;
like it, it returns a copy (the caller's client is untouched) that rewrites only while a
:class:`~promptcache.llm_bridge.CallContext` is current, and reads the provider's usage back
into that context. google-genai clients go through :func:`promptcache.transport.wrap_genai_client`
and boto3 ``bedrock-runtime`` clients through :mod:`promptcache.botocore_events` instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from promptcache.formats import WireFormat
from promptcache.llm_bridge import (
    CallContext,
    Delegate,
    acall_with_hint_fallback,
    call_with_hint_fallback,
    current_call,
    intercept_client,
    is_intercepted,
    rewrite_payload,
    to_plain,
)
from promptcache.providers.usage import usage_from_response

__all__ = ["intercept_sdk_client"]

# Keyword arguments of the parse helpers that are not body JSON: a Python type the SDK turns into
# a schema, and the beta flags it sends as a header.
_PARSE_ASIDE = frozenset({"output_format", "text_format", "betas"})


def intercept_sdk_client(client: Any) -> Any:
    """:func:`promptcache.llm_bridge.intercept_client`, plus the anthropic/openai
    structured-output ``parse`` methods. Unknown clients and ``None`` are returned as they are."""
    if client is None or is_intercepted(client):
        return client
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
