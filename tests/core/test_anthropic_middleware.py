"""anthropic's platform clients on the SDK's own middleware: real ``AnthropicBedrock`` /
``AnthropicVertex`` clients (sync and async) over the emulator, through
``hook_anthropic_client``. Inside a call context the body is rewritten before the client signs
it (the SigV4 signature, recomputed here with botocore and the same dummy credentials, covers the
rewritten bytes), the usage is read back from plain and streamed answers, and a 400 naming a hint
is answered by one resend without hints; outside a call context the request goes out as built."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pydantic import BaseModel

from promptcache import PromptCache
from promptcache.anthropic_middleware import PromptCacheMiddleware, hook_anthropic_client, is_platform_client
from promptcache.lab.emulate import Emulator
from promptcache.llm_bridge import HINT_REJECTIONS, CallContext, use_call

SYSTEM = "You are a support agent for an airline. Follow the policy below.\n" + "Rule: be kind. " * 800
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
# Dummy credentials: the emulator answers, nothing leaves the machine.
KEY, SECRET, REGION = "AKIDPROMPTCACHE", "not-a-secret", "us-east-1"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


def _bedrock(base_url: str, *, use_async: bool = False, **kw: Any) -> Any:
    cls = anthropic.AsyncAnthropicBedrock if use_async else anthropic.AnthropicBedrock
    return cls(
        aws_access_key=KEY,
        aws_secret_key=SECRET,
        aws_region=REGION,
        base_url=base_url,
        max_retries=0,
        **kw,
    )


def _args(**kw: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 16,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": "hello"}],
        **kw,
    }


def _signature_holds(request: httpx.Request, body: bytes) -> bool:
    """Whether the request's SigV4 signature is the one botocore computes over ``body``."""
    auth = request.headers["authorization"]
    signed = re.search(r"SignedHeaders=([^,]+)", auth)
    given = re.search(r"Signature=([0-9a-f]+)", auth)
    assert signed is not None and given is not None
    headers = {h: request.headers[h] for h in signed.group(1).split(";")}
    aws = AWSRequest(method=request.method, url=str(request.url), headers=headers, data=body)
    aws.context["timestamp"] = request.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(KEY, SECRET), "bedrock", REGION)
    expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
    return hmac.compare_digest(expected, given.group(1))


def test_rewritten_inside_a_call_only_and_signed_over_what_is_sent(emu: Emulator) -> None:
    sent: list[httpx.Request] = []
    # What the client hands to httpx, after signing: an httpx event hook of the caller's own client.
    user_http = httpx.Client(event_hooks={"request": [sent.append]})
    client = _bedrock(emu.base_url, http_client=user_http)
    hooked = hook_anthropic_client(client)
    assert hooked is not client and client.middleware == ()
    assert hooked._client is user_http, "the caller's httpx client (pool, proxies) is kept"
    assert hook_anthropic_client(hooked) is hooked and is_platform_client(hooked)

    hooked.messages.create(**_args())
    assert "cache_control" not in json.dumps(emu.requests[-1]), "outside a call context: as built"
    ctx = CallContext(cache=PromptCache(), tenant="acme")
    with use_call(ctx):
        hooked.messages.create(**_args())
    assert emu.paths[-1] == f"/model/{MODEL}/invoke"
    assert "cache_control" in json.dumps(emu.requests[-1])
    assert ctx.plan is not None and ctx.usage is not None and ctx.usage.cache_write_tokens > 0

    request = sent[-1]
    assert json.loads(request.content) == emu.requests[-1]
    assert _signature_holds(request, request.content), "signed over the rewritten body"
    unchanged = json.dumps(json.loads(sent[0].content)).encode()
    assert not _signature_holds(request, unchanged), "the check tells bodies apart"
    assert _signature_holds(sent[0], sent[0].content)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_usage_is_read_back(use_async: bool, stream: bool) -> None:
    cache = PromptCache()
    contexts = [CallContext(cache=cache, tenant="acme") for _ in range(2)]
    with Emulator() as emu:  # its own: a cold provider cache, then a warm one
        hooked = hook_anthropic_client(_bedrock(emu.base_url, use_async=use_async))
        await _twice(hooked, emu, contexts, use_async=use_async, stream=stream)
    first, second = (c.usage for c in contexts)
    assert first is not None and second is not None
    assert first.cache_write_tokens > 0 and second.cache_read_tokens == first.cache_write_tokens


async def _twice(
    hooked: Any, emu: Emulator, contexts: list[CallContext], *, use_async: bool, stream: bool
) -> None:
    for ctx in contexts:
        with use_call(ctx):
            if use_async:
                out = await hooked.messages.create(**_args(stream=stream))
            else:
                out = hooked.messages.create(**_args(stream=stream))
            if stream:
                # Read as the caller reads it, not buffered ahead: nothing is known before.
                assert ctx.usage is None and ctx.first_chunk_at is None
                events = [e async for e in out] if use_async else list(out)
        route = "invoke-with-response-stream" if stream else "invoke"
        assert emu.paths[-1] == f"/model/{MODEL}/{route}"
        if stream:
            assert events[0].type == "message_start"
            assert ctx.first_chunk_at is not None
        assert ctx.usage is not None and ctx.usage.output_tokens > 0
        assert ctx.body is None, "answered: the body was let go"


def test_stream_helper_reads_usage(emu: Emulator) -> None:
    hooked = hook_anthropic_client(_bedrock(emu.base_url))
    ctx = CallContext(cache=PromptCache(), tenant="acme")
    with use_call(ctx), hooked.messages.stream(**_args()) as stream:
        text = stream.get_final_text()
    assert text.startswith("echo")
    assert ctx.usage is not None and ctx.usage.input_tokens > 1000


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_hint_rejection_resends_once_without_hints(use_async: bool, stream: bool) -> None:
    with Emulator(rejects=("cache_control",)) as emu:
        hooked = hook_anthropic_client(_bedrock(emu.base_url, use_async=use_async))
        before = HINT_REJECTIONS["hint_rejected"]
        ctx = CallContext(cache=PromptCache(), tenant="acme")
        with use_call(ctx):
            if use_async:
                out = await hooked.messages.create(**_args(stream=stream))
                _ = [e async for e in out] if stream else None
            else:
                out = hooked.messages.create(**_args(stream=stream))
                _ = list(out) if stream else None
        assert len(emu.requests) == 2
        assert "cache_control" in json.dumps(emu.requests[0])
        assert "cache_control" not in json.dumps(emu.requests[1])
        assert emu.requests[1]["system"][0]["text"] == emu.requests[0]["system"][0]["text"]
        assert HINT_REJECTIONS["hint_rejected"] == before + 1
        assert ctx.hints_off and any("rejected" in n for n in ctx.notes)
        assert ctx.usage is not None and ctx.usage.input_tokens > 1000


def test_other_400_passes_through() -> None:
    with Emulator(rejects=("temperature",)) as emu:
        hooked = hook_anthropic_client(_bedrock(emu.base_url))
        ctx = CallContext(cache=PromptCache(), tenant="acme")
        with use_call(ctx), pytest.raises(anthropic.BadRequestError, match="temperature"):
            hooked.messages.create(**_args(temperature=0.5))
        assert len(emu.requests) == 1 and not ctx.hints_off and ctx.body is None


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_vertex(emu: Emulator, stream: bool) -> None:
    client = anthropic.AnthropicVertex(
        region="us-east5", project_id="p", access_token="tok", base_url=emu.base_url + "/v1", max_retries=0
    )
    hooked = hook_anthropic_client(client)
    assert any(isinstance(m, PromptCacheMiddleware) for m in hooked.middleware)
    ctx = CallContext(cache=PromptCache(), tenant="acme")
    with use_call(ctx):
        out = hooked.messages.create(**_args(model="claude-sonnet-4-5", stream=stream))
        _ = list(out) if stream else None
    assert emu.paths[-1].endswith(":streamRawPredict" if stream else ":rawPredict")
    assert "cache_control" in json.dumps(emu.requests[-1])
    assert ctx.usage is not None and ctx.usage.input_tokens > 1000


def test_bedrock_mantle(emu: Emulator) -> None:
    client = anthropic.AnthropicBedrockMantle(
        aws_access_key=KEY, aws_secret_key=SECRET, aws_region=REGION, base_url=emu.base_url, max_retries=0
    )
    ctx = CallContext(cache=PromptCache(), tenant="acme")
    with use_call(ctx):
        hook_anthropic_client(client).messages.create(**_args(model="claude-sonnet-4-5"))
    assert emu.paths[-1] == "/v1/messages" and "cache_control" in json.dumps(emu.requests[-1])
    assert ctx.usage is not None and ctx.usage.input_tokens > 1000


class Fare(BaseModel):
    fare_usd: int


# output_format is what older callers (and anthropic 0.108) pass; newer SDKs warn and map it.
@pytest.mark.filterwarnings("ignore:The 'output_format' parameter is deprecated:DeprecationWarning")
def test_structured_output_parse_is_a_plain_request() -> None:
    # beta.messages.parse (LlamaIndex's structured_predict) turns the type into JSON before the
    # middleware sees the request: nothing per method.
    with Emulator(script=[{"text": '{"fare_usd": 210}'}]) as emu:
        hooked = hook_anthropic_client(_bedrock(emu.base_url))
        ctx = CallContext(cache=PromptCache(), tenant="acme")
        with use_call(ctx):
            out = hooked.beta.messages.parse(**_args(max_tokens=50), output_format=Fare)
    assert out.parsed_output == Fare(fare_usd=210)
    assert "cache_control" in json.dumps(emu.requests[-1]) and "output_config" in emu.requests[-1]
    assert ctx.usage is not None and ctx.usage.cache_write_tokens > 0
