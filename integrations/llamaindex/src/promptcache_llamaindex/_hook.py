"""Make a LlamaIndex LLM send what ``PromptCache.prepare_request`` makes of its requests.

LlamaIndex's provider LLMs build the request in several methods (``chat``, ``stream_chat``,
``_prepare_chat_with_tools`` ...) but all end in one SDK call on a client they hold:
``self._client``/``self._aclient`` (``Anthropic``, ``OpenAIResponses``, ``BedrockConverse``) or
``self._get_client()``/``self._get_aclient()`` (``OpenAI``, which may build a fresh client per
call). :func:`hooked_copy` returns a copy of the user's LLM whose clients are replaced by
:func:`promptcache.intercept.intercept_sdk_client` copies (``llm_bridge``'s
``intercept_client``, plus ``google.genai`` clients for ``GoogleGenAI`` and the structured-output
``parse`` methods); the shared core then rewrites the SDK keyword arguments (the body) while a
call context is set. The user's LLM object, its class and its clients stay untouched.
"""

from __future__ import annotations

import threading
from typing import Any

from llama_index.core.llms import LLM

from promptcache.intercept import intercept_sdk_client
from promptcache.providers.gemini_cache import GeminiCacheManager

__all__ = ["hooked_copy"]

_CLIENT_ATTRS = ("_client", "_aclient", "_async_client")

_subclasses: dict[type[LLM], type[LLM]] = {}
_lock = threading.Lock()


def _hooked_class(cls: type[LLM]) -> type[LLM]:
    """A subclass whose ``_get_client``/``_get_aclient`` hand out intercepted clients."""
    sub = _subclasses.get(cls)
    if sub is not None:
        return sub
    with _lock:
        sub = _subclasses.get(cls)
        if sub is None:
            base_get = cls._get_client  # type: ignore[attr-defined]
            base_aget = cls._get_aclient  # type: ignore[attr-defined]

            def _get_client(self: Any) -> Any:
                return _keep(self, "_client", intercept_sdk_client(base_get(self)))

            def _get_aclient(self: Any) -> Any:
                return _keep(self, "_aclient", intercept_sdk_client(base_aget(self)))

            sub = type(
                cls.__name__,  # same name: traces and class_name() read as the user's LLM
                (cls,),
                {
                    "_get_client": _get_client,
                    "_get_aclient": _get_aclient,
                    "__module__": cls.__module__,
                    "__qualname__": cls.__qualname__,
                    "__promptcache_hooked__": True,
                },
            )
            _subclasses[cls] = sub
    return sub


def _keep(llm: Any, attr: str, client: Any) -> Any:
    # With reuse_client the LLM caches its client: cache the intercepted one so it is made once.
    if getattr(llm, "reuse_client", False):
        setattr(llm, attr, client)
    return client


def hooked_copy(llm: LLM, *, gemini_caches: GeminiCacheManager | None = None) -> LLM:
    """A copy of ``llm`` whose SDK calls promptcache rewrites inside a call context.

    An LLM whose client is not an ``openai``/``anthropic``/``bedrock-runtime``/``google.genai``
    SDK client is copied unchanged (its calls go out as built, and are still observed).
    ``gemini_caches`` moves a ``GoogleGenAI`` request's static prefix into a cached content.
    """
    dup = llm.model_copy()
    cls = type(llm)
    if callable(getattr(cls, "_get_client", None)) and callable(getattr(cls, "_get_aclient", None)):
        # Swap the class of the copy only: the user's object and its class stay untouched.
        object.__setattr__(dup, "__class__", _hooked_class(cls))
    private = getattr(dup, "__pydantic_private__", None) or {}
    for attr in _CLIENT_ATTRS:
        client = private.get(attr)
        if client is not None:
            setattr(dup, attr, intercept_sdk_client(client, gemini_caches=gemini_caches))
    if getattr(dup, "cache_idx", None) is not None:
        # promptcache places the breakpoints itself (system prompt included, any model id, at most
        # the provider's limit); LlamaIndex's cache_idx would also write into the caller's messages.
        dup.cache_idx = None  # type: ignore[attr-defined]
    return dup
