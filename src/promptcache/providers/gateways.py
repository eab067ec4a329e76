"""OpenAI-compatible servers and gateways, by configuration.

A gateway speaks ``openai-chat`` but takes only some caching hints, reports only some usage
fields and may have its own switch to turn provider caching off. A :class:`GatewayProfile`
says which; :func:`adapt_for_gateway` takes a body prepared by promptcache, removes the hints
the gateway does not take, renames the ones it takes under another name, and returns the
extra headers to send (its opt-out when the policy forbids provider caching).

>>> req = adapt_for_gateway({"model": "m", "prompt_cache_key": "pc-1", "messages": []},
...                         PROFILES["heroku"], "openai-chat", forbid_caching=True)
>>> req.headers, "prompt_cache_key" in req.body
({'X-Heroku-Prompt-Caching': 'false'}, False)

The built-in profiles record what each gateway's documentation said when checked (sources
in each profile's ``source``); where a documentation page did not say, the profile says
UNCONFIRMED and errs on the side of sending less (a dropped hint costs a cache miss at
worst; an unknown field can cost a 400). Define your own with ``GatewayProfile(...)`` or
``PROFILES["openrouter"].model_copy(update={...})``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promptcache.formats import WireFormat, parse_format
from promptcache.plan import Prepared
from promptcache.policy import Policy
from promptcache.providers.fallback import ALL_HINT_KINDS, strip_hints
from promptcache.providers.hints import caching_forbidden

__all__ = ["PROFILES", "GatewayProfile", "GatewayRequest", "adapt_for_gateway", "adapt_prepared"]


class GatewayProfile(BaseModel):
    """What one OpenAI-compatible server or gateway does with prompt caching."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    accepts: frozenset[str] = Field(
        default=frozenset(),
        description="hint kinds forwarded: cache_control, prompt_cache_key, prompt_cache_retention, "
        "prompt_cache_options, prompt_cache_breakpoint",
    )
    key_field: str | None = Field(
        default=None,
        description="body field that takes the routing key instead of prompt_cache_key (sticky routing)",
    )
    isolation_field: str | None = Field(
        default=None, description="body field that scopes the server's prefix cache (vLLM cache_salt)"
    )
    usage_fields: tuple[str, ...] = Field(
        default=(), description="cache fields the response usage carries (dotted paths under usage)"
    )
    opt_out_headers: dict[str, str] = Field(
        default_factory=dict, description="headers that switch provider caching off for one request"
    )
    opt_out_body: dict[str, Any] = Field(
        default_factory=dict, description="body fields that switch provider caching off for one request"
    )
    source: str = ""


class GatewayRequest(BaseModel):
    """A body ready for one gateway, the headers to add, and what was changed."""

    model_config = ConfigDict(frozen=True)

    body: dict[str, Any]
    headers: dict[str, str] = Field(default_factory=dict)
    dropped: list[str] = Field(default_factory=list, description="hint kinds removed")
    notes: list[str] = Field(default_factory=list)


_OPENAI_KINDS = frozenset(
    {"prompt_cache_key", "prompt_cache_retention", "prompt_cache_options", "prompt_cache_breakpoint"}
)

PROFILES: dict[str, GatewayProfile] = {
    "openai": GatewayProfile(
        name="openai",
        accepts=_OPENAI_KINDS,
        usage_fields=(
            "prompt_tokens_details.cached_tokens",
            "prompt_tokens_details.cache_write_tokens",
            "input_tokens_details.cached_tokens",
            "input_tokens_details.cache_write_tokens",
        ),
        source=(
            "developers.openai.com/api/docs/guides/prompt-caching (automatic caching, "
            "prompt_cache_key, prompt_cache_retention); prompt_cache_options / "
            "prompt_cache_breakpoint for gpt-5.6+ per the OpenAPI spec as mirrored in generated "
            "SDK docs (docs.rs openai-client-base 0.16) and the pydantic-ai gpt-5.6 recordings. "
            "No request opt-out for automatic caching; on gpt-5.6+ explicit mode without "
            "breakpoints caches nothing (placed by promptcache.providers.hints)."
        ),
    ),
    "heroku": GatewayProfile(
        name="heroku",
        # Heroku places its own checkpoints on system prompts and tool definitions; whether it
        # forwards caller markers or OpenAI keys is not documented: UNCONFIRMED, so none sent.
        accepts=frozenset(),
        usage_fields=(),  # UNCONFIRMED: the launch post names no usage field for cache reads
        opt_out_headers={"X-Heroku-Prompt-Caching": "false"},
        source=(
            "heroku.com/blog/faster-agents-automatic-prompt-caching and devcenter.heroku.com/"
            "changelog-items/3495: automatic caching of system prompts and tools, 5 minute expiry, "
            "disable per request with X-Heroku-Prompt-Caching: false."
        ),
    ),
    "vllm": GatewayProfile(
        name="vllm",
        # Automatic prefix caching is server-side (--enable-prefix-caching); vLLM's OpenAI server
        # has no prompt_cache_key. UNCONFIRMED whether unknown fields are ignored or refused.
        accepts=frozenset(),
        isolation_field="cache_salt",
        usage_fields=("prompt_tokens_details.cached_tokens",),
        source=(
            "docs.vllm.ai/en/latest/design/prefix_caching (hash-based automatic prefix caching; "
            "cache_salt isolates requests); prompt_tokens_details.cached_tokens only when the "
            "server runs with --enable-prompt-tokens-details (vllm-project/vllm issue #16162). "
            "No opt-out switch: promptcache sends a one-off cache_salt so nothing is shared."
        ),
    ),
    "openrouter": GatewayProfile(
        name="openrouter",
        # cache_control is forwarded to Anthropic / Gemini / Alibaba models; OpenAI models cache
        # automatically. session_id (body, or x-session-id header) is the sticky-routing key.
        # UNCONFIRMED: whether prompt_cache_key / prompt_cache_options pass through for OpenAI.
        accepts=frozenset({"cache_control"}),
        key_field="session_id",
        usage_fields=("prompt_tokens_details.cached_tokens", "prompt_tokens_details.cache_write_tokens"),
        source=(
            "openrouter.ai/docs/guides/best-practices/prompt-caching (cache_control breakpoints, "
            "provider sticky routing, session_id up to 256 chars, usage cached tokens); "
            "cache_write_tokens as listed by OpenRouter-compatible gateway docs: UNCONFIRMED. "
            "No documented opt-out."
        ),
    ),
    "litellm": GatewayProfile(
        name="litellm",
        accepts=frozenset({"cache_control", "prompt_cache_key"}),
        usage_fields=(
            "prompt_tokens_details.cached_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ),
        source=(
            "docs.litellm.ai/docs/completion/prompt_caching (OpenAI-format usage with "
            "prompt_tokens_details.cached_tokens; Anthropic-only cache_creation_input_tokens; "
            "cache_control forwarded to Anthropic, Bedrock, Vertex, Gemini); prompt_cache_key "
            "passed to OpenAI: UNCONFIRMED. LiteLLM's own cache switches (cache: {no-cache}) govern "
            "its response cache, not provider prompt caching: no opt-out."
        ),
    ),
}


def adapt_for_gateway(
    body: Mapping[str, Any],
    profile: GatewayProfile,
    fmt: str | WireFormat = WireFormat.OPENAI_CHAT,
    *,
    forbid_caching: bool = False,
    tenant: str | None = None,
) -> GatewayRequest:
    """Fit a prepared ``body`` to ``profile``; returns the body, extra headers and notes.

    ``forbid_caching`` (the policy keeps some content out of provider caches): every hint is
    removed and the gateway's opt-out header or body field is set; a gateway with neither
    gets a note saying caching may still happen. ``tenant`` scopes ``isolation_field``.
    """
    wf = parse_format(fmt)
    notes: list[str] = []
    headers: dict[str, str] = {}
    present = [k for k in sorted(ALL_HINT_KINDS) if strip_hints(body, wf, {k}) != dict(body)]
    key = body.get("prompt_cache_key")
    if forbid_caching:
        out = strip_hints(body, wf)
        dropped = present
        headers.update(profile.opt_out_headers)
        out.update(profile.opt_out_body)
        if profile.isolation_field:
            # A salt nobody else sends: this request's prefix is never reused.
            out[profile.isolation_field] = "pc-" + uuid.uuid4().hex
        elif not (profile.opt_out_headers or profile.opt_out_body):
            notes.append(f"{profile.name}: no opt-out switch; the gateway may still cache this prompt")
        return GatewayRequest(body=out, headers=headers, dropped=dropped, notes=notes)
    dropped = [k for k in present if k not in profile.accepts]
    out = strip_hints(body, wf, set(dropped)) if dropped else dict(body)
    if profile.key_field and isinstance(key, str) and profile.key_field not in out:
        out[profile.key_field] = key
        notes.append(f"prompt_cache_key sent as {profile.key_field}")
    if profile.isolation_field and profile.isolation_field not in out and tenant:
        out[profile.isolation_field] = "pc-" + hashlib.sha256(tenant.encode()).hexdigest()[:32]
    return GatewayRequest(body=out, headers=headers, dropped=dropped, notes=notes)


def adapt_prepared(prepared: Prepared, profile: GatewayProfile, policy: Policy) -> GatewayRequest:
    """:func:`adapt_for_gateway` for a :class:`Prepared` request, with the opt-out decided by
    ``policy`` over the data classes found in the plan, and isolation by the plan's tenant."""
    plan = prepared.plan
    return adapt_for_gateway(
        prepared.body,
        profile,
        plan.format or WireFormat.OPENAI_CHAT,
        forbid_caching=caching_forbidden(plan, policy),
        tenant=plan.tenant,
    )
