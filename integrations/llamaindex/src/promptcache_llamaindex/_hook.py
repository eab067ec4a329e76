"""Make a LlamaIndex LLM send what ``PromptCache.prepare_request`` makes of its requests.

LlamaIndex's provider LLMs build the request in several methods (``chat``, ``stream_chat``,
``_prepare_chat_with_tools`` ...) but all send it through one SDK client. :func:`hooked_copy`
returns a copy of the user's LLM whose SDK clients send through the core's HTTP seam
(:mod:`promptcache.transport`):

* ``OpenAI``/``OpenAIResponses`` build their SDK client from their ``http_client`` and
  ``async_http_client`` settings (once, or per call without ``reuse_client``): the copy gets
  :func:`~promptcache.transport.wrap_http_client` clients around the user's (or a default one);
* an SDK client the LLM already holds (``Anthropic``'s, or an ``OpenAI`` given ``openai_client=``)
  is replaced on the copy by ``client.with_options(http_client=...)``, the SDK's own way to
  change its HTTP client;
* ``GoogleGenAI``'s ``google.genai.Client`` is replaced on the copy by
  :func:`~promptcache.transport.wrap_genai_client`: a client made with the SDK's own
  ``HttpOptions(httpx_client=...)`` over the same seam, which also moves the static prefix into
  an explicit cached content when ``gemini_caches`` is given;
* ``BedrockConverse``'s boto3 ``bedrock-runtime`` client does not send through ``httpx``: it stays
  the same client, with promptcache's handlers registered on botocore's own event system
  (:func:`~promptcache.botocore_events.hook_bedrock_client`; they act only inside a call
  context);
* anthropic's Bedrock and Vertex clients (``AnthropicBedrock`` signs its body before ``httpx``
  sees it, ``AnthropicVertex`` moves the model into the URL) are replaced on the copy by
  :func:`~promptcache.anthropic_middleware.hook_anthropic_client`: the SDK's own ``copy`` with
  promptcache's client middleware, which rewrites the request before the client signs it.

The user's LLM object, its class, its clients and its ``httpx`` clients stay untouched (a boto3
client only carries the registered handlers): nothing here assigns to them, and no class is
swapped.
"""

from __future__ import annotations

from typing import Any

import httpx
from llama_index.core.llms import LLM

from promptcache.botocore_events import hook_bedrock_client
from promptcache.providers.gemini_cache import GeminiCacheManager
from promptcache.transport import is_genai_client, wrap_genai_client, wrap_http_client

__all__ = ["hooked_copy"]

_CLIENT_ATTRS = ("_client", "_aclient", "_async_client")


def _through_middleware(client: Any) -> Any | None:
    """``client`` with promptcache's anthropic middleware when it is an anthropic Bedrock or
    Vertex client, else None."""
    if type(client).__module__.split(".")[0] != "anthropic":
        return None
    # Imported here: it imports the anthropic SDK, an optional dependency of this package.
    from promptcache.anthropic_middleware import hook_anthropic_client, is_platform_client

    return hook_anthropic_client(client) if is_platform_client(client) else None


def _through_transport(client: Any) -> Any | None:
    """``client`` re-made over the promptcache transport, or None when it does not send
    through ``httpx``."""
    if type(client).__module__.split(".")[0] not in ("openai", "anthropic"):
        return None
    # The SDKs keep their httpx client as ``_client``; ``with_options`` is their public copy.
    http = getattr(client, "_client", None)
    if not isinstance(http, httpx.Client | httpx.AsyncClient) or not callable(
        getattr(client, "with_options", None)
    ):
        return None
    return client.with_options(http_client=wrap_http_client(http))


def hooked_copy(llm: LLM, *, gemini_caches: GeminiCacheManager | None = None) -> LLM:
    """A copy of ``llm`` whose SDK requests promptcache rewrites inside a call context.

    An LLM whose client is not an ``openai``/``anthropic``/``bedrock-runtime``/``google.genai``
    SDK client is copied unchanged (its calls go out as built, and are still observed).
    ``gemini_caches`` moves a ``GoogleGenAI`` request's static prefix into a cached content.
    """
    dup = llm.model_copy()
    private: dict[str, Any] = getattr(dup, "__pydantic_private__", None) or {}
    if "_http_client" in private:
        # The OpenAI family builds its SDK clients from these (lazily, or on every call).
        dup._http_client = wrap_http_client(private["_http_client"])  # type: ignore[attr-defined]
        dup._async_http_client = wrap_http_client(  # type: ignore[attr-defined]
            private.get("_async_http_client"), asynchronous=True
        )
    for attr in _CLIENT_ATTRS:
        client = private.get(attr)
        if client is None:
            continue
        if is_genai_client(client):
            hooked = wrap_genai_client(client, gemini_caches=gemini_caches) or client
        elif hook_bedrock_client(client):
            continue  # the same client: its events carry the hook
        else:
            hooked = _through_middleware(client) or _through_transport(client) or client
        setattr(dup, attr, hooked)
    if getattr(dup, "cache_idx", None) is not None:
        # promptcache places the breakpoints itself (system prompt included, any model id, at most
        # the provider's limit); LlamaIndex's cache_idx would also write into the caller's messages.
        dup.cache_idx = None  # type: ignore[attr-defined]
    return dup
