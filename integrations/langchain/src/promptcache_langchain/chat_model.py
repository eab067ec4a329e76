"""``CachingChatModel``: any LangChain chat model, with promptcache applied to what it sends.

>>> from langchain_openai import ChatOpenAI                     # doctest: +SKIP
>>> model = CachingChatModel(ChatOpenAI(model="gpt-4o"), PromptCache())   # doctest: +SKIP
>>> model.invoke("hi", config={"configurable": {"tenant_id": "acme"}})     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableConfig,
    RunnableParallel,
    RunnableSequence,
    RunnableWithFallbacks,
    ensure_config,
)
from langchain_core.runnables.passthrough import RunnableAssign
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptcache import PromptCache
from promptcache.llm_bridge import new_call_id
from promptcache.tenancy import DEFAULT_TENANT_KEY, tenant_from
from promptcache_langchain._hook import (
    CallContext,
    carries_signature,
    current_call,
    format_override,
    hooked_copy,
)
from promptcache_langchain._observe import finish_call
from promptcache_langchain.tenant import runtime_context

__all__ = ["CachingChatModel"]

# Carries the tenant read from the RunnableConfig in invoke/stream down to _generate/_stream,
# which LangChain calls without the config. A plain string, so LangChain's own response cache
# (keyed by the call's parameters) becomes tenant-scoped too.
_TENANT_KWARG = "promptcache_tenant"


class CachingChatModel(BaseChatModel):
    """Wrap ``inner`` (``ChatOpenAI``, ``ChatAnthropic``, ...) so each request it sends is the one
    ``cache.prepare_request`` makes of it: canonical, static-first, volatile values relocated,
    provider caching hints placed, keyed per tenant.

    Sync, async and streaming calls all go through ``inner``'s own code (its SDK client, retries,
    settings); only the request dict is rewritten. Tools bound with :meth:`bind_tools` are
    formatted by ``inner``. The tenant is read from the call's ``RunnableConfig``
    (``configurable[tenant_key]``, then ``metadata[tenant_key]``), then from the LangGraph
    runtime context of the node it runs in (the core's one order); when the policy requires a
    tenant, a call without one raises ``ValueError`` before anything is sent.

    After a call, ``response_metadata["promptcache"]`` says what was done (prefix key, hints,
    relocated values, why the prefix changed) and what the provider reported (cache reads and
    writes, cost, cost avoided); the call also feeds ``promptcache.stats.recorder_for(cache)``.
    A model whose request cannot be rewritten (no ``_get_request_payload``) is still observed.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    # Not ``cache``: BaseLanguageModel already has a ``cache`` field (LangChain's response cache).
    prompt_cache: PromptCache
    tenant_key: str = Field(default=DEFAULT_TENANT_KEY, description="configurable/metadata key of the tenant")
    wire_format: str | None = Field(
        default=None, description="force a wire format instead of detecting it from the inner model"
    )

    def __init__(self, inner: BaseChatModel, cache: PromptCache, **kwargs: Any) -> None:
        super().__init__(inner=inner, prompt_cache=cache, **kwargs)

    @model_validator(mode="after")
    def _setup(self) -> CachingChatModel:
        format_override(self.wire_format)  # an unknown format fails here, not on the first call
        if self.profile is None and self.inner.profile is not None:
            # create_agent reads the profile to choose a structured-output strategy.
            self.profile = self.inner.profile
        return self

    @property
    def _llm_type(self) -> str:
        return f"promptcache-{self.inner._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"inner": self.inner._identifying_params, "tenant_key": self.tenant_key}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        # The inner model's provider, model name and settings: BaseChatModel's fallback would
        # name the provider "cachingchatmodel", find no model name, and pay a failed attribute
        # lookup (an AttributeError from pydantic) for each of model, model_name, temperature
        # and max_tokens on every call.
        return self.inner._get_ls_params(stop=stop, **kwargs)

    # -- tenant: read from the RunnableConfig at the public entry points ---------------------

    def _with_tenant(self, config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        if _TENANT_KWARG not in kwargs:
            # A tenant in the call's own ``configurable`` is what ensure_config would give too (the
            # call's configurable replaces the parent's): the merged config is only built without one.
            tenant = (
                tenant_from(self.tenant_key, config={"configurable": config.get("configurable")})
                if config
                else None
            )
            if tenant is None:
                tenant = tenant_from(
                    self.tenant_key, config=ensure_config(config), runtime_context=runtime_context()
                )
            # Refuse here, before LangChain starts a run, when the policy requires a tenant.
            kwargs[_TENANT_KWARG] = self.prompt_cache.resolve_tenant(tenant)
        return kwargs

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        """As ``BaseChatModel.invoke``, under the tenant named in ``config``."""
        return super().invoke(input, config, **self._with_tenant(config, kwargs))

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        """As ``BaseChatModel.ainvoke``, under the tenant named in ``config``."""
        return await super().ainvoke(input, config, **self._with_tenant(config, kwargs))

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        """As ``BaseChatModel.stream``, under the tenant named in ``config``."""
        return super().stream(input, config, **self._with_tenant(config, kwargs))

    def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        """As ``BaseChatModel.astream``, under the tenant named in ``config``."""
        return super().astream(input, config, **self._with_tenant(config, kwargs))

    def _context(self, kwargs: dict[str, Any], run_manager: Any) -> CallContext:
        tenant = kwargs.pop(_TENANT_KWARG, None)
        if tenant is None and run_manager is not None:
            # generate()/agenerate() called directly: the run's metadata is all we have.
            tenant = tenant_from(self.tenant_key, metadata=getattr(run_manager, "metadata", None))
        resolved = self.prompt_cache.resolve_tenant(tenant)
        return CallContext(
            cache=self.prompt_cache,
            tenant=resolved,
            # Parsed per call rather than kept in a private attribute: pydantic serves those
            # through its Python-level __getattr__, slower than this.
            format=None if self.wire_format is None else format_override(self.wire_format),
            call_id=self._call_id(run_manager),
        )

    def _target(self) -> BaseChatModel:
        # Per call, not once at construction: a setting changed on ``inner`` since is sent too.
        return hooked_copy(self.inner) or self.inner

    @staticmethod
    def _call_id(run_manager: Any) -> str:
        run_id = getattr(run_manager, "run_id", None)
        return str(run_id) if run_id is not None else new_call_id()

    def _finish(self, result: ChatResult, ctx: CallContext) -> ChatResult:
        call_id = ctx.call_id
        if len(result.generations) == 1 and result.llm_output:
            # What BaseChatModel does right after _generate returns; done here first so the
            # model name and the provider's raw usage are on the message when we read them.
            msg = result.generations[0].message
            msg.response_metadata = {**result.llm_output, **msg.response_metadata}
        for i, gen in enumerate(result.generations):
            finish_call(gen.message, ctx, call_id=call_id if i == 0 else f"{call_id}:{i}")
        return result

    # -- the calls: inner's own code, with the request rewritten by the hooked copy ----------

    @carries_signature  # BaseChatModel reads it on every call
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        ctx = self._context(kwargs, run_manager)
        token = current_call.set(ctx)
        try:
            result = self._target()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        finally:
            current_call.reset(token)
        return self._finish(result, ctx)

    @carries_signature  # BaseChatModel reads it on every call
    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        ctx = self._context(kwargs, run_manager)
        token = current_call.set(ctx)
        try:
            result = await self._target()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        finally:
            current_call.reset(token)
        return self._finish(result, ctx)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        ctx = self._context(kwargs, run_manager)
        it = self._target()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)
        # The request is built on the first step of inner's generator; set the context for
        # that step only, so it is never reset from another step (another Context).
        token = current_call.set(ctx)
        try:
            pending = next(it, None)
        finally:
            current_call.reset(token)
        yield from self._annotated(it, pending, ctx)

    def _annotated(
        self,
        it: Iterator[ChatGenerationChunk],
        pending: ChatGenerationChunk | None,
        ctx: CallContext,
    ) -> Iterator[ChatGenerationChunk]:
        # One chunk of lag, so the last chunk can carry the call's promptcache metadata.
        total: AIMessageChunk | None = None
        for chunk in it:
            if pending is not None:
                total = _add(total, pending)
                yield pending
            pending = chunk
        if pending is not None:
            total = _add(total, pending)
            self._annotate_last(pending, total, ctx)
            yield pending

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        ctx = self._context(kwargs, run_manager)
        it = self._target()._astream(messages, stop=stop, run_manager=run_manager, **kwargs)
        token = current_call.set(ctx)
        try:
            pending: ChatGenerationChunk | None = await anext(it, None)
        finally:
            current_call.reset(token)
        total: AIMessageChunk | None = None
        async for chunk in it:
            if pending is not None:
                total = _add(total, pending)
                yield pending
            pending = chunk
        if pending is not None:
            total = _add(total, pending)
            self._annotate_last(pending, total, ctx)
            yield pending

    def _annotate_last(
        self, last: ChatGenerationChunk, total: AIMessageChunk | None, ctx: CallContext
    ) -> None:
        if total is None:
            return
        # Read the usage from the whole stream (usage arrives in its last events), then put
        # only our metadata on the last chunk: the provider's usage is already in the chunks
        # and must not be counted twice when LangChain adds them up.
        probe = AIMessage(
            content="", usage_metadata=total.usage_metadata, response_metadata=dict(total.response_metadata)
        )
        finish_call(probe, ctx, call_id=ctx.call_id)
        last.message.response_metadata["promptcache"] = probe.response_metadata["promptcache"]

    # -- tools and structured output: inner's own, bound to this wrapper --------------------

    def _rebound(self, runnable: Runnable[Any, Any], what: str) -> Runnable[Any, Any]:
        """``runnable`` (built by ``inner``) with every binding of ``inner`` bound to this wrapper."""
        out, found = _rebind(runnable, self.inner, self)
        if not found:
            raise NotImplementedError(
                f"{type(self.inner).__name__}.{what} returned a {type(runnable).__name__} that does not "
                "call the model through a binding promptcache can follow; call it on the inner model "
                "before wrapping, or wrap its result's model"
            )
        return out

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """``inner.bind_tools`` (each provider's own tool format and ``tool_choice``), sent through
        this wrapper: the request is the unwrapped model's, rewritten by promptcache."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self._rebound(self.inner.bind_tools(tools, **kwargs), "bind_tools")

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """``inner.with_structured_output`` with its model calls sent through this wrapper.

        Every ``method=`` works as on the unwrapped model (OpenAI: ``json_schema`` as a strict
        ``response_format``, ``function_calling``, ``json_mode``; Anthropic: the schema tool forced
        with ``tool_choice={"type": "tool", ...}``, ``json_schema``), and so does its parser: a JSON
        answer is parsed, never ``None``. LangChain's generic fallback (any tool, ``tool_choice``
        ``"any"``/``"required"``) is never used in its place.
        """
        built = self.inner.with_structured_output(schema, include_raw=include_raw, **kwargs)
        return self._rebound(built, "with_structured_output")


def _rebind(
    runnable: Runnable[Any, Any], inner: BaseChatModel, wrapper: BaseChatModel
) -> tuple[Runnable[Any, Any], bool]:
    """``runnable`` with ``inner`` (bound or bare) replaced by ``wrapper``, and whether it was found.

    Follows the containers LangChain's ``bind_tools``/``with_structured_output`` build (sequences,
    maps, assigns, fallbacks, bindings); each is copied with pydantic's ``model_copy``, so its
    settings (bound kwargs, config, names) stay as ``inner`` made them and ``inner``'s result is
    left unchanged.
    """
    if runnable is inner:
        return wrapper, True
    if isinstance(runnable, RunnableBinding):
        if runnable.bound is inner:
            return runnable.model_copy(update={"bound": wrapper}), True
        bound, found = _rebind(runnable.bound, inner, wrapper)
        return (runnable.model_copy(update={"bound": bound}), True) if found else (runnable, False)
    if isinstance(runnable, RunnableSequence):
        steps = [_rebind(s, inner, wrapper) for s in runnable.steps]
        if not any(f for _, f in steps):
            return runnable, False
        new = [s for s, _ in steps]
        update = {"first": new[0], "middle": new[1:-1], "last": new[-1]}
        return runnable.model_copy(update=update), True
    if isinstance(runnable, RunnableParallel):
        items = {k: _rebind(v, inner, wrapper) for k, v in runnable.steps__.items()}
        if not any(f for _, f in items.values()):
            return runnable, False
        return runnable.model_copy(update={"steps__": {k: v for k, (v, _) in items.items()}}), True
    if isinstance(runnable, RunnableAssign):
        mapper, found = _rebind(runnable.mapper, inner, wrapper)
        return (runnable.model_copy(update={"mapper": mapper}), True) if found else (runnable, False)
    if isinstance(runnable, RunnableWithFallbacks):
        first, found = _rebind(runnable.runnable, inner, wrapper)
        rest = [_rebind(f, inner, wrapper) for f in runnable.fallbacks]
        if not (found or any(f for _, f in rest)):
            return runnable, False
        return runnable.model_copy(update={"runnable": first, "fallbacks": [f for f, _ in rest]}), True
    return runnable, False


def _add(total: AIMessageChunk | None, chunk: ChatGenerationChunk) -> AIMessageChunk:
    # Only what usage reading needs: usage_metadata and the metadata (LangChain merges a
    # chunk's generation_info into response_metadata later; the model name arrives there).
    msg = chunk.message
    view = AIMessageChunk(
        content="",
        usage_metadata=getattr(msg, "usage_metadata", None),
        response_metadata={**(chunk.generation_info or {}), **msg.response_metadata},
    )
    return view if total is None else total + view
