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

The rewrite itself, its failure rule (a cache problem never fails the call; the reason is
noted) and the hint-rejection resend are the core's :mod:`promptcache.llm_bridge`, shared with
the LlamaIndex integration. Only what is LangChain-specific lives here: finding the wire format
from the model class, and the hooked subclass. Its ``_generate``/``_agenerate``/``_stream``/
``_astream`` run the inner model's own method under
:func:`~promptcache.llm_bridge.call_with_hint_fallback`: a provider that answers 400 to a caching
hint gets the request once more, rebuilt without hints, and the call notes and counts it.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel

from promptcache import WireFormat
from promptcache.formats import parse_format
from promptcache.llm_bridge import (
    CallContext,
    acall_with_hint_fallback,
    call_with_hint_fallback,
    mark_first_chunk,
    rewrite_payload,
)

__all__ = [
    "CallContext",
    "carries_signature",
    "current_call",
    "detect_format",
    "hooked_copy",
    "is_hookable",
    "with_signature",
]

F = TypeVar("F", bound=Callable[..., Any])


# Set around one model call (never across a generator's yields: see CachingChatModel._stream).
# Its own variable, not the bridge's: an SDK client intercepted for LlamaIndex that a LangChain
# model happened to share must not rewrite the body a second time.
current_call: ContextVar[CallContext | None] = ContextVar("promptcache_langchain_call", default=None)

_FAMILIES = (("ChatAnthropic", "anthropic"), ("BaseChatOpenAI", "openai"), ("ChatBedrockConverse", "bedrock"))
# The provider family of a model class, by its MRO (fixed per class): computed once per class,
# since detect_format runs on every request.
_family_of_class: dict[type, str | None] = {}


def _family(cls: type) -> str | None:
    try:
        return _family_of_class[cls]
    except KeyError:
        names = {c.__name__ for c in cls.__mro__}
        family = next((fam for name, fam in _FAMILIES if name in names), None)
        _family_of_class[cls] = family
        return family


def detect_format(model: BaseChatModel, payload: dict[str, Any]) -> WireFormat | None:
    """The wire format of ``payload`` as built by ``model`` (None: unknown, sent unchanged).

    By the model's class (its MRO, so subclasses and OpenAI-compatible models such as
    ``ChatDeepSeek`` count), then by the payload's shape (Responses bodies carry ``input``).
    """
    family = _family(type(model))
    if family == "anthropic":
        return WireFormat.ANTHROPIC_MESSAGES
    if family == "openai":
        if "messages" not in payload and "input" in payload:
            return WireFormat.OPENAI_RESPONSES
        return WireFormat.OPENAI_CHAT
    if family == "bedrock":
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
    return rewrite_payload(ctx, payload, fmt)


_END = object()


def with_signature(fn: F, like: Callable[..., Any]) -> F:
    """``fn`` carrying ``like``'s signature, computed once, as ``fn.__signature__``.

    ``BaseChatModel`` asks for the signature of ``self._generate`` (``_agenerate``) on every
    call, to see whether it takes ``run_manager``. Computed from the function each time, that
    cost ~200k cycles on the cold CPU cache of an agent's next call (~100 µs on this machine's
    benchmark: more than a tenth of promptcache's own work); a signature the function carries
    is used as it is. It is the signature ``inspect`` finds anyway, following ``__wrapped__``
    to ``like``. Left out where it cannot be computed up front (annotations that only resolve
    later, on 3.14): ``inspect`` then computes it per call, as without this.
    """
    try:
        if sys.version_info >= (3, 14):  # annotations are lazy there: LangChain reads them so too
            from annotationlib import Format

            sig = inspect.signature(like, annotation_format=Format.FORWARDREF)
        else:
            sig = inspect.signature(like)
    except (NameError, TypeError, ValueError):
        return fn
    fn.__signature__ = sig  # type: ignore[attr-defined]
    return fn


def carries_signature(fn: F) -> F:
    """Decorator: ``fn`` carrying its own signature (:func:`with_signature`), for methods
    LangChain introspects on every call (``_generate``, a middleware's hooks)."""
    return with_signature(fn, fn)


def _overrides(cls: type[BaseChatModel]) -> dict[str, Callable[..., Any]]:
    """The methods of the hooked subclass: the payload rewrite and the hint-rejection resend."""
    base_payload = cls._get_request_payload  # type: ignore[attr-defined]
    base_generate, base_agenerate = cls._generate, cls._agenerate
    base_stream, base_astream = cls._stream, cls._astream

    def _get_request_payload(self: BaseChatModel, *args: Any, **kwargs: Any) -> Any:
        return _rewrite(self, base_payload(self, *args, **kwargs))

    def _generate(self: BaseChatModel, *args: Any, **kwargs: Any) -> Any:
        ctx = current_call.get()
        if ctx is None:
            return base_generate(self, *args, **kwargs)
        return call_with_hint_fallback(ctx, lambda: base_generate(self, *args, **kwargs))

    async def _agenerate(self: BaseChatModel, *args: Any, **kwargs: Any) -> Any:
        ctx = current_call.get()
        if ctx is None:
            return await base_agenerate(self, *args, **kwargs)
        return await acall_with_hint_fallback(ctx, lambda: base_agenerate(self, *args, **kwargs))

    def _stream(self: BaseChatModel, *args: Any, **kwargs: Any) -> Iterator[Any]:
        # The request goes out on the first step of the inner generator: only that step can
        # meet a hint rejection, and only then is the context set (CachingChatModel._stream).
        ctx = current_call.get()

        def start() -> tuple[Iterator[Any], Any]:
            it = base_stream(self, *args, **kwargs)
            return it, next(it, _END)

        it, first = start() if ctx is None else call_with_hint_fallback(ctx, start)
        if first is not _END:
            if ctx is not None:
                mark_first_chunk(ctx)
            yield first
            yield from it

    async def _astream(self: BaseChatModel, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        ctx = current_call.get()

        async def start() -> tuple[AsyncIterator[Any], Any]:
            it = base_astream(self, *args, **kwargs)
            return it, await anext(it, _END)

        it, first = await (start() if ctx is None else acall_with_hint_fallback(ctx, start))
        if first is not _END:
            if ctx is not None:
                mark_first_chunk(ctx)
            yield first
            async for chunk in it:
                yield chunk

    out: dict[str, Callable[..., Any]] = {
        "_get_request_payload": functools.wraps(base_payload)(_get_request_payload),
        "_generate": with_signature(functools.wraps(base_generate)(_generate), base_generate),
        "_agenerate": with_signature(functools.wraps(base_agenerate)(_agenerate), base_agenerate),
    }
    # Only where the model streams natively: BaseChatModel decides whether a model can stream
    # by checking that _stream/_astream are overridden, and that must not change.
    if base_stream is not BaseChatModel._stream:
        out["_stream"] = functools.wraps(base_stream)(_stream)
    if base_astream is not BaseChatModel._astream:
        out["_astream"] = functools.wraps(base_astream)(_astream)
    # wraps() also gives each override the signature of the method it wraps: LangChain passes
    # run_manager to _generate/_agenerate only when their signature names it.
    return out


_subclasses: dict[type[BaseChatModel], type[BaseChatModel]] = {}
_subclasses_lock = threading.Lock()


def _hooked_class(cls: type[BaseChatModel]) -> type[BaseChatModel]:
    sub = _subclasses.get(cls)
    if sub is not None:
        return sub
    with _subclasses_lock:
        sub = _subclasses.get(cls)
        if sub is None:
            sub = type(
                cls.__name__,  # same name: traces and _llm_type read as the user's model
                (cls,),
                {
                    **_overrides(cls),
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


# One hooked copy per user model, reused while the model is unchanged: create_agent hands the
# middleware the same model object on every call, and a copy per call costs more than the copy
# (LangChain caches the model's serialized form on the instance, so a new copy redoes it per
# call). Keyed by id() (chat models are not hashable) with a weak reference, so a copy never
# outlives its model and a recycled id is never mistaken for it.
_copies: dict[int, _Copy] = {}


class _Copy:
    """A hooked copy and what it was made from (see :func:`hooked_copy`)."""

    __slots__ = ("copy", "ref", "settings")

    def __init__(
        self, ref: weakref.ref[BaseChatModel], copy: BaseChatModel, settings: tuple[Any, ...]
    ) -> None:
        self.ref, self.copy, self.settings = ref, copy, settings


def _settings(model: BaseChatModel) -> tuple[Any, ...]:
    """What the copy was made from: the model's attribute names and values, in order.

    Compared with ``==`` (identity first, element by element, in C): a setting assigned since
    (``model.temperature = 0.2``) or an attribute added makes a new copy. Names and values as
    flat tuples, not items: no per-key hashing, which is what makes the check cheap on a cold cache.
    """
    private, extra = model.__pydantic_private__, model.__pydantic_extra__
    return (
        tuple(model.__dict__),
        tuple(model.__dict__.values()),
        None if private is None else tuple(private.items()),
        None if extra is None else tuple(extra.items()),
    )


def _unchanged(entry: _Copy, model: Any) -> bool:
    """Whether ``model`` holds the settings ``entry`` was made or last checked from."""
    try:
        return bool(entry.settings == _settings(model))
    except Exception:  # a setting whose == raises (an array): not provably the same
        return False


def _forget(key: int, ref: weakref.ref[BaseChatModel]) -> None:
    entry = _copies.get(key)
    if entry is not None and entry.ref is ref:
        _copies.pop(key, None)


def hooked_copy(model: BaseChatModel) -> BaseChatModel | None:
    """A copy of ``model`` whose requests promptcache rewrites (None if it cannot be hooked).

    The same copy is returned while ``model`` is unchanged; a model whose settings changed since
    gets a new one. The copy's own derived state (LangChain's cached ``_serialized``) stays on it.
    """
    key = id(model)
    entry = _copies.get(key)
    if entry is not None and entry.ref() is model and _unchanged(entry, model):
        return entry.copy
    if getattr(type(model), "__promptcache_hooked__", False):
        return model
    if not is_hookable(model):
        return None
    settings = _settings(model)
    copy = model.model_copy()
    # Swap the class of the copy only: the user's object and its class stay untouched.
    object.__setattr__(copy, "__class__", _hooked_class(type(model)))
    try:
        ref = weakref.ref(model, lambda r: _forget(key, r))
    except TypeError:  # not weakly referenceable: a fresh copy each time, as before
        return copy
    _copies[key] = _Copy(ref, copy, settings)
    return copy


def format_override(value: str | WireFormat | None) -> WireFormat | None:
    """Parse a user-given wire format (None: detect per call)."""
    return None if value is None else parse_format(value)
