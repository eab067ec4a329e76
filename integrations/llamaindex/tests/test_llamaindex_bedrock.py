"""CachingLLM around LlamaIndex's real ``BedrockConverse`` LLM (a real boto3 ``bedrock-runtime``
client), its HTTP answered by vcrpy from a bundled real ConverseStream recording: the request is
rewritten through the client's botocore events and the usage read back as the stream is read.

Not covered: ``astream_chat`` without aioboto3, which LlamaIndex runs through
``loop.run_in_executor``; that does not carry context variables, so the call context is not
current where the request is sent and the request goes out unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import vcr
from botocore.config import Config
from llama_index.core.llms import ChatMessage
from llama_index.llms.bedrock_converse import BedrockConverse
from promptcache_llamaindex import CachingLLM

from promptcache import PromptCache
from promptcache.botocore_events import unhook_bedrock_client
from promptcache.lab.bundled import CASSETTES

STREAM = "bedrock_converse_stream__ddtrace__prompt_caching.yaml"
MODEL = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
SYSTEM = "Software architecture guidelines: " + "hello " * 1100


@pytest.fixture
def client() -> Iterator[Any]:
    # Dummy credentials: botocore signs, vcrpy answers; nothing leaves the machine.
    c = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )
    yield c
    unhook_bedrock_client(c)


def _replay() -> Any:
    # LlamaIndex builds its own body: match on method and path, answer with the recording.
    recorder = vcr.VCR(record_mode="none", match_on=["method", "path"])
    return recorder.use_cassette(str(CASSETTES / STREAM))


def _messages() -> list[ChatMessage]:
    return [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content="What is a service")]


def _llm(client: Any, cache: PromptCache) -> CachingLLM:
    inner = BedrockConverse(model=MODEL, client=client, region_name="us-east-1", max_retries=1)
    return CachingLLM(inner, cache, tenant="acme")


def test_stream_chat_rewritten_and_usage_read_back(client: Any, cache: PromptCache) -> None:
    sent: list[bytes] = []
    client.meta.events.register(
        "request-created.bedrock-runtime", lambda request, **_: sent.append(request.body)
    )
    llm = _llm(client, cache)
    with _replay() as cassette:
        metas = []
        for _ in range(2):
            chunks = list(llm.stream_chat(_messages()))
            assert "".join(c.delta or "" for c in chunks)
            metas.append(chunks[-1].additional_kwargs["promptcache"])
        assert cassette.all_played
    assert all(b'"cachePoint"' in body for body in sent), "promptcache placed the breakpoints"
    first, second = metas
    assert first["format"] == second["format"] == "bedrock-converse" and second["prefix_key"]
    assert (first["cache_write_tokens"], second["cache_read_tokens"]) == (1028, 1028)
    assert second["output_tokens"] == 250
