"""A real ChatOpenAI on the Responses API (gpt-5.6-sol) under CachingChatModel with
``PromptCache(cache_diagnostics=True)`` (issue 23, OpenAI miss diagnostics): every later request
names the previous answer in ``prompt_cache_options.comparison_response_id``, invoked and streamed,
and the provider's verdict on a grown tool set reaches the response metadata. The tau-bench
airline policy and tools, over HTTP to the emulator."""

from __future__ import annotations

from typing import Any

import fixtures_lc as shared
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from promptcache_langchain import CachingChatModel

from promptcache import PromptCache

airline_policy, airline_tools, emulator = shared.airline_policy, shared.airline_tools, shared.emulator
CONFIG: dict[str, Any] = {"configurable": {"tenant_id": "acme"}}


def _run(
    emu: Any, policy: str, tools: list[dict[str, Any]], cache: PromptCache, *, stream: bool
) -> list[dict[str, Any]]:
    """Three turns of one conversation; the tool set grows by one at the second turn."""
    inner = ChatOpenAI(
        model="gpt-5.6-sol",
        api_key="k",
        base_url=emu.openai_base_url,
        max_retries=0,
        use_responses_api=True,
        stream_usage=True,
    )
    model = CachingChatModel(inner, cache)
    history: list[BaseMessage] = [SystemMessage(policy), HumanMessage("I want to change my flight")]
    metas = []
    for n_tools in (5, 6, 6):
        bound = model.bind_tools(tools[:n_tools])
        if stream:
            chunks = list(bound.stream(history, config=CONFIG))
            meta = next(
                c.response_metadata["promptcache"] for c in chunks if "promptcache" in c.response_metadata
            )
        else:
            meta = bound.invoke(history, config=CONFIG).response_metadata["promptcache"]
        metas.append(meta)
        history = [*history, AIMessage("Which reservation?"), HumanMessage("ZFA04Y")]
    return metas


def _comparison(body: dict[str, Any]) -> Any:
    opts = body.get("prompt_cache_options")
    return opts.get("comparison_response_id") if isinstance(opts, dict) else None


def test_diagnostics_chain_a_responses_conversation_and_name_the_miss(
    emulator: Any, airline_policy: str, airline_tools: list[dict[str, Any]]
) -> None:
    for stream in (False, True):
        emulator.reset()
        metas = _run(
            emulator, airline_policy, airline_tools, PromptCache(cache_diagnostics=True), stream=stream
        )
        sent = emulator.requests
        assert [p.endswith("/responses") for p in emulator.paths] == [True] * 3
        assert _comparison(sent[0]) is None
        assert _comparison(sent[1]) == "resp_emu000001" and _comparison(sent[2]) == "resp_emu000002"
        # The grown tool set changes promptcache's routing key, the provider's first classified
        # cause; the third turn only appends, a hit.
        assert metas[1]["provider_miss_reason"] == "prompt_cache_key_changed"
        assert "provider: prompt_cache_key_changed" in metas[1]["explain"]
        assert "provider_miss_reason" not in metas[2] and metas[2]["cache_read_tokens"] > 0
    emulator.reset()
    _run(emulator, airline_policy, airline_tools, PromptCache(), stream=False)
    assert [_comparison(b) for b in emulator.requests] == [None] * 3  # off by default
