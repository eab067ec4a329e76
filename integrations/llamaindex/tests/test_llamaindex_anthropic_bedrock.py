"""CachingLLM around LlamaIndex's real ``Anthropic`` LLM on Amazon Bedrock (its own
``AnthropicBedrock`` clients, SigV4-signed with dummy credentials), over loopback to the provider
emulator: the request is rewritten through the anthropic SDK's client middleware before the
client signs it, and the usage comes back, streamed too, sync and async."""

from __future__ import annotations

import anthropic
import pytest
from li_fixtures import AIRLINE_POLICY
from llama_index.core.llms import ChatMessage
from llama_index.llms.anthropic import Anthropic
from promptcache_llamaindex import CachingLLM

from promptcache import PromptCache
from promptcache.lab.emulate import Emulator

MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"


def _messages() -> list[ChatMessage]:
    return [
        ChatMessage(role="system", content=AIRLINE_POLICY),
        ChatMessage(role="user", content="What is the baggage allowance for gold members?"),
    ]


async def test_anthropic_on_bedrock_through_the_sdk_middleware(monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator() as emu:
        # AnthropicBedrock reads its endpoint from here when LlamaIndex passes none.
        monkeypatch.setenv("ANTHROPIC_BEDROCK_BASE_URL", emu.base_url)
        inner = Anthropic(
            model=MODEL,
            aws_region="us-east-1",
            aws_access_key_id="AKIDPROMPTCACHE",
            aws_secret_access_key="not-a-secret",
            max_retries=0,
        )
        llm = CachingLLM(inner, PromptCache())
        first = llm.chat(_messages())
        chunks = list(llm.stream_chat(_messages()))
        gen = await llm.astream_chat(_messages())
        last = [c async for c in gen][-1]
    assert emu.paths == [
        f"/model/{MODEL}/invoke",
        f"/model/{MODEL}/invoke-with-response-stream",
        f"/model/{MODEL}/invoke-with-response-stream",
    ]
    for body in emu.requests:
        assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first.additional_kwargs["promptcache"]["cache_write_tokens"] > 1000
    for chunk in (chunks[-1], last):
        assert chunk.additional_kwargs["promptcache"]["cache_read_tokens"] > 1000
    # The user's LLM keeps its own clients, with no middleware added.
    assert isinstance(inner._client, anthropic.AnthropicBedrock) and inner._client.middleware == ()
