"""Issue 24, provider behaviour as in-process: hint rejections, errors, timeouts, streams, headers.

Upstreams are real servers: the emulator (which refuses named fields with the 400 a provider
sends) and a small Starlette upstream that holds a stream open until the test releases it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from conftest import POLICY_TEXT, ServerThread, clock_system, free_port, start_gateway
from upstreams import Held, held_stream_app

from promptcache.lab.emulate import Emulator
from promptcache.llm_bridge import HINT_REJECTIONS


def _metric(gateway: ServerThread, name: str) -> float:
    text = httpx.get(f"{gateway.url}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


@pytest.mark.parametrize(
    ("field", "kind"),
    [("cache_control", "messages"), ("prompt_cache_key", "chat_completions")],
    ids=["anthropic", "openai"],
)
def test_a_refused_hint_is_resent_without_it_and_remembered(field: str, kind: str) -> None:
    with Emulator(rejects=[field]) as emu:
        gw = start_gateway(emu.base_url)
        try:
            before = HINT_REJECTIONS["hint_rejected"]
            for i in range(2):
                if kind == "messages":
                    m = anthropic.Anthropic(base_url=gw.url, api_key="sk-h", max_retries=0).messages.create(
                        model="claude-sonnet-4-5",
                        max_tokens=16,
                        system=clock_system(i),
                        messages=[{"role": "user", "content": "hi"}],
                    )
                    assert m.content[0].type == "text" and m.content[0].text
                else:
                    r = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-h", max_retries=0)
                    c = r.chat.completions.create(
                        model="gpt-4o",
                        messages=[
                            {"role": "system", "content": clock_system(i)},
                            {"role": "user", "content": "hi"},
                        ],
                    )
                    assert c.choices[0].message.content
            # First call: sent with the hint, refused (400), resent without it. Second call: the
            # refusal is remembered, no hint is sent at all.
            has_field = [field in str(body) for body in emu.requests]
            assert has_field == [True, False, False]
            assert emu.usages[0] is None and all(u is not None for u in emu.usages[1:])
            assert HINT_REJECTIONS["hint_rejected"] == before + 1
            assert (
                _metric(gw, "promptcache_gateway_hint_rejections_total") == HINT_REJECTIONS["hint_rejected"]
            )
            assert _metric(gw, f'promptcache_gateway_requests_total{{route="{kind}",status="200"}}') == 2
        finally:
            gw.stop()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/chat/completions", {}),  # no API key: 401
        ("/v1/messages", {"anthropic-version": "2023-06-01"}),  # no API key: 401
        ("/v1/messages", {"x-api-key": "sk-e"}),  # not JSON: 400
        ("/v1/no-such-route", {"authorization": "Bearer sk-e"}),  # forwarded untouched: 404
    ],
)
def test_upstream_errors_pass_through_unchanged(
    path: str, headers: dict[str, str], gateway: ServerThread, emulator: Emulator
) -> None:
    body = b"not json" if "x-api-key" in headers else b'{"model": "gpt-4o", "messages": []}'
    through = httpx.post(gateway.url + path, content=body, headers=headers)
    direct = httpx.post(emulator.base_url + path, content=body, headers=headers)
    assert through.status_code == direct.status_code >= 400
    assert through.content == direct.content
    assert through.headers["content-type"] == direct.headers["content-type"]
    assert through.headers.get("request-id") == direct.headers.get("request-id")


def test_an_sdk_error_is_the_providers_own(gateway: ServerThread) -> None:
    # An empty Authorization header: the emulator answers 401 as OpenAI does without a key.
    o = openai.OpenAI(
        base_url=gateway.url + "/v1", api_key="sk", max_retries=0, default_headers={"Authorization": ""}
    )
    with pytest.raises(openai.AuthenticationError, match="missing API key"):
        o.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


def test_a_bad_tenant_header_is_refused_naming_it(gateway: ServerThread) -> None:
    o = openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key="sk-t",
        max_retries=0,
        default_headers={"X-PromptCache-Tenant": "x" * 300},
    )
    with pytest.raises(openai.BadRequestError, match="X-PromptCache-Tenant: 300 characters"):
        o.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


@pytest.fixture
def held() -> Iterator[tuple[Held, ServerThread]]:
    """The held upstream (tests/gateway/upstreams.py), released at the end whatever happened."""
    h = Held()
    server = ServerThread(held_stream_app(h)).start()
    yield h, server
    h.release.set()
    server.stop()


def test_a_stream_is_relayed_as_it_comes_not_buffered(held: tuple[Held, ServerThread]) -> None:
    h, upstream = held
    gw = start_gateway(upstream.url)
    try:
        body = {
            "model": "gpt-4o",
            "stream": True,
            "messages": [{"role": "system", "content": POLICY_TEXT}, {"role": "user", "content": "hi"}],
        }
        headers = {"authorization": "Bearer sk-held", "connection": "keep-alive, x-hop", "x-hop": "1"}
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers=headers) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            # The upstream holds the rest until now: the first event came through on its own.
            assert "part 0" in first and not h.released_in_time
            h.release.set()
            rest = [line for line in lines if line.startswith("data:")]
        assert h.released_in_time == [True] and h.finished == [True]
        assert [f"part {i}" in "".join(rest) for i in range(1, 5)] == [True] * 4 and rest[
            -1
        ] == "data: [DONE]"
        # The key went upstream untouched; hop-by-hop headers (and those Connection names) did not.
        sent = h.headers[0]
        assert sent["authorization"] == "Bearer sk-held"
        assert "x-hop" not in sent and "x-promptcache-tenant" not in sent
        # The stream's usage was read on the way.
        stats = gw.app.state.gateway.cache.stats().total
        assert (stats.calls, stats.cache_read_tokens) == (1, 1536)
    finally:
        gw.stop()


def test_the_tenant_header_is_not_forwarded(held: tuple[Held, ServerThread]) -> None:
    h, upstream = held
    h.release.set()
    gw = start_gateway(upstream.url)
    try:
        body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": "Bearer sk-held", "x-promptcache-tenant": "acme"}
        r = httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers)
        assert r.status_code == 200 and "x-promptcache-tenant" not in h.headers[0]
        assert gw.app.state.gateway.cache.stats().for_tenant("acme").calls == 1
    finally:
        gw.stop()


def test_the_clients_user_agent_and_key_go_upstream_as_sent(held: tuple[Held, ServerThread]) -> None:
    """The upstream sees the client's own User-Agent and key, not the gateway's HTTP library's."""
    import urllib.request

    h, upstream = held
    h.release.set()
    gw = start_gateway(upstream.url)
    try:
        body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        req = urllib.request.Request(
            gw.url + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Authorization": "Bearer sk-held", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200 and b"[DONE]" in r.read()
        sent = h.headers[0]
        assert sent["user-agent"].startswith("Python-urllib/")
        assert sent["authorization"] == "Bearer sk-held" and sent["accept-encoding"] == "identity"
    finally:
        gw.stop()


def test_an_upstream_timeout_is_a_504_in_the_providers_shape(held: tuple[Held, ServerThread]) -> None:
    _, upstream = held
    gw = start_gateway(upstream.url, upstream_timeout=0.3)
    try:
        r = httpx.post(gw.url + "/v1/slow", json={}, headers={"authorization": "Bearer sk"})
        assert r.status_code == 504
        assert r.json()["error"]["type"] == "timeout_error" and "0.3 s" in r.json()["error"]["message"]
        assert _metric(gw, 'promptcache_gateway_upstream_errors_total{kind="timeout"}') == 1
    finally:
        gw.stop()


def test_an_unreachable_upstream_is_a_502_the_sdk_raises() -> None:
    gw = start_gateway(f"http://127.0.0.1:{free_port()}")
    try:
        a = anthropic.Anthropic(base_url=gw.url, api_key="sk", max_retries=0)
        with pytest.raises(anthropic.InternalServerError, match="upstream unreachable"):
            a.messages.create(
                model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}]
            )
        assert _metric(gw, 'promptcache_gateway_upstream_errors_total{kind="connect"}') == 1
    finally:
        gw.stop()


def test_a_client_gone_mid_stream_frees_the_request(held: tuple[Held, ServerThread]) -> None:
    h, upstream = held
    gw = start_gateway(upstream.url)
    try:
        body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": "Bearer sk-gone"}
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers=headers) as r:
            assert "part 0" in next(line for line in r.iter_lines() if line.startswith("data:"))
        # The client closed its connection mid-stream; the upstream goes on, then the gateway
        # notices, releases the upstream and counts the request finished (bounded wait).
        h.release.set()
        deadline = time.monotonic() + 20
        while _metric(gw, "promptcache_gateway_in_flight") != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _metric(gw, "promptcache_gateway_in_flight") == 0
    finally:
        gw.stop()
