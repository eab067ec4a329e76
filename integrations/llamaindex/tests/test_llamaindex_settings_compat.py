"""enable()/disable() on Settings, and the SDK versions LlamaIndex's provider LLMs need."""

from __future__ import annotations

import json
from typing import Any

import anthropic
from li_fixtures import AIRLINE_POLICY, anthropic_llm, openai_llm
from llama_index.core import Settings
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import ChatMessage
from llama_index.llms.bedrock_converse import BedrockConverse
from packaging.version import Version
from promptcache_llamaindex import CachingLLM, PromptCacheEventHandler, disable, enable, enabled_handler

from promptcache import PromptCache
from promptcache.lab.emulate import Emulator
from promptcache.stats import recorder_for


def _handlers() -> list[PromptCacheEventHandler]:
    return [h for h in get_dispatcher().event_handlers if isinstance(h, PromptCacheEventHandler)]


def test_enable_is_idempotent_wraps_later_llms_and_disable_restores(
    emu: Emulator, cache: PromptCache
) -> None:
    first = openai_llm(emu)
    Settings.llm = first
    handler = enable(cache)
    assert enable(cache) is handler and _handlers() == [handler]
    assert isinstance(Settings.llm, CachingLLM) and Settings.llm.inner is first
    later = anthropic_llm(emu)
    Settings.llm = later  # assigned after enable(): wrapped too
    assert isinstance(Settings.llm, CachingLLM) and Settings.llm.inner is later
    assert Settings.llm.cache is cache and enabled_handler() is handler
    disable()
    assert Settings.llm is later and _handlers() == []
    Settings.llm = first
    assert Settings.llm is first, "after disable() nothing is wrapped any more"
    disable()  # a second disable is a no-op


def test_enable_leaves_the_settings_object_and_the_users_llm_as_they_are(
    emu: Emulator, cache: PromptCache
) -> None:
    from llama_index.core.settings import _Settings

    llm = openai_llm(emu)
    cls, state = type(llm), dict(llm.__dict__)
    Settings.llm = llm
    enable(cache, tenant="acme")
    assert type(Settings) is _Settings  # no class swap on the settings object
    Settings.llm.chat(
        [ChatMessage(role="system", content=AIRLINE_POLICY), ChatMessage(role="user", content="hi")]
    )
    assert "prompt_cache_key" in emu.requests[-1]
    disable()
    assert type(Settings) is _Settings and Settings.llm is llm
    assert type(llm) is cls and llm.__dict__.keys() == state.keys()
    # LlamaIndex's own Settings.llm getter assigns Settings.callback_manager to the LLM it returns.
    assert all(llm.__dict__[k] is v for k, v in state.items() if k != "callback_manager")


def test_enable_with_another_cache_switches(emu: Emulator, cache: PromptCache) -> None:
    Settings.llm = openai_llm(emu)
    enable(cache)
    other = PromptCache()
    h2 = enable(other)
    assert _handlers() == [h2] and isinstance(Settings.llm, CachingLLM) and Settings.llm.cache is other


def test_anthropic_sdk_pin_runs_llamaindex_end_to_end(emu: Emulator, cache: PromptCache) -> None:
    # llama-index-llms-anthropic 0.12 needs the anthropic 0.x SDK (see pyproject.toml): 1.x dropped
    # ``temperature`` from messages.create and 2.x made MessageParam a Union alias.
    assert Version(anthropic.__version__) < Version("1"), anthropic.__version__
    r = anthropic_llm(emu).chat([ChatMessage(role="user", content="hi")])
    assert r.message.content and emu.paths == ["/v1/messages"]


_CONVERSE_REPLY = {
    "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
    "stopReason": "end_turn",
    "usage": {
        "inputTokens": 12,
        "outputTokens": 2,
        "totalTokens": 2014,
        "cacheReadInputTokens": 2000,
        "cacheWriteInputTokens": 0,
    },
    "metrics": {"latencyMs": 10},
}


def test_bedrock_converse_gets_cache_point_and_usage(cache: PromptCache) -> None:
    # A real boto3 bedrock-runtime client, stubbed (no AWS, no network): botocore validates the
    # rewritten kwargs against the Converse service model before the stub answers.
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    sent: list[dict[str, Any]] = []
    # The serialized body: promptcache's before-call handler (registered first) has rewritten it,
    # and the Stubber (registered on the same general event name, after this) has not answered.
    client.meta.events.register(
        "before-call.*.*", lambda params, **_: sent.append(json.loads(params["body"]))
    )
    stub = Stubber(client)
    stub.add_response("converse", _CONVERSE_REPLY)
    stub.activate()
    inner = BedrockConverse(
        model="anthropic.claude-sonnet-4-5-20250929-v1:0", client=client, region_name="us-east-1"
    )
    llm = CachingLLM(inner, cache)
    r = llm.chat([ChatMessage(role="system", content=AIRLINE_POLICY), ChatMessage(role="user", content="hi")])
    assert any("cachePoint" in block for block in sent[0]["system"]), "a cachePoint closes the system blocks"
    meta = r.additional_kwargs["promptcache"]
    assert meta["format"] == "bedrock-converse" and meta["cache_read_tokens"] == 2000
    assert recorder_for(cache).snapshot().total.cache_read_tokens == 2000
