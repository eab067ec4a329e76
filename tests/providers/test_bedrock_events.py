"""boto3 ``bedrock-runtime`` on botocore's event system: a real boto3 client, its HTTP answered
by vcrpy from the bundled real recordings (Converse and ConverseStream, prompt caching on
Claude). ``hook_bedrock_client`` registers promptcache's handlers on the client: inside a call
context the serialized body is rewritten, the usage read back (the stream's ``metadata`` event too),
and a ``ValidationException`` naming ``cachePoint`` is answered by one resend without hints;
outside a call context botocore sends what the caller gave."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import boto3
import botocore.exceptions
import pytest
import vcr
import yaml
from botocore.config import Config
from botocore.eventstream import EventStream

from promptcache import PromptCache
from promptcache.botocore_events import hook_bedrock_client, is_bedrock_client, unhook_bedrock_client
from promptcache.llm_bridge import HINT_REJECTIONS, CallContext, use_call

from ._replay import plain_cassette_path, request_bodies, request_uris

CONVERSE = "bedrock_converse__pydantic_ai__cache_write_and_read.yaml"
STREAM = "bedrock_converse_stream__ddtrace__prompt_caching.yaml"
CACHE_POINT = {"cachePoint": {"type": "default"}}


def _client() -> Any:
    # Dummy credentials: botocore signs the request, vcrpy answers it; nothing leaves the machine.
    # One attempt: the hint resend must not depend on botocore's retry budget.
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def _model_id(uri: str) -> str:
    return unquote(urlparse(uri).path.split("/")[2])


def _params(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Converse wire body as boto3 parameters: blob fields are raw bytes, not base64."""
    params = copy.deepcopy(dict(body))
    for message in params.get("messages", []):
        for block in message.get("content", []):
            source = block.get("document", {}).get("source", {})
            if "bytes" in source:
                source["bytes"] = base64.b64decode(source["bytes"])
    return params


def _without_cache_points(value: Any) -> Any:
    """The caller's request with no cachePoint of its own: promptcache places them."""
    if isinstance(value, list):
        return [_without_cache_points(v) for v in value if not (isinstance(v, dict) and "cachePoint" in v)]
    if isinstance(value, dict):
        return {k: _without_cache_points(v) for k, v in value.items()}
    return value


def _sent_bodies(client: Any) -> list[dict[str, Any]]:
    """The JSON body of every attempt botocore sends (retries included), as serialized."""
    sent: list[dict[str, Any]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append(json.loads(request.body))

    client.meta.events.register("request-created.bedrock-runtime", record)
    return sent


def _recorder() -> vcr.VCR:
    # The rewritten body differs from the recorded one by design: match on method and path.
    return vcr.VCR(record_mode="none", match_on=["method", "path"])


@pytest.fixture
def client() -> Iterator[Any]:
    c = _client()
    assert hook_bedrock_client(c) and is_bedrock_client(c)
    yield c
    unhook_bedrock_client(c)


def _crlf(body: dict[str, Any]) -> dict[str, Any]:
    """The recorded request with its system prompt's line ends written as CRLF."""
    out = copy.deepcopy(body)
    out["system"][0]["text"] = out["system"][0]["text"].replace("\n", "\r\n")
    return out


def test_converse_rewritten_and_read_back_inside_a_call_only(client: Any, tmp_path: Path) -> None:
    uri = request_uris(CONVERSE)[0]
    wire = _crlf(request_bodies(CONVERSE)[0])
    params = _params(wire)  # a document given as raw bytes, as boto3 takes it
    sent = _sent_bodies(client)
    with _recorder().use_cassette(str(plain_cassette_path(CONVERSE, tmp_path))) as cassette:
        client.converse(modelId=_model_id(uri), **params)
        ctx = CallContext(cache=PromptCache(), tenant="acme")
        with use_call(ctx):
            out = client.converse(modelId=_model_id(uri), **params)
        assert cassette.all_played
    outside, inside = sent
    assert outside == wire, "outside a call context: botocore sends what the caller gave"
    # Canonical form (one newline style); the caller's own cachePoints stay where they were.
    assert "\r\n" not in inside["system"][0]["text"] and inside["system"][1] == CACHE_POINT
    assert inside["messages"] == wire["messages"], "the document and the caller's markers as given"
    assert ctx.format_used is not None and ctx.format_used.value == "bedrock-converse"
    assert ctx.model == _model_id(uri) and ctx.plan is not None and ctx.body is None and not ctx.notes
    # The second recorded answer: the prefix written by the first is read back.
    assert out["usage"]["cacheReadInputTokens"] == 1322
    assert ctx.usage is not None and ctx.usage.cache_read_tokens == 1322 and ctx.usage.output_tokens == 5
    assert ctx.usage.model == _model_id(uri)
    assert "\r\n" in params["system"][0]["text"], "the caller's parameters are left as given"


def test_converse_stream_usage_read_from_its_metadata_event(client: Any, tmp_path: Path) -> None:
    uri = request_uris(STREAM)[0]
    wire = _without_cache_points(request_bodies(STREAM)[0])
    sent = _sent_bodies(client)
    with _recorder().use_cassette(str(plain_cassette_path(STREAM, tmp_path))) as cassette:
        plain = client.converse_stream(modelId=_model_id(uri), **_params(wire))
        assert isinstance(plain["stream"], EventStream), "outside a call context: botocore's own stream"
        assert list(plain["stream"])
        ctx = CallContext(cache=PromptCache(), tenant="acme")
        with use_call(ctx):
            out = client.converse_stream(modelId=_model_id(uri), **_params(wire))
        assert ctx.usage is None, "read as the caller iterates, not before"
        events = list(out["stream"])
        assert cassette.all_played
    assert sent[0] == wire and CACHE_POINT in sent[1]["system"]
    assert "metadata" in events[-1] and "contentBlockDelta" in {k for e in events for k in e}
    assert ctx.first_chunk_at is not None and ctx.body is None
    # The second recorded stream reads back the 1028 tokens the first wrote.
    assert ctx.usage is not None and ctx.usage.cache_read_tokens == 1028 and ctx.usage.output_tokens == 250
    assert ctx.usage.model == _model_id(uri)


def _rejecting_first(name: str, tmp_path: Path, message: str) -> Path:
    """``name``'s first interaction, answered once before by a 400 ``ValidationException``.

    The rejection is written here, not recorded: Bedrock's error shape (the ``x-amzn-ErrorType``
    header botocore reads the code from, a JSON ``message``), with a message naming ``cachePoint``
    as a model or region without prompt caching answers. The 200 after it is the recording.
    """
    data = yaml.safe_load(plain_cassette_path(name, tmp_path).read_text(encoding="utf-8"))
    first = data["interactions"][0]
    refusal = {
        "request": copy.deepcopy(first["request"]),
        "response": {
            "status": {"code": 400, "message": "Bad Request"},
            "headers": {
                "Content-Type": ["application/json"],
                "x-amzn-ErrorType": [
                    "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
                ],
            },
            "body": {"string": json.dumps({"message": message})},
        },
    }
    data["interactions"] = [refusal, first]
    out = tmp_path / f"rejecting-{name}"
    out.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return out


NAMES_CACHE_POINT = "Malformed input request: extraneous key [cachePoint] is not permitted, please reformat"


@pytest.mark.parametrize("name", [CONVERSE, STREAM], ids=["converse", "converse_stream"])
def test_a_rejected_cache_point_is_resent_once_without_hints(client: Any, tmp_path: Path, name: str) -> None:
    uri = request_uris(name)[0]
    # Converse: the caller's own cachePoints; ConverseStream: the ones promptcache places.
    recorded = request_bodies(name)[0]
    wire = recorded if name == CONVERSE else _without_cache_points(recorded)
    sent = _sent_bodies(client)
    before = HINT_REJECTIONS["hint_rejected"]
    ctx = CallContext(cache=PromptCache(), tenant="acme")
    with _recorder().use_cassette(str(_rejecting_first(name, tmp_path, NAMES_CACHE_POINT))) as cassette:
        with use_call(ctx):
            call = client.converse_stream if name == STREAM else client.converse
            out = call(modelId=_model_id(uri), **_params(wire))
        if name == STREAM:
            list(out["stream"])
        assert cassette.all_played
    refused, resent = sent
    assert CACHE_POINT in refused["system"] and "cachePoint" not in json.dumps(resent)
    if name == CONVERSE:
        assert refused == wire
    assert resent == _without_cache_points(refused), "the same request, hints stripped"
    assert ctx.hints_off and any("rejected" in n for n in ctx.notes)
    assert HINT_REJECTIONS["hint_rejected"] == before + 1
    assert out["ResponseMetadata"]["RetryAttempts"] == 1
    assert ctx.usage is not None and ctx.usage.output_tokens > 0


def test_another_validation_error_is_raised_not_resent(client: Any, tmp_path: Path) -> None:
    uri = request_uris(CONVERSE)[0]
    wire = request_bodies(CONVERSE)[0]
    sent = _sent_bodies(client)
    cassette_path = _rejecting_first(CONVERSE, tmp_path, "messages.0.content.1.type: Field required")
    with (
        _recorder().use_cassette(str(cassette_path)),
        use_call(CallContext(PromptCache(), "acme")),
        pytest.raises(botocore.exceptions.ClientError, match="ValidationException"),
    ):
        client.converse(modelId=_model_id(uri), **_params(wire))
    assert len(sent) == 1


def test_hooking_is_idempotent_and_unhooking_restores_plain_calls(tmp_path: Path) -> None:
    c = _client()
    assert hook_bedrock_client(c) and hook_bedrock_client(c)
    unhook_bedrock_client(c)
    uri = request_uris(CONVERSE)[0]
    wire = _crlf(request_bodies(CONVERSE)[0])
    sent = _sent_bodies(c)
    ctx = CallContext(cache=PromptCache(), tenant="acme")
    with _recorder().use_cassette(str(plain_cassette_path(CONVERSE, tmp_path))), use_call(ctx):
        c.converse(modelId=_model_id(uri), **_params(wire))
    assert sent == [wire] and ctx.requests == 0 and ctx.usage is None
    assert not hook_bedrock_client(boto3.client("s3", region_name="us-east-1"))
