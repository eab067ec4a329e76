"""Apply ``PromptCache.prepare_request`` to the request a LangChain chat model actually sends.

LangChain's provider packages build the provider request in one method,
``_get_request_payload(messages, stop=..., **kwargs)`` (``ChatOpenAI`` for Chat Completions and
Responses, ``ChatAnthropic``), and then pass that dict unchanged to the provider SDK in
``_generate``/``_agenerate``/``_stream``/``_astream``. Rewriting that dict is therefore the one
place where the body sent is exactly ``prepare_request(payload).body``, whatever the model's
settings, bound tools, streaming mode or provider-specific options.

We never patch the user's model or its class: :func:`hooked_copy` returns a shallow copy whose
class is a cached subclass overriding ``_get_request_payload``. The copy shares the user's
SDK clients and settings; ``isinstance`` checks (``create_agent`` branches on
``BaseChatOpenAI``) still hold. The subclass only rewrites while a :class:`CallContext` is
set, so the copy behaves exactly like the original otherwise.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel

from promptcache import PromptCache, WireFormat, WireFormatError
from promptcache.formats import parse_format
from promptcache.plan import Prepared

__all__ = ["CallContext", "current_call", "detect_format", "hooked_copy", "is_hookable"]


@dataclass(slots=True)
class CallContext:
    """One model call under promptcache: who it runs for, and what the hook did."""

    cache: PromptCache
    tenant: str
    format: WireFormat | None = None
    prepared: Prepared | None = None
    format_used: WireFormat | None = None
    notes: list[str] = field(default_factory=list)


# Set around one model call (never across a generator's yields: see CachingChatModel._stream).
current_call: ContextVar[CallContext | None] = ContextVar("promptcache_langchain_call", default=None)

_ANTHROPIC = ("ChatAnthropic",)
_OPENAI = ("BaseChatOpenAI",)
_BEDROCK = ("ChatBedrockConverse",)


def detect_format(model: BaseChatModel, payload: dict[str, Any]) -> WireFormat | None:
    """The wire format of ``payload`` as built by ``model`` (None: unknown, sent unchanged).

    By the model's class (its MRO, so subclasses and OpenAI-compatible models such as
    ``ChatDeepSeek`` count), then by the payload's shape (Responses bodies carry ``input``).
    """
    names = {c.__name__ for c in type(model).__mro__}
    if names.intersection(_ANTHROPIC):
        return WireFormat.ANTHROPIC_MESSAGES
    if names.intersection(_OPENAI):
        if "messages" not in payload and "input" in payload:
            return WireFormat.OPENAI_RESPONSES
        return WireFormat.OPENAI_CHAT
    if names.intersection(_BEDROCK):
        return WireFormat.BEDROCK_CONVERSE
    return None


def _rewrite(model: BaseChatModel, payload: Any) -> Any:
    ctx = current_call.get()
    if ctx is None or not isinstance(payload, dict):
        return payload
    fmt = ctx.format or detect_format(model, payload)
    if fmt is None:
        ctx.notes.append(f"{type(model).__name__}: unknown wire format, request sent unchanged")
        return payload
    try:
        prepared = ctx.cache.prepare_request(payload, format=fmt, tenant=ctx.tenant)
    except WireFormatError as exc:
        # A cache problem must never fail the call (DESIGN: failure behaviour): send it as built.
        ctx.notes.append(f"request sent unchanged: {exc}")
        return payload
    ctx.prepared, ctx.format_used = prepared, fmt
    return prepared.body


_subclasses: dict[type[BaseChatModel], type[BaseChatModel]] = {}
_subclasses_lock = threading.Lock()


def _hooked_class(cls: type[BaseChatModel]) -> type[BaseChatModel]:
    sub = _subclasses.get(cls)
    if sub is not None:
        return sub
    with _subclasses_lock:
        sub = _subclasses.get(cls)
        if sub is None:
            base_payload = cls._get_request_payload  # type: ignore[attr-defined]

            def _get_request_payload(self: BaseChatModel, *args: Any, **kwargs: Any) -> Any:
                return _rewrite(self, base_payload(self, *args, **kwargs))

            sub = type(
                cls.__name__,  # same name: traces and _llm_type read as the user's model
                (cls,),
                {
                    "_get_request_payload": _get_request_payload,
                    "__module__": cls.__module__,
                    "__qualname__": cls.__qualname__,
                    "__promptcache_hooked__": True,
                },
            )
            _subclasses[cls] = sub
    return sub


def is_hookable(model: BaseChatModel) -> bool:
    """Whether the model builds its request in ``_get_request_payload`` (the providers we rewrite)."""
    return callable(getattr(type(model), "_get_request_payload", None))


def hooked_copy(model: BaseChatModel) -> BaseChatModel | None:
    """A copy of ``model`` whose requests promptcache rewrites (None if it cannot be hooked)."""
    if getattr(type(model), "__promptcache_hooked__", False):
        return model
    if not is_hookable(model):
        return None
    copy = model.model_copy()
    # Swap the class of the copy only: the user's object and its class stay untouched.
    object.__setattr__(copy, "__class__", _hooked_class(type(model)))
    return copy


def format_override(value: str | WireFormat | None) -> WireFormat | None:
    """Parse a user-given wire format (None: detect per call)."""
    return None if value is None else parse_format(value)
