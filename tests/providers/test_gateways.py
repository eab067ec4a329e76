"""Gateway profiles: which hints each OpenAI-compatible server gets, and its opt-out."""

from __future__ import annotations

from typing import Any

import pytest

from promptcache.engine import PromptCache
from promptcache.policy import Policy
from promptcache.providers.gateways import PROFILES, GatewayProfile, adapt_for_gateway, adapt_prepared

LONG = "\n".join(f"Rule {i}: be courteous and precise about fares and baggage." for i in range(120))


def _prepared(system: str = LONG, user: str = "hi") -> Any:
    body = {
        "model": "gpt-4.1",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }
    pc = PromptCache(Policy.load({"entries": {"prompt_prefix": {"ttl": {"default": "24h"}}}}))
    return pc, pc.prepare_request(body, format="openai-chat", tenant="acme")


def _claude_body() -> dict[str, Any]:
    marker = {"type": "ephemeral"}
    return {
        "model": "anthropic/claude-sonnet-4.5",
        "prompt_cache_key": "pc-abc",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": LONG, "cache_control": marker}]},
            {"role": "user", "content": "hi"},
        ],
    }


def test_openai_keeps_key_and_retention() -> None:
    pc, prepared = _prepared()
    assert prepared.body["prompt_cache_retention"] == "24h"
    req = adapt_prepared(prepared, PROFILES["openai"], pc.policy)
    assert req.body == prepared.body and req.headers == {} and req.dropped == []


def test_heroku_gets_no_hints_and_opt_out_only_when_forbidden() -> None:
    pc, prepared = _prepared()
    req = adapt_prepared(prepared, PROFILES["heroku"], pc.policy)
    assert req.dropped == ["prompt_cache_key", "prompt_cache_retention"]
    assert req.body == {k: v for k, v in prepared.body.items() if not k.startswith("prompt_cache")}
    assert req.headers == {}
    pc, secret = _prepared(LONG + "\nCard 4111 1111 1111 1111 on file.")
    assert "prompt_cache_key" not in secret.body  # hints.py already placed none
    req = adapt_prepared(secret, PROFILES["heroku"], pc.policy)
    assert req.headers == {"X-Heroku-Prompt-Caching": "false"}
    assert req.body == secret.body


def test_openrouter_keeps_cache_control_and_moves_key_to_session_id() -> None:
    req = adapt_for_gateway(_claude_body(), PROFILES["openrouter"])
    assert req.dropped == ["prompt_cache_key"]
    assert req.body == {
        "model": "anthropic/claude-sonnet-4.5",
        "messages": _claude_body()["messages"],
        "session_id": "pc-abc",
    }
    assert req.notes == ["prompt_cache_key sent as session_id"]


def test_litellm_keeps_both() -> None:
    req = adapt_for_gateway(_claude_body(), PROFILES["litellm"])
    assert req.body == _claude_body() and req.dropped == []


@pytest.mark.parametrize("name", ["openrouter", "litellm"])
def test_forbidden_strips_every_hint_and_notes_missing_opt_out(name: str) -> None:
    req = adapt_for_gateway(_claude_body(), PROFILES[name], forbid_caching=True)
    assert req.dropped == ["cache_control", "prompt_cache_key"]
    assert req.body == {
        "model": "anthropic/claude-sonnet-4.5",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": LONG}]},
            {"role": "user", "content": "hi"},
        ],
    }
    assert req.headers == {}
    assert req.notes == [f"{name}: no opt-out switch; the gateway may still cache this prompt"]


def test_vllm_salt_per_tenant_and_one_off_when_forbidden() -> None:
    body = {"model": "meta-llama/Llama-3.1-8B", "prompt_cache_key": "pc-1", "messages": []}
    a = adapt_for_gateway(body, PROFILES["vllm"], tenant="acme").body
    b = adapt_for_gateway(body, PROFILES["vllm"], tenant="acme").body
    c = adapt_for_gateway(body, PROFILES["vllm"], tenant="globex").body
    assert a == b and a["cache_salt"] != c["cache_salt"] and "prompt_cache_key" not in a
    f1 = adapt_for_gateway(body, PROFILES["vllm"], tenant="acme", forbid_caching=True).body
    f2 = adapt_for_gateway(body, PROFILES["vllm"], tenant="acme", forbid_caching=True).body
    assert f1["cache_salt"] != f2["cache_salt"] != a["cache_salt"]


def test_custom_profile_by_configuration() -> None:
    profile = GatewayProfile.model_validate(
        {
            "name": "inhouse",
            "accepts": ["prompt_cache_key"],
            "opt_out_body": {"caching": False},
            "opt_out_headers": {"X-No-Cache": "1"},
        }
    )
    req = adapt_for_gateway(_claude_body(), profile)
    assert req.dropped == ["cache_control"] and req.body["prompt_cache_key"] == "pc-abc"
    req = adapt_for_gateway(_claude_body(), profile, forbid_caching=True)
    assert req.headers == {"X-No-Cache": "1"} and req.body["caching"] is False
    with pytest.raises(ValueError):
        GatewayProfile.model_validate({"name": "x", "opt_out_header": {}})


def test_input_body_is_not_modified() -> None:
    body = _claude_body()
    adapt_for_gateway(body, PROFILES["heroku"], forbid_caching=True)
    assert body == _claude_body()
