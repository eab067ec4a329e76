"""``PromptCacheMiddleware._finish``: the one-answer shortcut gives the update the general loop gives."""

from __future__ import annotations

from typing import Any

from langchain.agents.middleware import ModelResponse
from langchain_core.messages import AIMessage, ToolMessage
from promptcache_langchain import PromptCacheMiddleware
from promptcache_langchain._hook import CallContext

from promptcache import PromptCache, WireFormat
from promptcache.metrics import CacheMetrics

_USAGE = {
    "prompt_tokens": 16_000,
    "completion_tokens": 2,
    "total_tokens": 16_002,
    "prompt_tokens_details": {"cached_tokens": 15_872},
}


def _answer() -> AIMessage:
    return AIMessage(content="Done.", response_metadata={"model_name": "gpt-4o", "token_usage": dict(_USAGE)})


def _update(mw: PromptCacheMiddleware, result: list[Any], call_id: str) -> CacheMetrics | None:
    ctx = CallContext(cache=mw.cache, tenant="acme", call_id=call_id)
    ctx.format_used = WireFormat.OPENAI_CHAT
    out = mw._finish(ModelResponse(result=result), ctx)
    if out.command is None:
        return None
    update = out.command.update
    assert isinstance(update, dict) and set(update) == {"cache_metrics"}
    metrics = update["cache_metrics"]
    assert type(metrics) is CacheMetrics
    return metrics


def test_one_answer_update_is_the_general_one() -> None:
    mw = PromptCacheMiddleware(PromptCache())
    one = _update(mw, [_answer()], "run-1")
    # The general loop (more than one message), its AI answer first: the same record under the same id.
    general = _update(mw, [_answer(), ToolMessage(content="x", tool_call_id="t")], "run-1")
    assert one is not None and general is not None
    assert dict(one) == dict(general)
    assert one.records == general.records
    assert one.summary() == general.summary()
    assert one.records["run-1"].cache_read_tokens == 15_872 and one.records["run-1"].priced


def test_one_answer_without_usage_or_not_an_answer_updates_nothing() -> None:
    mw = PromptCacheMiddleware(PromptCache())
    assert _update(mw, [AIMessage(content="no usage")], "run-2") is None
    assert _update(mw, [ToolMessage(content="x", tool_call_id="t")], "run-3") is None


def test_hooks_carry_the_signature_langsmith_asks_for_on_every_call() -> None:
    import inspect
    import types

    from promptcache_langchain import PromptCacheModelMiddleware

    for cls, name in [
        (PromptCacheModelMiddleware, "wrap_model_call"),
        (PromptCacheModelMiddleware, "awrap_model_call"),
        (PromptCacheMiddleware, "wrap_tool_call"),
        (PromptCacheMiddleware, "awrap_tool_call"),
    ]:
        fn = getattr(cls, name)
        bare = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
        bare.__kwdefaults__, bare.__annotations__ = fn.__kwdefaults__, fn.__annotations__
        # The very signature inspect would compute, carried so it is not computed per call.
        assert fn.__dict__.get("__signature__") == inspect.signature(bare), name
        bound = getattr(PromptCacheMiddleware(PromptCache()), name)
        assert "run_tree" not in inspect.signature(bound).parameters
        assert list(inspect.signature(bound).parameters) == ["request", "handler"]
