"""Real recorded provider traffic, replayed through the official SDKs, read back as CacheUsage.

Each test sends the request bodies recorded in a shared cassette through the provider's own
SDK (anthropic, openai, boto3 bedrock-runtime, google-genai) while vcrpy serves the recorded
responses, then reads the SDK's answer with ``usage_from_response`` / ``usage_from_stream``.
Requests match on method, path and the JSON body, and every recorded interaction must be
played, so a replay that sends the wrong body or skips a call fails.

The expected figures are the ones ``promptcache/lab/data/real/SOURCES.md`` lists for each
recording, written as the provider reported them (``uncached + read + write`` where the
provider's input count leaves cached tokens out).
"""

from __future__ import annotations

import base64
import copy
import inspect
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import anthropic
import boto3
import openai
import pytest
from botocore.config import Config
from botocore.exceptions import HTTPClientError
from google import genai
from google.genai import types as gtypes
from vcr.errors import CannotOverwriteExistingCassetteException

from promptcache.providers.usage import usage_from_response, usage_from_stream
from promptcache.usage import CacheUsage

from ._replay import CASSETTES, cassette_names, replay, request_bodies, request_uris

# The recordings name models the SDKs now flag as deprecated; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def _u(
    provider: str,
    model: str | None,
    *,
    input: int,
    read: int = 0,
    write: int = 0,
    ttl: dict[str, int] | None = None,
    output: int,
    thinking: int = 0,
) -> CacheUsage:
    return CacheUsage(
        provider=provider,
        model=model,
        input_tokens=input,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_tokens_by_ttl=ttl or {},
        output_tokens=output,
        thinking_tokens=thinking,
    )


def _sdk_kwargs(method: Callable[..., Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """Body fields the SDK method names as parameters; newer API fields go in extra_body."""
    params = inspect.signature(method).parameters
    kwargs = {k: v for k, v in body.items() if k in params}
    extra = {k: v for k, v in body.items() if k not in params}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def _anthropic_client() -> anthropic.Anthropic:
    # An explicit timeout: litellm recorded max_tokens=64000, which the SDK otherwise refuses
    # to send without streaming (it estimates a call over 10 minutes).
    return anthropic.Anthropic(api_key="test-key-not-used", max_retries=0, timeout=30.0)


def _openai_client() -> openai.OpenAI:
    return openai.OpenAI(api_key="test-key-not-used", max_retries=0)


def _bedrock_client() -> Any:
    # Dummy credentials: botocore signs the request, vcrpy answers it; nothing leaves the machine.
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )


def _bedrock_model_id(uri: str) -> str:
    # https://bedrock-runtime.../model/<url-quoted model id>/<operation>
    return unquote(urlparse(uri).path.split("/")[2])


def test_every_shared_cassette_has_a_replay_test() -> None:
    assert CASSETTES.is_dir(), f"{CASSETTES} is missing; clone shared/ beside the repository"
    covered = {
        "anthropic__openllmetry__prompt_caching_legacy.yaml",
        "anthropic__openllmetry__prompt_caching_stream_legacy.yaml",
        "anthropic__pydantic_ai__cache_messages_real_api.yaml",
        "anthropic__pydantic_ai__cache_real_api_toplevel_cache_control.yaml",
        "anthropic__ddtrace_litellm__cache_write_1h_ttl.yaml",
        "openai_chat__openllmetry__prompt_caching.yaml",
        "openai_chat__pydantic_ai__prompt_cache_key_e2e.yaml",
        "openai_responses__pydantic_ai__prompt_cache_key_e2e.yaml",
        "openai_responses__ddtrace__cache_write.yaml",
        "openai_responses__ddtrace__cache_read.yaml",
        "openai_chat_stream__ddtrace__cache_read.yaml",
        "bedrock_converse__pydantic_ai__cache_write_and_read.yaml",
        "bedrock_converse_stream__ddtrace__prompt_caching.yaml",
        "bedrock_invoke_anthropic__openllmetry__prompt_cache.yaml",
        "gemini__pydantic_ai__cached_content.yaml",
    }
    assert set(cassette_names()) == covered


# -- Anthropic Messages -----------------------------------------------------------------------


def _anthropic_replay(name: str, tmp_path: Path, *, beta: bool = False) -> list[CacheUsage]:
    client = _anthropic_client()
    create = client.beta.messages.create if beta else client.messages.create
    usages = []
    with replay(name, tmp_path):
        for body in request_bodies(name):
            if body.get("stream"):
                events = [e.to_dict() for e in create(**_sdk_kwargs(create, body))]
                usages.append(usage_from_stream("anthropic-messages", events))
            else:
                message = create(**_sdk_kwargs(create, body))
                usages.append(usage_from_response("anthropic-messages", message.to_dict()))
    return usages


def test_anthropic_legacy_write_then_read(tmp_path: Path) -> None:
    got = _anthropic_replay("anthropic__openllmetry__prompt_caching_legacy.yaml", tmp_path)
    m = "claude-3-5-sonnet-20240620"
    assert got == [
        _u("anthropic", m, input=4 + 0 + 1163, write=1163, output=187),
        _u("anthropic", m, input=4 + 1163 + 0, read=1163, output=202),
    ]


def test_anthropic_legacy_stream_write_then_read(tmp_path: Path) -> None:
    got = _anthropic_replay("anthropic__openllmetry__prompt_caching_stream_legacy.yaml", tmp_path)
    m = "claude-3-5-sonnet-20240620"
    # message_start says output_tokens 1; the final count comes from message_delta.
    assert got == [
        _u("anthropic", m, input=4 + 1165, write=1165, output=201),
        _u("anthropic", m, input=4 + 1165, read=1165, output=221),
    ]


def test_anthropic_multi_turn_5m_ttl(tmp_path: Path) -> None:
    name = "anthropic__pydantic_ai__cache_messages_real_api.yaml"
    assert all("beta=true" in u for u in request_uris(name))
    got = _anthropic_replay(name, tmp_path, beta=True)
    m = "claude-sonnet-4-5-20250929"
    assert got == [
        _u("anthropic", m, input=3 + 1111, write=1111, ttl={"5m": 1111}, output=391),
        _u("anthropic", m, input=3 + 1111 + 403, read=1111, write=403, ttl={"5m": 403}, output=33),
    ]


def test_anthropic_top_level_cache_control(tmp_path: Path) -> None:
    name = "anthropic__pydantic_ai__cache_real_api_toplevel_cache_control.yaml"
    assert request_bodies(name)[0]["cache_control"] == {"ttl": "5m", "type": "ephemeral"}
    got = _anthropic_replay(name, tmp_path, beta=True)
    m = "claude-sonnet-4-5-20250929"
    assert got == [
        _u("anthropic", m, input=3 + 1111, read=1111, output=406),
        _u("anthropic", m, input=3 + 1111 + 418, read=1111, write=418, ttl={"5m": 418}, output=33),
    ]


def test_anthropic_mixed_1h_and_5m_ttl(tmp_path: Path) -> None:
    got = _anthropic_replay("anthropic__ddtrace_litellm__cache_write_1h_ttl.yaml", tmp_path)
    assert got == [
        _u(
            "anthropic",
            "claude-sonnet-4-20250514",
            input=3 + 2070,
            write=2070,
            ttl={"5m": 14, "1h": 2056},
            output=459,
        )
    ]


async def test_anthropic_async_stream(tmp_path: Path) -> None:
    name = "anthropic__openllmetry__prompt_caching_stream_legacy.yaml"
    client = anthropic.AsyncAnthropic(api_key="test-key-not-used", max_retries=0, timeout=30.0)
    got = []
    with replay(name, tmp_path):
        for body in request_bodies(name):
            stream = await client.messages.create(**body)
            got.append(usage_from_stream("anthropic-messages", [e.to_dict() async for e in stream]))
    assert [(u.cache_write_tokens, u.cache_read_tokens, u.output_tokens) for u in got] == [
        (1165, 0, 201),
        (0, 1165, 221),
    ]


async def test_anthropic_async_1h_ttl(tmp_path: Path) -> None:
    name = "anthropic__ddtrace_litellm__cache_write_1h_ttl.yaml"
    client = anthropic.AsyncAnthropic(api_key="test-key-not-used", max_retries=0, timeout=30.0)
    with replay(name, tmp_path):
        (body,) = request_bodies(name)
        message = await client.messages.create(**body)
    usage = usage_from_response("anthropic-messages", message.to_dict())
    assert usage.cache_write_tokens_by_ttl == {"5m": 14, "1h": 2056}
    assert usage.input_tokens == 2073


# -- OpenAI Chat Completions ------------------------------------------------------------------


def _openai_chat_replay(name: str, tmp_path: Path) -> list[CacheUsage]:
    client = _openai_client()
    create = client.chat.completions.create
    usages = []
    with replay(name, tmp_path):
        for body in request_bodies(name):
            if body.get("stream"):
                chunks = [c.to_dict() for c in create(**_sdk_kwargs(create, body))]
                usages.append(usage_from_stream("openai-chat", chunks))
            else:
                completion = create(**_sdk_kwargs(create, body))
                usages.append(usage_from_response("openai-chat", completion.to_dict()))
    return usages


def test_openai_chat_automatic_caching_read_and_later_misses(tmp_path: Path) -> None:
    got = _openai_chat_replay("openai_chat__openllmetry__prompt_caching.yaml", tmp_path)
    assert [(u.input_tokens, u.cache_read_tokens, u.cache_write_tokens) for u in got] == [
        (1149, 0, 0),
        (1149, 1024, 0),
        (1149, 0, 0),
        (1149, 0, 0),
    ]
    assert [u.output_tokens for u in got] == [315, 353, 297, 339]
    assert {u.model for u in got} == {"gpt-4o-mini-2024-07-18"}


def test_openai_chat_explicit_cache_write_tokens(tmp_path: Path) -> None:
    name = "openai_chat__pydantic_ai__prompt_cache_key_e2e.yaml"
    got = _openai_chat_replay(name, tmp_path)
    m = got[0].model
    assert m is not None and m.startswith("gpt-5.6-sol")
    assert got == [
        _u("openai", m, input=4020, write=4012, output=4),
        _u("openai", m, input=4020, read=4012, output=4),
    ]


def test_openai_chat_stream_usage_in_last_chunk(tmp_path: Path) -> None:
    name = "openai_chat_stream__ddtrace__cache_read.yaml"
    assert request_bodies(name)[0]["stream_options"] == {"include_usage": True}
    (got,) = _openai_chat_replay(name, tmp_path)
    assert got.model is not None and got.model.startswith("gpt-4o")
    assert got == _u("openai", got.model, input=1420, read=1280, output=100)


async def test_openai_async_chat_stream(tmp_path: Path) -> None:
    name = "openai_chat_stream__ddtrace__cache_read.yaml"
    client = openai.AsyncOpenAI(api_key="test-key-not-used", max_retries=0)
    with replay(name, tmp_path):
        (body,) = request_bodies(name)
        stream = await client.chat.completions.create(**body)
        chunks = [c.to_dict() async for c in stream]
    assert chunks[-1]["choices"] == []
    usage = usage_from_stream("openai-chat", chunks)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (1420, 1280, 100)


# -- OpenAI Responses -------------------------------------------------------------------------


def _openai_responses_replay(name: str, tmp_path: Path) -> list[CacheUsage]:
    client = _openai_client()
    create = client.responses.create
    usages = []
    with replay(name, tmp_path):
        for body in request_bodies(name):
            response = create(**_sdk_kwargs(create, body))
            usages.append(usage_from_response("openai-responses", response.to_dict()))
    return usages


def test_openai_responses_automatic_write(tmp_path: Path) -> None:
    (got,) = _openai_responses_replay("openai_responses__ddtrace__cache_write.yaml", tmp_path)
    assert got.model is not None and got.model.startswith("gpt-4o")
    assert got == _u("openai", got.model, input=1515, output=14)


def test_openai_responses_automatic_read(tmp_path: Path) -> None:
    (got,) = _openai_responses_replay("openai_responses__ddtrace__cache_read.yaml", tmp_path)
    assert got.model is not None and got.model.startswith("gpt-4o")
    assert got == _u("openai", got.model, input=1515, read=1390, output=8)


def test_openai_responses_explicit_write_then_read(tmp_path: Path) -> None:
    name = "openai_responses__pydantic_ai__prompt_cache_key_e2e.yaml"
    got = _openai_responses_replay(name, tmp_path)
    m = got[0].model
    assert m is not None and m.startswith("gpt-5.6-sol")
    assert got == [
        _u("openai", m, input=4020, write=4012, output=5),
        _u("openai", m, input=4020, read=4012, output=5),
    ]


async def test_openai_async_responses(tmp_path: Path) -> None:
    name = "openai_responses__ddtrace__cache_read.yaml"
    client = openai.AsyncOpenAI(api_key="test-key-not-used", max_retries=0)
    with replay(name, tmp_path):
        (body,) = request_bodies(name)
        response = await client.responses.create(**body)
    usage = usage_from_response("openai-responses", response.to_dict())
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (1515, 1390, 8)


# -- Bedrock ----------------------------------------------------------------------------------


def _converse_params(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Converse wire body as boto3 parameters: blob fields are raw bytes, not base64."""
    params = copy.deepcopy(dict(body))
    for message in params.get("messages", []):
        for block in message.get("content", []):
            source = block.get("document", {}).get("source", {})
            if "bytes" in source:
                source["bytes"] = base64.b64decode(source["bytes"])
    return params


def test_bedrock_converse_write_then_read(tmp_path: Path) -> None:
    name = "bedrock_converse__pydantic_ai__cache_write_and_read.yaml"
    client = _bedrock_client()
    got = []
    with replay(name, tmp_path):
        for uri, body in zip(request_uris(name), request_bodies(name), strict=True):
            model_id = _bedrock_model_id(uri)
            response = client.converse(modelId=model_id, **_converse_params(body))
            got.append(usage_from_response("bedrock-converse", response, model=model_id))
    m = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert got == [
        _u("bedrock", m, input=2 + 0 + 1322, write=1322, output=5),
        _u("bedrock", m, input=2 + 1322 + 0, read=1322, output=5),
    ]


def test_bedrock_converse_stream_metadata_event(tmp_path: Path) -> None:
    name = "bedrock_converse_stream__ddtrace__prompt_caching.yaml"
    client = _bedrock_client()
    got = []
    with replay(name, tmp_path):
        for uri, body in zip(request_uris(name), request_bodies(name), strict=True):
            model_id = _bedrock_model_id(uri)
            response = client.converse_stream(modelId=model_id, **_converse_params(body))
            events = list(response["stream"])
            assert "metadata" in events[-1]
            got.append(usage_from_stream("bedrock-converse", events, model=model_id))
    m = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
    assert got == [
        _u("bedrock", m, input=11 + 0 + 1028, write=1028, output=236),
        _u("bedrock", m, input=12 + 1028 + 0, read=1028, output=250),
    ]


def test_bedrock_invoke_model_anthropic_body(tmp_path: Path) -> None:
    name = "bedrock_invoke_anthropic__openllmetry__prompt_cache.yaml"
    client = _bedrock_client()
    got = []
    with replay(name, tmp_path):
        for uri, body in zip(request_uris(name), request_bodies(name), strict=True):
            model_id = _bedrock_model_id(uri)
            response = client.invoke_model(modelId=model_id, body=json.dumps(body))
            answer = json.loads(response["body"].read())
            # InvokeModel passes Claude's native body through: read it with Anthropic names.
            got.append(usage_from_response("anthropic-messages", answer, provider="bedrock"))
            assert usage_from_response("bedrock-converse", answer) == got[-1]
    m = "claude-3-5-haiku-20241022"
    assert got == [
        _u("bedrock", m, input=4 + 0 + 18131, write=18131, output=50),
        _u("bedrock", m, input=4 + 18131 + 0, read=18131, output=50),
    ]


# -- Gemini -----------------------------------------------------------------------------------


def _wire(obj: Any) -> dict[str, Any]:
    """A google-genai response as its JSON wire shape (camelCase, no unset fields)."""
    dumped = obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert isinstance(dumped, dict)
    return dumped


def test_gemini_explicit_cached_content(tmp_path: Path) -> None:
    name = "gemini__pydantic_ai__cached_content.yaml"
    create_body, first, second, _delete = request_bodies(name)
    client = genai.Client(
        api_key="test-key-not-used",
        # The recording was made against v1beta; newer SDKs default to v1.
        http_options=gtypes.HttpOptions(
            api_version="v1beta", retry_options=gtypes.HttpRetryOptions(attempts=1)
        ),
    )
    with replay(name, tmp_path):
        cache = client.caches.create(
            model=create_body["model"],
            config=gtypes.CreateCachedContentConfig.model_validate(
                {k: v for k, v in create_body.items() if k != "model"}
            ),
        )
        assert cache.name == first["cachedContent"]
        created = usage_from_response("gemini", _wire(cache))
        answers = []
        for body in (first, second):
            config = gtypes.GenerateContentConfig.model_validate(
                {"cachedContent": body["cachedContent"], **body["generationConfig"]}
            )
            response = client.models.generate_content(
                model="gemini-2.5-flash", contents=body["contents"], config=config
            )
            answers.append(usage_from_response("gemini", _wire(response)))
        client.caches.delete(name=first["cachedContent"])
    assert created == _u("gemini", "gemini-2.5-flash", input=3512, write=3512, output=0)
    # promptTokenCount 3520 includes the 3512 cached; thoughts are billed output.
    assert answers == [
        _u("gemini", "gemini-2.5-flash", input=3520, read=3512, output=2 + 42, thinking=42),
        _u("gemini", "gemini-2.5-flash", input=3520, read=3512, output=2 + 51, thinking=51),
    ]


def test_replay_refuses_a_request_that_differs_from_the_recording(tmp_path: Path) -> None:
    """The body matcher is live: a changed body gets no recorded answer, so tests can fail."""
    name = "anthropic__ddtrace_litellm__cache_write_1h_ttl.yaml"
    (body,) = request_bodies(name)
    changed = dict(body, max_tokens=body["max_tokens"] - 1)
    client = _anthropic_client()
    with (
        replay(name, tmp_path, require_all_played=False),
        pytest.raises(anthropic.APIConnectionError) as caught,
    ):
        client.messages.create(**changed)
    assert isinstance(caught.value.__cause__, CannotOverwriteExistingCassetteException)


def test_replay_refuses_a_bedrock_request_with_another_prompt(tmp_path: Path) -> None:
    name = "bedrock_converse_stream__ddtrace__prompt_caching.yaml"
    uri, _ = request_uris(name)
    body = _converse_params(request_bodies(name)[0])
    body["messages"][0]["content"][0]["text"] = "What is a monolith"
    with (
        replay(name, tmp_path, require_all_played=False),
        # botocore wraps transport errors in HTTPClientError, keeping vcrpy's message.
        pytest.raises(HTTPClientError, match="no recorded interaction matches"),
    ):
        _bedrock_client().converse_stream(modelId=_bedrock_model_id(uri), **body)
