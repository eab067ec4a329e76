"""CachingChatModel around real ChatOpenAI / ChatAnthropic objects talking to the emulator over HTTP.

The reference for "what the request should be" is independent of the wrapper: the same inner
model, unwrapped, sends its request to the emulator (under another API key, so another cache
organization); ``prepare_request`` of a separate ``PromptCache`` applied to that body must
equal what the wrapped model sent.
"""

from __future__ import annotations

from typing import Any

import fixtures_lc as shared
import pytest
from helpers_lc import (
    base_url,
    clock_relocated,
    has_cache_control,
    has_clock,
    make_model,
    stamp,
    system_text,
    wire_format,
)
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from promptcache_langchain import CachingChatModel

from promptcache import PromptCache
from promptcache.stats import recorder_for

PROVIDERS = ["openai", "anthropic"]
MODES = ["invoke", "ainvoke", "stream", "astream"]

# The shared fixtures, registered here: no conftest.py, which would collide with other
# integrations' conftest.py files when their test folders run in one pytest session.
airline_policy, airline_tools, emulator = shared.airline_policy, shared.airline_tools, shared.emulator


async def _call(model: Any, messages: list[BaseMessage], mode: str, config: dict[str, Any]) -> BaseMessage:
    # One event loop per test (async tests): LangChain's providers share a default async HTTP
    # client whose connections are bound to the loop that opened them.
    if mode == "invoke":
        out: BaseMessage = model.invoke(messages, config=config)
        return out
    if mode == "ainvoke":
        return await model.ainvoke(messages, config=config)  # type: ignore[no-any-return]
    if mode == "stream":
        chunks = list(model.stream(messages, config=config))
    else:
        chunks = [c async for c in model.astream(messages, config=config)]
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    return total  # type: ignore[no-any-return]


def _turns(policy: str) -> list[list[BaseMessage]]:
    """Three turns of one conversation; the system prompt's clock moves between them, as in production."""
    ask = "Hi! I want to book a flight from New York."
    first: list[BaseMessage] = [SystemMessage(stamp(policy, 0)), HumanMessage(ask)]
    second = [
        SystemMessage(stamp(policy, 5)),
        *first[1:],
        AIMessage("Sure. Your user id?"),
        HumanMessage("mia_li_3668"),
    ]
    third = [SystemMessage(stamp(policy, 10)), *second[1:], AIMessage("Where to?"), HumanMessage("Seattle.")]
    return [first, second, third]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_request_is_prepare_request_of_the_inner_payload(
    emulator: Any, airline_policy: str, airline_tools: list[dict[str, Any]], provider: str, mode: str
) -> None:
    cache, reference = PromptCache(), PromptCache()
    url = base_url(emulator, provider)
    bare = make_model(provider, url, "bare-key").bind_tools(airline_tools)
    wrapped = CachingChatModel(make_model(provider, url, "pc-key"), cache).bind_tools(airline_tools)
    config = {"configurable": {"tenant_id": "acme"}}
    answers = []
    for turn, messages in enumerate(_turns(airline_policy)):
        await _call(bare, messages, mode, {})
        answers.append(await _call(wrapped, messages, mode, config))
        sent_bare, sent = emulator.requests[-2], emulator.requests[-1]
        expected = reference.prepare_request(sent_bare, format=wire_format(provider), tenant="acme").body
        assert sent == expected
        # What prepare_request does, visible in the body: once the clock has been seen to move
        # (from the second turn on), its line is out of the stable prefix, after it...
        assert has_clock(system_text(sent_bare)) and not clock_relocated(sent_bare)
        if turn >= 1:
            assert clock_relocated(sent)
        # ...and the provider's caching hint is there.
        if provider == "openai":
            assert sent["prompt_cache_key"].startswith("pc-") and "prompt_cache_key" not in sent_bare
        else:
            assert has_cache_control(sent) and not has_cache_control(sent_bare)
            assert "cache_control" in sent["tools"][-1] and "cache_control" in sent["system"][0]
        if mode in ("stream", "astream"):
            assert sent["stream"] is True
    # Usage is the provider's, read honestly: the last call read the prefix an earlier one wrote.
    usages = emulator.usages[1::2]
    last = answers[-1]
    for answer, usage in zip(answers, usages, strict=True):
        meta = answer.response_metadata["promptcache"]
        assert meta["tenant"] == "acme"
        assert meta["cache_read_tokens"] == usage.cache_read_tokens
        assert meta["cache_write_tokens"] == usage.cache_write_tokens
        assert meta["input_tokens"] == usage.input_tokens
        details = answer.usage_metadata["input_token_details"]  # type: ignore[attr-defined,index]
        assert details.get("cache_read", 0) == usage.cache_read_tokens
        assert answer.usage_metadata["input_tokens"] == usage.input_tokens  # type: ignore[attr-defined,index]
    assert last.response_metadata["promptcache"]["cache_read_tokens"] > 0
    assert last.response_metadata["promptcache"]["cost_avoided_usd"] > 0
    # Every call fed the cache's stats, once.
    row = recorder_for(cache).snapshot().get("acme", usages[0].model)
    assert row.calls == 3
    assert row.input_tokens == sum(u.input_tokens for u in usages)
    assert row.cache_read_tokens == sum(u.cache_read_tokens for u in usages)
    assert row.cache_write_tokens == sum(u.cache_write_tokens for u in usages)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_two_tenants_get_different_keys(emulator: Any, airline_policy: str, provider: str) -> None:
    cache = PromptCache()
    model = CachingChatModel(make_model(provider, base_url(emulator, provider), "k"), cache)
    messages = _turns(airline_policy)[0]
    a = model.invoke(messages, config={"configurable": {"tenant_id": "acme"}})
    b = model.invoke(messages, config={"metadata": {"tenant_id": "globex"}})
    assert a.response_metadata["promptcache"]["tenant"] == "acme"
    assert b.response_metadata["promptcache"]["tenant"] == "globex"
    pa, pb = (m.response_metadata["promptcache"]["prefix_key"] for m in (a, b))
    assert pa != pb
    if provider == "openai":
        ka, kb = (r["prompt_cache_key"] for r in emulator.requests)
        assert ka != kb
    stats = recorder_for(cache).snapshot()
    assert stats.for_tenant("acme").calls == 1 and stats.for_tenant("globex").calls == 1


def test_custom_tenant_key(emulator: Any, airline_policy: str) -> None:
    cache = PromptCache({"require_tenant": True})
    model = CachingChatModel(make_model("openai", emulator.openai_base_url, "k"), cache, tenant_key="org")
    out = model.invoke(_turns(airline_policy)[0], config={"configurable": {"org": "initech"}})
    assert out.response_metadata["promptcache"]["tenant"] == "initech"


@pytest.mark.parametrize("mode", MODES)
async def test_missing_tenant_is_refused_before_sending(
    emulator: Any, airline_policy: str, mode: str
) -> None:
    cache = PromptCache({"require_tenant": True})
    model = CachingChatModel(make_model("openai", emulator.openai_base_url, "k"), cache)
    with pytest.raises(ValueError, match="requires a tenant"):
        await _call(model, _turns(airline_policy)[0], mode, {"configurable": {"user": "x"}})
    assert emulator.requests == []


def test_shadow_mode_sends_the_request_unchanged(emulator: Any, airline_policy: str) -> None:
    cache = PromptCache(mode="shadow")
    model = CachingChatModel(make_model("anthropic", emulator.anthropic_base_url, "k"), cache)
    bare = make_model("anthropic", emulator.anthropic_base_url, "k2")
    messages = _turns(airline_policy)[0]
    bare.invoke(messages)
    out = model.invoke(messages)
    assert emulator.requests[1] == emulator.requests[0]
    meta = out.response_metadata["promptcache"]
    assert meta["mode"] == "shadow" and meta["tenant"] == "default" and meta["prefix_key"]


def test_unhookable_model_is_observed_not_rewritten() -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    cache = PromptCache()
    fake = GenericFakeChatModel(messages=iter([AIMessage("ok", usage_metadata=_um(100, 40))]))
    out = CachingChatModel(fake, cache).invoke("hi", config={"configurable": {"tenant_id": "t"}})
    meta = out.response_metadata["promptcache"]
    assert "prefix_key" not in meta and meta["cache_read_tokens"] == 40
    assert recorder_for(cache).snapshot().for_tenant("t").cache_read_tokens == 40


def _um(inp: int, read: int) -> Any:
    return {
        "input_tokens": inp,
        "output_tokens": 1,
        "total_tokens": inp + 1,
        "input_token_details": {"cache_read": read},
    }


def test_a_setting_changed_on_inner_after_wrapping_is_sent(emulator: Any, airline_policy: str) -> None:
    inner = make_model("openai", emulator.openai_base_url, "k")
    model = CachingChatModel(inner, PromptCache())
    config = {"configurable": {"tenant_id": "acme"}}
    model.invoke(_turns(airline_policy)[0], config=config)
    inner.temperature = 0.3
    model.invoke(_turns(airline_policy)[0], config=config)
    assert "temperature" not in emulator.requests[0]
    assert emulator.requests[1]["temperature"] == 0.3


def test_hooked_copy_is_reused_while_the_model_is_unchanged() -> None:
    import gc

    from langchain_core.utils._signature import _signature_parameters
    from langchain_openai import ChatOpenAI
    from promptcache_langchain import _hook

    model = make_model("openai", "http://127.0.0.1:9/v1", "k")
    copy = _hook.hooked_copy(model)
    assert copy is not None and copy is not model
    assert isinstance(copy, ChatOpenAI) and type(copy).__name__ == "ChatOpenAI"
    assert type(model) is ChatOpenAI  # the user's object keeps its class
    assert _hook.hooked_copy(model) is copy
    # LangChain passes run_manager (callbacks) to _generate only if its signature names it.
    for name in ("_generate", "_agenerate", "_stream", "_astream", "_get_request_payload"):
        assert list(_signature_parameters(getattr(copy, name))) == list(
            _signature_parameters(getattr(model, name))
        )
    # State the copy computes for itself (LangChain's cached serialized form) keeps it current.
    copy.__dict__["_serialized"] = {"kept": True}
    assert _hook.hooked_copy(model) is copy
    model.temperature = 0.3
    fresh = _hook.hooked_copy(model)
    assert fresh is not copy and fresh is not None and fresh.temperature == 0.3
    assert _hook.hooked_copy(fresh) is fresh  # a hooked copy is its own
    key = id(model)
    del model, copy, fresh
    gc.collect()
    assert key not in _hook._copies


def test_the_signatures_langchain_reads_per_call_are_carried_not_recomputed() -> None:
    import inspect
    import types

    from promptcache_langchain import _hook

    model = make_model("openai", "http://127.0.0.1:9/v1", "k")
    copy = _hook.hooked_copy(model)
    assert copy is not None
    # The copy is of the user's own class: its methods are the provider's, unchanged.
    assert type(copy) is type(model)
    for name in ("_generate", "_agenerate"):
        assert inspect.signature(getattr(copy, name)) == inspect.signature(getattr(model, name))
        own = getattr(CachingChatModel, name)
        bare = types.FunctionType(own.__code__, own.__globals__, name, own.__defaults__, own.__closure__)
        bare.__kwdefaults__, bare.__annotations__ = own.__kwdefaults__, own.__annotations__
        assert own.__dict__.get("__signature__") == inspect.signature(bare)

    def f(x: int) -> int:
        return x

    # A signature that cannot be computed up front is left to inspect, per call.
    assert _hook.with_signature(f, max) is f and "__signature__" not in f.__dict__


def test_hooked_copy_notices_every_way_a_setting_changes() -> None:
    # The settings are compared: any changed setting gives a new copy, otherwise it is kept.
    from promptcache_langchain import _hook

    model = make_model("openai", "http://127.0.0.1:9/v1", "k")
    copy = _hook.hooked_copy(model)
    model.temperature = model.temperature  # the same value again: nothing changed
    assert _hook.hooked_copy(model) is copy
    changes = [
        lambda m: setattr(m, "max_tokens", 12),
        lambda m: m.__dict__.__setitem__("temperature", 0.9),  # behind pydantic's back
        lambda m: object.__setattr__(m, "top_p", 0.5),
        lambda m: m.__dict__.__setitem__("promptcache_extra_field", 1),  # an attribute added
        lambda m: m.__dict__.pop("promptcache_extra_field"),
    ]
    for change in changes:
        change(model)
        fresh = _hook.hooked_copy(model)
        assert fresh is not copy and fresh is not None
        # The same settings (every field, built by the class's own constructor); only the clients
        # differ: the copy's send through the seam, over the user's own httpx transport.
        clients = {
            "client",
            "async_client",
            "root_client",
            "root_async_client",
            "http_client",
            "http_async_client",
        }
        fields = [name for name in type(model).model_fields if name not in clients]
        assert {f: getattr(fresh, f) for f in fields} == {f: getattr(model, f) for f in fields}
        assert fresh.http_client._transport.inner is model.root_client._client._transport
        assert fresh.root_client._client is fresh.http_client
        assert _hook.hooked_copy(model) is fresh
        copy = fresh


def test_traces_name_the_inner_provider_and_model(emulator: Any, airline_policy: str) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    seen: list[dict[str, Any]] = []

    class Metadata(BaseCallbackHandler):
        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            seen.append(kwargs.get("metadata") or {})

    model = CachingChatModel(make_model("openai", emulator.openai_base_url, "k"), PromptCache())
    model.invoke(_turns(airline_policy)[0], config={"callbacks": [Metadata()]})
    assert seen[0]["ls_provider"] == "openai" and seen[0]["ls_model_name"] == "gpt-4o"


def test_forced_wire_format(emulator: Any, airline_policy: str) -> None:
    inner = make_model("openai", emulator.openai_base_url, "k")
    with pytest.raises(ValueError):
        CachingChatModel(inner, PromptCache(), wire_format="no-such-format")
    model = CachingChatModel(inner, PromptCache(), wire_format="openai-chat")
    out = model.invoke(_turns(airline_policy)[0], config={"configurable": {"tenant_id": "acme"}})
    assert out.response_metadata["promptcache"]["format"] == "openai-chat"
    assert emulator.requests[0]["prompt_cache_key"].startswith("pc-")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_users_model_is_left_untouched_after_use(
    emulator: Any, airline_policy: str, provider: str
) -> None:
    # Calls, streams and an agent's middleware all go through a copy: the user's model object
    # keeps its class, every attribute (the same objects) and its own httpx client's transport.
    from langchain.agents import create_agent
    from promptcache_langchain import PromptCacheMiddleware

    model = make_model(provider, base_url(emulator, provider), "k")
    cls, before = type(model), dict(model.__dict__)
    private = dict(model.__pydantic_private__ or {})
    http = getattr(model.root_client, "_client", None) if provider == "openai" else None
    transport = getattr(http, "_transport", None)
    config: Any = {"configurable": {"tenant_id": "acme"}}
    cached = CachingChatModel(model, PromptCache())
    cached.invoke(_turns(airline_policy)[0], config=config)
    list(cached.stream(_turns(airline_policy)[0], config=config))
    agent = create_agent(
        model, tools=[], system_prompt=airline_policy, middleware=[PromptCacheMiddleware(PromptCache())]
    )
    agent.invoke({"messages": [HumanMessage("hello")]}, config)
    assert type(model) is cls
    assert model.__dict__.keys() == before.keys() and all(model.__dict__[k] is v for k, v in before.items())
    assert (model.__pydantic_private__ or {}) == private
    if http is not None:
        assert http._transport is transport and not http.is_closed
    # Every request was rewritten all the same.
    hint = "prompt_cache_key" if provider == "openai" else "cache_control"
    assert len(emulator.requests) == 3 and all(hint in str(b) for b in emulator.requests)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_copy_sends_with_the_users_settings_and_leaves_the_users_model_alone(
    emulator: Any, airline_policy: str, provider: str
) -> None:
    """The copy is built by the model's own constructor: the user's key (a SecretStr), base URL,
    timeout, default headers and httpx client (its hooks, its transport) all still apply, the
    body is rewritten on the way, and the user's model and clients are exactly as they were."""
    import httpx
    from langchain_anthropic import ChatAnthropic
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    from promptcache.transport import AsyncPromptCacheTransport, PromptCacheTransport

    sent: list[httpx.Request] = []

    async def arecord(request: httpx.Request) -> None:
        sent.append(request)

    own = httpx.Client(headers={"x-user-client": "1"}, event_hooks={"request": [sent.append]})
    aown = httpx.AsyncClient(headers={"x-user-client": "1"}, event_hooks={"request": [arecord]})
    settings: dict[str, Any] = {"timeout": 21.0, "default_headers": {"x-default": "d"}, "max_retries": 0}
    inner: Any
    if provider == "openai":
        inner = ChatOpenAI(
            model="gpt-4o",
            api_key="sk-user",
            base_url=emulator.openai_base_url,
            http_client=own,
            http_async_client=aown,
            **settings,
        )
    else:  # langchain_anthropic takes no http_client: its default one is wrapped
        inner = ChatAnthropic(
            model="claude-sonnet-4-5", api_key="sk-ant-user", base_url=emulator.anthropic_base_url, **settings
        )
    sdk_clients = (inner._client, inner._async_client) if provider == "anthropic" else ()
    before = dict(inner.__dict__)
    transports = [c._client._transport for c in sdk_clients] + [own._transport, aown._transport]

    model = CachingChatModel(inner, PromptCache())
    config = {"configurable": {"tenant_id": "acme"}}
    messages = _turns(airline_policy)[0]
    model.invoke(messages, config=config)
    await model.ainvoke(messages, config=config)

    # Sent through promptcache: both bodies carry the provider's caching hint.
    for body in emulator.requests:
        if provider == "openai":
            assert body["prompt_cache_key"].startswith("pc-")
        else:
            assert has_cache_control(body)
    copy = _copy_of(inner)
    key = copy.openai_api_key if provider == "openai" else copy.anthropic_api_key
    assert isinstance(key, SecretStr) and key.get_secret_value() in ("sk-user", "sk-ant-user")
    sdk = (
        (copy.root_client, copy.root_async_client)
        if provider == "openai"
        else (copy._client, copy._async_client)
    )
    for client, wrapper in zip(sdk, (PromptCacheTransport, AsyncPromptCacheTransport), strict=True):
        assert type(client._client._transport) is wrapper
        assert client.default_headers["x-default"] == "d" and client.timeout == 21.0
        assert str(client.base_url).startswith(
            str(inner.openai_api_base if provider == "openai" else inner.anthropic_api_url)
        )
    if provider == "openai":
        # the user's own httpx clients: their hooks ran, their headers went, their transports carry it
        assert len(sent) == 2 and all(r.headers["x-user-client"] == "1" for r in sent)
        assert all(
            r.headers["authorization"] == "Bearer sk-user" and r.headers["x-default"] == "d" for r in sent
        )
        assert copy.http_client._transport.inner is own._transport
        assert copy.http_async_client._transport.inner is aown._transport
    else:  # the SDK clients the user's model built, re-made by the SDK over the wrapped transport
        assert copy._client._client._transport.inner is inner._client._client._transport
        assert copy._async_client._client._transport.inner is inner._async_client._client._transport
    # The user's model: the same attributes, the same objects, its clients on their own transports.
    assert inner.__dict__.keys() == before.keys() and all(inner.__dict__[k] is v for k, v in before.items())
    assert [c._client._transport for c in sdk_clients] + [own._transport, aown._transport] == transports
    assert all(type(t) in (httpx.HTTPTransport, httpx.AsyncHTTPTransport) for t in transports)
    own.close()
    await aown.aclose()


def _copy_of(model: Any) -> Any:
    from promptcache_langchain import _hook

    copy = _hook.hooked_copy(model)
    assert copy is not None and copy is not model and type(copy) is type(model)
    return copy
