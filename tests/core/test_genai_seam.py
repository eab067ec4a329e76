"""google-genai on the httpx seam: a real ``google.genai.Client`` over the emulator, re-made by
``wrap_genai_client`` with the SDK's own ``HttpOptions(httpx_client=...)``. Inside a call context
the ``generateContent`` body is rewritten and the usage read back (streams and asyncio too); with
a ``GeminiCacheManager`` the static prefix moves into a cached content, and a refused one is
dropped and the request resent without it. Outside a call context nothing changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import types

from promptcache import PromptCache
from promptcache.lab.emulate import Emulator
from promptcache.llm_bridge import HINT_REJECTIONS, CallContext, use_call
from promptcache.providers.gemini_cache import GenAIClientTransport
from promptcache.transport import is_genai_client, wrap_genai_client

MODEL = "gemini-2.5-flash"
CLOCK = "The current time is 2024-05-15 15:00:00 EST."
SYSTEM = f"# Airline agent policy\r\n\r\n{CLOCK}\r\n\r\n" + "Rule: be kind to every passenger.\r\n" * 400
CONFIG = types.GenerateContentConfig(system_instruction=SYSTEM)
GENERATE = f"/v1beta/models/{MODEL}:generateContent"
STREAM = f"/v1beta/models/{MODEL}:streamGenerateContent"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


def _client(emu: Emulator) -> genai.Client:
    opts = types.HttpOptions(base_url=emu.base_url, api_version="v1beta")
    return genai.Client(api_key="k", http_options=opts)


def _system(body: dict[str, Any]) -> str:
    return json.dumps(body.get("systemInstruction"))


def test_rewritten_inside_a_call_only_and_the_callers_client_untouched(emu: Emulator) -> None:
    client = _client(emu)
    http_before = client._api_client._httpx_client
    wrapped = wrap_genai_client(client)
    assert is_genai_client(wrapped) and wrapped is not client
    wrapped.models.generate_content(model=MODEL, contents="hi", config=CONFIG)
    client.models.generate_content(model=MODEL, contents="hi", config=CONFIG)
    outside, plain = emu.requests
    assert outside == plain and "\\r\\n" in _system(outside), "outside a call context: sent as built"

    ctx = CallContext(cache=PromptCache(), tenant="acme")
    with use_call(ctx):
        wrapped.models.generate_content(model=MODEL, contents="hi", config=CONFIG)
    inside = emu.requests[-1]
    assert emu.paths[-1] == GENERATE
    # Canonical form: one newline style, so equal meaning gives equal bytes (DESIGN, step 2).
    assert "\\r\\n" not in _system(inside) and CLOCK in _system(inside)
    assert ctx.format_used is not None and ctx.format_used.value == "gemini" and ctx.model == MODEL
    assert ctx.plan is not None and ctx.body is None
    assert ctx.usage is not None and ctx.usage.input_tokens > 1000 and ctx.usage.output_tokens > 0
    assert client._api_client._httpx_client is http_before and not http_before.is_closed


def test_stream_and_async_report_usage(emu: Emulator) -> None:
    import asyncio

    wrapped = wrap_genai_client(_client(emu))
    cache = PromptCache()
    ctx = CallContext(cache=cache, tenant="acme")
    with use_call(ctx):
        wrapped.models.generate_content(model=MODEL, contents="hi", config=CONFIG)
    ctx = CallContext(cache=cache, tenant="acme")
    with use_call(ctx):
        chunks = list(wrapped.models.generate_content_stream(model=MODEL, contents="hi", config=CONFIG))
    assert "".join(c.text or "" for c in chunks) and emu.paths[-1] == STREAM
    assert ctx.usage is not None and ctx.usage.cache_read_tokens > 1000 and ctx.first_chunk_at is not None

    async def run() -> list[CallContext]:
        out = []
        for streamed in (False, True):
            actx = CallContext(cache=cache, tenant="acme")
            with use_call(actx):
                if streamed:
                    agen = await wrapped.aio.models.generate_content_stream(
                        model=MODEL, contents="hi", config=CONFIG
                    )
                    assert [c async for c in agen]
                else:
                    await wrapped.aio.models.generate_content(model=MODEL, contents="hi", config=CONFIG)
            out.append(actx)
        return out

    for actx in asyncio.run(run()):
        assert actx.plan is not None
        assert actx.usage is not None and actx.usage.cache_read_tokens > 1000
    assert emu.paths[-2:] == [GENERATE, STREAM]
    assert all("\\r\\n" not in _system(b) for b in emu.requests)


def _explicit(emu: Emulator) -> tuple[Any, Any, PromptCache]:
    client = _client(emu)
    cache = PromptCache()
    caches = cache.gemini_caches(GenAIClientTransport(client), ttl_s=600)
    return wrap_genai_client(client, gemini_caches=caches), caches, cache


def test_explicit_cached_content_used_inside_a_call_only(emu: Emulator) -> None:
    wrapped, caches, cache = _explicit(emu)
    wrapped.models.generate_content(model=MODEL, contents="hi", config=CONFIG)
    assert emu.paths == [GENERATE] and not emu.cached_contents, "outside a call: no cached content"
    ctx = CallContext(cache=cache, tenant="acme")
    with use_call(ctx):
        wrapped.models.generate_content(model=MODEL, contents="hi", config=CONFIG)
    (name,) = emu.cached_contents
    assert emu.paths[1:] == ["/v1beta/cachedContents", GENERATE]
    assert emu.requests[-1]["cachedContent"] == name and "systemInstruction" not in emu.requests[-1]
    assert ctx.usage is not None and ctx.usage.cache_write_tokens > 1000
    assert [h.name for h in caches.handles()] == [name]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_refused_cached_content_is_dropped_and_the_request_resent(
    emu: Emulator, streamed: bool, use_async: bool
) -> None:
    import asyncio

    wrapped, caches, cache = _explicit(emu)
    with use_call(CallContext(cache=cache, tenant="acme")):
        wrapped.models.generate_content(model=MODEL, contents="hi", config=CONFIG)
    (name,) = emu.cached_contents
    created = emu.requests[0]
    assert emu._delete_cached_content(name)  # expired or deleted behind our back
    before = HINT_REJECTIONS["hint_rejected"]
    ctx = CallContext(cache=cache, tenant="acme")

    async def acall() -> None:
        if streamed:
            agen = await wrapped.aio.models.generate_content_stream(model=MODEL, contents="hi", config=CONFIG)
            assert [c async for c in agen]
        else:
            await wrapped.aio.models.generate_content(model=MODEL, contents="hi", config=CONFIG)

    with use_call(ctx):
        if use_async:
            asyncio.run(acall())
        elif streamed:
            assert list(wrapped.models.generate_content_stream(model=MODEL, contents="hi", config=CONFIG))
        else:
            wrapped.models.generate_content(model=MODEL, contents="hi", config=CONFIG)
    # The emulator records only what it answers: the refused request (403) is not in its list.
    assert emu.paths[-1] == (STREAM if streamed else GENERATE)
    resent = emu.requests[-1]
    assert "cachedContent" not in resent and resent["systemInstruction"] == created["systemInstruction"]
    assert any("refused" in n for n in ctx.notes) and HINT_REJECTIONS["hint_rejected"] == before + 1
    assert ctx.usage is not None and ctx.usage.output_tokens > 0
    assert caches.handles() == []


def test_a_client_off_httpx_is_not_wrapped(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_GENAI_HTTP_CLIENT", "httpx2")
    client = _client(emu)
    assert not isinstance(client._api_client._httpx_client, httpx.Client)
    assert wrap_genai_client(client) is None
