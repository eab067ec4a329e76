"""``CachingLLM``: any LlamaIndex LLM, with promptcache applied to the requests it sends.

>>> from llama_index.llms.anthropic import Anthropic              # doctest: +SKIP
>>> llm = CachingLLM(Anthropic(model="claude-sonnet-4-5"), PromptCache())  # doctest: +SKIP
>>> with instrument_tags({"tenant_id": "acme"}):                 # doctest: +SKIP
...     llm.chat([ChatMessage(role="system", content=POLICY), ChatMessage(role="user", content="hi")])
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from typing import Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms import LLM
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.tools import BaseTool
from llama_index_instrumentation import get_dispatcher
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from promptcache import PromptCache
from promptcache.formats import parse_format
from promptcache.llm_bridge import CallContext, plan_summary, record_call, use_call
from promptcache.providers.gemini_cache import GeminiCacheManager
from promptcache_llamaindex._hook import hooked_copy
from promptcache_llamaindex._tenant import DEFAULT_TENANT_KEY, resolve_tenant
from promptcache_llamaindex._usage import usage_from_raw
from promptcache_llamaindex.events import CacheUsageEvent

__all__ = ["METADATA_KEY", "CachingLLM"]

METADATA_KEY = "promptcache"
"""The ``additional_kwargs`` key of a response under which promptcache describes the call."""

dispatcher = get_dispatcher(__name__)

Resp = ChatResponse | CompletionResponse
Model = TypeVar("Model", bound=BaseModel)


def _copy_messages(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    # LlamaIndex provider code writes into messages (Anthropic's cache_idx sets
    # additional_kwargs["cache_control"]); the caller's objects must never change.
    return [
        m.model_copy(update={"additional_kwargs": dict(m.additional_kwargs), "blocks": list(m.blocks)})
        for m in messages
    ]


class CachingLLM(FunctionCallingLLM):
    """Wrap ``inner`` (``OpenAI``, ``OpenAIResponses``, ``Anthropic``, ``BedrockConverse``,
    ``GoogleGenAI`` ...) so each request it sends is the one ``cache.prepare_request`` makes of
    it: canonical, static first, volatile values (clock lines, ids) relocated after the cached
    prefix, provider caching hints placed (Anthropic ``cache_control`` on the system prompt and
    tools, OpenAI ``prompt_cache_key``, Bedrock ``cachePoint``; Gemini relies on implicit prefix
    caching, or on an explicit cached content when ``gemini_caches`` is given), keyed per tenant.

    Every call goes through ``inner``'s own code (its SDK client, retries, tool formatting,
    structured-output requests); only the SDK request is rewritten, on a private copy of
    ``inner``. Closed LlamaIndex gaps: the
    Anthropic system prompt keeps a breakpoint, model ids missing from LlamaIndex's hard-coded
    caching list are still cached, the caller's messages and chat history are never mutated, and
    streamed answers report cache reads and writes too.

    The tenant comes from the instrumentation tag ``tenant_key`` (default ``tenant_id``), then
    ``tenant``, then the policy default (a policy that requires a tenant refuses the call before
    anything is sent). After a call, ``response.additional_kwargs["promptcache"]`` describes it,
    the usage is in ``promptcache.stats.recorder_for(cache)``, and a :class:`CacheUsageEvent` is
    dispatched.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: LLM = Field(description="the wrapped LlamaIndex LLM (left untouched)")
    tenant: str | None = Field(default=None, description="tenant when no instrumentation tag names one")
    tenant_key: str = Field(default=DEFAULT_TENANT_KEY, description="instrumentation tag of the tenant")
    wire_format: str | None = Field(
        default=None, description="force a wire format instead of the one the SDK method implies"
    )

    _cache: PromptCache = PrivateAttr()
    _hooked: LLM = PrivateAttr()

    def __init__(
        self,
        inner: LLM,
        cache: PromptCache,
        *,
        gemini_caches: GeminiCacheManager | None = None,
        **kwargs: Any,
    ) -> None:
        """Wrap ``inner`` with ``cache``; ``tenant``, ``tenant_key``, ``wire_format`` are optional.

        ``gemini_caches`` (``cache.gemini_caches(GenAIClientTransport(client))``) makes a
        ``GoogleGenAI`` inner LLM send its static prefix as an explicit cached content.
        """
        if isinstance(inner, CachingLLM):
            inner = inner.inner
        # The prompt helpers live on the LLM that LlamaIndex's predict()/stream() paths call:
        # carry the inner LLM's over so wrapping changes nothing about how prompts are built.
        for name in (
            "system_prompt",
            "messages_to_prompt",
            "completion_to_prompt",
            "output_parser",
            "pydantic_program_mode",
            "callback_manager",
        ):
            kwargs.setdefault(name, getattr(inner, name, None))
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        super().__init__(inner=inner, **kwargs)
        self._cache = cache
        self._hooked = hooked_copy(inner, gemini_caches=gemini_caches)

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "PromptCacheCachingLLM"

    @property
    def cache(self) -> PromptCache:
        """The ``PromptCache`` this LLM applies."""
        return self._cache

    @property
    def metadata(self) -> LLMMetadata:
        """The wrapped LLM's metadata (context window, function calling, model name)."""
        return self.inner.metadata

    # -- one call ---------------------------------------------------------------------------

    def _context(self) -> CallContext:
        fmt = parse_format(self.wire_format) if self.wire_format else None
        tenant = resolve_tenant(self._cache, self.tenant, self.tenant_key)
        return CallContext(cache=self._cache, tenant=tenant, format=fmt)

    def _finish(self, ctx: CallContext, response: Any) -> None:
        # Structured predictions answer with the caller's pydantic model: nothing to annotate.
        if not isinstance(response, ChatResponse | CompletionResponse):
            response = None
        if ctx.usage is None and ctx.requests == 0 and response is not None:
            # The inner LLM's client is on none of the seams: read what its answer carries.
            ctx.usage = usage_from_raw(response.raw, model=getattr(self.inner, "model", None))
            ctx.notes.append("request not rewritten: the LLM's client is on none of promptcache's SDK seams")
        record_call(ctx)
        summary = plan_summary(ctx)
        if response is not None:
            response.additional_kwargs[METADATA_KEY] = summary
        dispatcher.event(
            CacheUsageEvent(
                cache_id=str(id(self._cache)),
                call_id=ctx.call_id,
                tenant=ctx.tenant,
                usage=ctx.usage.model_dump() if ctx.usage is not None else None,
                summary=summary,
            )
        )

    def _run(self, fn: Callable[[], Any]) -> Any:
        ctx = self._context()
        with use_call(ctx):
            out = fn()
        self._finish(ctx, out)
        return out

    async def _arun(self, fn: Callable[[], Any]) -> Any:
        ctx = self._context()
        with use_call(ctx):
            out = await fn()
        self._finish(ctx, out)
        return out

    def _stream(self, make: Callable[[], Generator[Any, None, None]]) -> Generator[Any, None, None]:
        ctx = self._context()
        with use_call(ctx):
            gen = make()
        return self._relay(ctx, gen)

    def _relay(self, ctx: CallContext, gen: Generator[Any, None, None]) -> Generator[Any, None, None]:
        # The call context is set around each step only (never across our own yields): OpenAI's
        # LlamaIndex LLM makes its SDK call lazily, inside the first step. One chunk is held back
        # so the last one can carry the call's figures, read once the provider stream has ended.
        held: Any = None
        try:
            while True:
                with use_call(ctx):
                    try:
                        item = next(gen)
                    except StopIteration:
                        break
                if held is not None:
                    yield held
                held = item
        finally:
            gen.close()
        self._finish(ctx, held)
        if held is not None:
            yield held

    async def _astream(self, make: Callable[[], Any]) -> AsyncGenerator[Any, None]:
        ctx = self._context()
        with use_call(ctx):
            agen = await make()
        return self._arelay(ctx, agen)

    async def _arelay(self, ctx: CallContext, agen: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
        held: Any = None
        try:
            while True:
                with use_call(ctx):
                    try:
                        item = await anext(agen)
                    except StopAsyncIteration:
                        break
                if held is not None:
                    yield held
                held = item
        finally:
            await agen.aclose()
        self._finish(ctx, held)
        if held is not None:
            yield held

    # -- the LLM interface ------------------------------------------------------------------

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Chat through the wrapped LLM; the SDK request is rewritten by promptcache."""
        msgs = _copy_messages(messages)
        out: ChatResponse = self._run(lambda: self._hooked.chat(msgs, **kwargs))
        return out

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete through the wrapped LLM; the SDK request is rewritten by promptcache."""
        out: CompletionResponse = self._run(
            lambda: self._hooked.complete(prompt, formatted=formatted, **kwargs)
        )
        return out

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream a chat; the last chunk carries the call's figures (cache reads and writes)."""
        msgs = _copy_messages(messages)
        return self._stream(lambda: self._hooked.stream_chat(msgs, **kwargs))

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Stream a completion; the last chunk carries the call's figures."""
        return self._stream(lambda: self._hooked.stream_complete(prompt, formatted=formatted, **kwargs))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """The asyncio twin of :meth:`chat`."""
        msgs = _copy_messages(messages)
        out: ChatResponse = await self._arun(lambda: self._hooked.achat(msgs, **kwargs))
        return out

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """The asyncio twin of :meth:`complete`."""
        out: CompletionResponse = await self._arun(
            lambda: self._hooked.acomplete(prompt, formatted=formatted, **kwargs)
        )
        return out

    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """The asyncio twin of :meth:`stream_chat`."""
        msgs = _copy_messages(messages)
        return await self._astream(lambda: self._hooked.astream_chat(msgs, **kwargs))

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """The asyncio twin of :meth:`stream_complete`."""
        return await self._astream(
            lambda: self._hooked.astream_complete(prompt, formatted=formatted, **kwargs)
        )

    # -- tool calling (chat_with_tools, predict_and_call, agents) ------------------------------

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The wrapped LLM's tool formatting, on a copy of ``chat_history``.

        LlamaIndex's OpenAI LLM appends ``user_msg`` to the list it is given; the caller's
        history must not grow behind its back.
        """
        if not isinstance(self._hooked, FunctionCallingLLM):
            raise TypeError(f"{type(self.inner).__name__} does not support tool calling")
        history = list(chat_history) if chat_history is not None else None
        out: dict[str, Any] = self._hooked._prepare_chat_with_tools(
            tools,
            user_msg=user_msg,
            chat_history=history,
            verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls,
            tool_required=tool_required,
            **kwargs,
        )
        return out

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """The wrapped LLM's validation (e.g. forcing a single tool call)."""
        if isinstance(self._hooked, FunctionCallingLLM):
            return self._hooked._validate_chat_with_tools_response(
                response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls, **kwargs
            )
        return response

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[Any]:
        """The wrapped LLM's tool-call parsing."""
        if not isinstance(self._hooked, FunctionCallingLLM):
            raise TypeError(f"{type(self.inner).__name__} does not support tool calling")
        calls: list[Any] = self._hooked.get_tool_calls_from_response(
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs
        )
        return calls

    # -- structured outputs (structured_predict, as_structured_llm, programs) -------------------
    #
    # LLM's own structured_predict builds a program around ``self``, which would replace the
    # wrapped LLM's structured-output request (OpenAI ``response_format``, OpenAIResponses and
    # Anthropic ``parse`` with a schema, Gemini ``responseSchema``) by generic tool calling. Each
    # of these runs the wrapped LLM's own method instead, as one call under promptcache.

    def structured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """The wrapped LLM's structured prediction; its SDK request is rewritten and recorded."""
        out: Model = self._run(
            lambda: self._hooked.structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)
        )
        return out

    async def astructured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """The asyncio twin of :meth:`structured_predict`."""
        out: Model = await self._arun(
            lambda: self._hooked.astructured_predict(output_cls, prompt, llm_kwargs, **prompt_args)
        )
        return out

    def stream_structured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Generator[Any, None, None]:
        """The wrapped LLM's streamed structured prediction (partial objects, then the last)."""
        return self._stream(
            lambda: self._hooked.stream_structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)
        )

    async def astream_structured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> AsyncGenerator[Any, None]:
        """The asyncio twin of :meth:`stream_structured_predict`."""
        return await self._astream(
            lambda: self._hooked.astream_structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)
        )
