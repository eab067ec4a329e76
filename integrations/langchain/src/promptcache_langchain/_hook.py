"""Apply ``PromptCache.prepare_request`` to the request a LangChain chat model actually sends.

LangChain's provider packages send through the provider SDKs, and those through ``httpx``. The
core's HTTP seam (:mod:`promptcache.transport`) rewrites the JSON body an SDK sends while a
:class:`~promptcache.llm_bridge.CallContext` is current, resends once without caching hints when
the provider refuses one, and reads the usage back (streams included, unbuffered).

:func:`hooked_copy` returns a new model of the user's class, built by its constructor from the
user's settings, whose SDK clients send through that seam:

* ``BaseChatOpenAI`` models (``ChatOpenAI``, ``AzureChatOpenAI``, OpenAI-compatible subclasses)
  take ``http_client``/``http_async_client``: the copy is given
  :func:`~promptcache.transport.wrap_http_client` over the ``httpx`` clients the user's model
  sends through, and its validators build its SDK clients over them;
* ``ChatAnthropic`` takes no ``http_client`` and builds its SDK clients lazily
  (``_client``/``_async_client``): the copy's are built on the copy, then replaced by the SDK's
  own ``with_options(http_client=...)`` copies over the wrapped client.

The user's model, its class, its SDK clients and its ``httpx`` client are never modified (the
wrapped ``httpx`` client borrows the caller's transport and never closes it). ``isinstance``
checks (``create_agent`` branches on ``BaseChatOpenAI``) hold: the copy is of the user's class.
Outside a call context the copy sends exactly what the user's model would.
"""

from __future__ import annotations

import inspect
import sys
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel

from promptcache import WireFormat
from promptcache.formats import parse_format
from promptcache.llm_bridge import CallContext, current_call
from promptcache.transport import wrap_http_client

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


def is_hookable(model: BaseChatModel) -> bool:
    """Whether the model sends through an SDK client this module can put on the HTTP seam."""
    family = _family(type(model))
    if family == "openai":
        # Without its SDK clients (a subclass that builds its own elsewhere) nothing can be rewritten.
        return (
            getattr(model, "root_client", None) is not None
            or getattr(model, "root_async_client", None) is not None
        )
    return family == "anthropic"


def _over_transport(client: Any) -> Any:
    """``client`` (an ``openai``/``anthropic`` SDK client) re-made by the SDK itself over the
    promptcache transport; ``client`` when it holds no ``httpx`` client."""
    # The SDKs keep their httpx client as ``_client``; ``with_options`` is their public copy.
    http = getattr(client, "_client", None)
    if http is None or not callable(getattr(client, "with_options", None)):
        return client
    return client.with_options(http_client=wrap_http_client(http))


# The fields a copy gets anew from its own validators: its SDK clients, built over our httpx
# clients. ``openai_proxy`` is already in the user's httpx client (its mounts), which the
# copy's borrows; LangChain refuses a proxy next to an http_client.
_CLIENT_FIELDS = frozenset(
    {
        "client",
        "async_client",
        "root_client",
        "root_async_client",
        "http_client",
        "http_async_client",
        "openai_proxy",
    }
)


def _fields(model: BaseChatModel) -> dict[str, Any]:
    """The user's model's settings as its constructor takes them: every field by name, as validated.

    Every field, not only those set: one assigned behind pydantic's back is the model's setting
    too. Values are as the validators left them (the API key resolved, still a ``SecretStr``).
    """
    return {name: getattr(model, name) for name in type(model).model_fields if name not in _CLIENT_FIELDS}


def _httpx_client(model: BaseChatModel, field: str, sdk_client: Any) -> Any:
    """The ``httpx`` client ``model`` sends through: the user's own (``http_client``/``http_async_client``)
    or, when LangChain built a default one, the one its SDK client holds (no public accessor)."""
    own = getattr(model, field, None)
    return own if own is not None else getattr(sdk_client, "_client", None)


def _cached(model: BaseChatModel, name: str) -> Any:
    """The value of ``model``'s ``functools.cached_property`` ``name`` if it was computed, else None.

    A ``cached_property`` keeps its value in the instance's ``__dict__``; reading it there (never
    through the attribute, which would compute and cache one on the user's model) is how to ask.
    """
    return vars(model).get(name)


def _copy_over_transport(model: BaseChatModel) -> BaseChatModel:
    """A new model of the user's class, from the user's settings, whose SDK clients send through promptcache.

    Built through the class's constructor, so its validators build its SDK clients as they would
    for the user's: ``BaseChatOpenAI`` takes ``http_client``/``http_async_client`` (the SDKs' own
    hook), given :func:`~promptcache.transport.wrap_http_client` over the user's. ``ChatAnthropic``
    takes no ``http_client``: it builds its SDK clients lazily (``functools.cached_property``) over
    a default ``httpx`` client, so the copy gets the SDK's ``with_options(http_client=...)`` copies
    of the user's (when built) or of its own, assigned as a ``cached_property`` allows.
    """
    settings = _fields(model)
    if _family(type(model)) == "anthropic":
        dup = type(model)(**settings)
        # The user's own SDK clients when the model already built (or was given) them, read
        # without building any on the user's model; else the ones the copy builds the same way.
        sync = _cached(model, "_client") or dup._client  # type: ignore[attr-defined]
        asynchronous = _cached(model, "_async_client") or dup._async_client  # type: ignore[attr-defined]
        dup._client = _over_transport(sync)  # type: ignore[attr-defined]
        dup._async_client = _over_transport(asynchronous)  # type: ignore[attr-defined]
        return dup
    root, aroot = getattr(model, "root_client", None), getattr(model, "root_async_client", None)
    if root is not None:
        settings["http_client"] = wrap_http_client(_httpx_client(model, "http_client", root))
    if aroot is not None:
        http = _httpx_client(model, "http_async_client", aroot)
        settings["http_async_client"] = wrap_http_client(http, asynchronous=True)
    return type(model)(**settings)


# One hooked copy per user model, reused while the model is unchanged: create_agent hands the
# middleware the same model object on every call, and a copy per call costs more than the copy
# (LangChain caches the model's serialized form on the instance, so a new copy redoes it per
# call). Keyed by id() (chat models are not hashable) with a weak reference, so a copy never
# outlives its model and a recycled id is never mistaken for it.
_copies: dict[int, _Copy] = {}
# The copies made here, by id() with a weak reference (same reasons as _copies).
_own: dict[int, weakref.ref[BaseChatModel]] = {}


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
    own = _own.get(key)
    if own is not None and own() is model:
        return model
    if not is_hookable(model):
        return None
    settings = _settings(model)
    copy = _copy_over_transport(model)
    try:
        # A copy handed back in (a middleware seeing its own copy) is not copied again.
        copy_key = id(copy)
        _own[copy_key] = weakref.ref(
            copy, lambda r: _own.pop(copy_key, None) if _own.get(copy_key) is r else None
        )
    except TypeError:
        pass
    try:
        ref = weakref.ref(model, lambda r: _forget(key, r))
    except TypeError:  # not weakly referenceable: a fresh copy each time, as before
        return copy
    _copies[key] = _Copy(ref, copy, settings)
    return copy


def format_override(value: str | WireFormat | None) -> WireFormat | None:
    """Parse a user-given wire format (None: detect per call)."""
    return None if value is None else parse_format(value)
