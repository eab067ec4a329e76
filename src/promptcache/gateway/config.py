"""The gateway's settings: upstreams, timeout, store and policy, checked once at start.

Bad values are refused with the field named and the fix (DESIGN: bad input gets a clear error):

>>> try:
...     GatewayConfig(openai_upstream="api.openai.com/v1")
... except ValueError as exc:
...     print(exc.errors()[0]["msg"])
Value error, openai_upstream: 'api.openai.com/v1' is not an http(s) URL; give e.g. https://api.openai.com/v1
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DEFAULT_ANTHROPIC_UPSTREAM", "DEFAULT_OPENAI_UPSTREAM", "GatewayConfig"]

#: Where OpenAI requests go unless told otherwise (the SDK's own default base URL).
DEFAULT_OPENAI_UPSTREAM = "https://api.openai.com/v1"
#: Where Anthropic requests go unless told otherwise (the SDK adds ``/v1``, as the gateway does).
DEFAULT_ANTHROPIC_UPSTREAM = "https://api.anthropic.com"


class GatewayConfig(BaseModel):
    """What ``promptcache proxy`` serves and where it forwards."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    openai_upstream: str = Field(
        default=DEFAULT_OPENAI_UPSTREAM,
        description="base URL of the OpenAI API, /v1 included ({base}/chat/completions, {base}/responses)",
    )
    anthropic_upstream: str = Field(
        default=DEFAULT_ANTHROPIC_UPSTREAM,
        description="base URL of the Anthropic API, without /v1 ({base}/v1/messages)",
    )
    upstream_timeout: float = Field(
        default=600.0,
        description="seconds to wait for the upstream: connecting, and between two chunks of an answer",
    )
    store: str | None = Field(
        default=None,
        description="L2 store (redis://..., or a SQLite directory); with one, learned layouts are shared",
    )
    policy: str | None = Field(default=None, description="policy file (.yaml, .toml or .json)")
    max_connections: int = Field(
        default=200, description="upstream connections kept at most (per upstream host)"
    )

    @field_validator("openai_upstream", "anthropic_upstream")
    @classmethod
    def _http_url(cls, value: str, info: object) -> str:
        name = getattr(info, "field_name", "upstream")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            example = DEFAULT_OPENAI_UPSTREAM if name == "openai_upstream" else DEFAULT_ANTHROPIC_UPSTREAM
            raise ValueError(f"{name}: {value!r} is not an http(s) URL; give e.g. {example}")
        if parts.query or parts.fragment:
            raise ValueError(f"{name}: {value!r} has a query or fragment; give the base URL only")
        return value.rstrip("/")

    @field_validator("upstream_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not value > 0 or value == float("inf"):
            raise ValueError(f"upstream_timeout: {value!r}; give a positive number of seconds")
        return value

    @field_validator("max_connections")
    @classmethod
    def _connections(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"max_connections: {value!r}; give at least 1")
        return value
