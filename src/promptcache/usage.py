"""``CacheUsage``: what one model call cost, normalized across providers.

Every provider reports prompt caching differently (Anthropic's
``cache_creation_input_tokens`` and its 5m/1h breakdown, OpenAI's
``prompt_tokens_details.cached_tokens``, Bedrock's ``cacheReadInputTokens``,
Gemini's ``cachedContentTokenCount``). ``CacheUsage`` is the one shape the rest
of promptcache (pricing, telemetry, the framework integrations) works with.

``input_tokens`` always counts *every* prompt token, cached or not, so that
``cache_read_tokens / input_tokens`` is the cached share of the prompt.

>>> u = CacheUsage(provider="anthropic", model="claude-sonnet-4-5",
...                input_tokens=1514, cache_read_tokens=1111, cache_write_tokens=403,
...                output_tokens=12)
>>> round(u.cached_fraction, 3)
0.734
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CacheUsage(BaseModel):
    """Token usage of one model call, with prompt-cache reads and writes.

    ``uncached_input_tokens`` is what the provider billed at the plain input
    rate: ``input_tokens - cache_read_tokens - cache_write_tokens``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str = Field(description="provider family: anthropic, openai, bedrock, gemini, ...")
    model: str | None = Field(default=None, description="model id as reported or requested")
    input_tokens: int = Field(default=0, ge=0, description="every prompt token, cached or not")
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    cache_write_tokens_by_ttl: dict[str, int] = Field(
        default_factory=dict, description='e.g. {"5m": 14, "1h": 2056} where the provider says'
    )
    output_tokens: int = Field(default=0, ge=0, description="billed output, thinking included")
    thinking_tokens: int = Field(default=0, ge=0, description="part of output_tokens, if reported")

    @model_validator(mode="after")
    def _consistent(self) -> CacheUsage:
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "cache_read_tokens + cache_write_tokens exceeds input_tokens; input_tokens "
                "must count every prompt token, cached or not"
            )
        return self

    @property
    def uncached_input_tokens(self) -> int:
        """Prompt tokens billed at the plain input rate."""
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    @property
    def cached_fraction(self) -> float:
        """Share of the prompt served from the provider's cache (0.0 when there is no prompt)."""
        return self.cache_read_tokens / self.input_tokens if self.input_tokens else 0.0

    def __add__(self, other: CacheUsage) -> CacheUsage:
        ttl = dict(self.cache_write_tokens_by_ttl)
        for k, v in other.cache_write_tokens_by_ttl.items():
            ttl[k] = ttl.get(k, 0) + v
        return CacheUsage(
            provider=self.provider if self.provider == other.provider else "mixed",
            model=self.model if self.model == other.model else None,
            input_tokens=self.input_tokens + other.input_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_write_tokens_by_ttl=ttl,
            output_tokens=self.output_tokens + other.output_tokens,
            thinking_tokens=self.thinking_tokens + other.thinking_tokens,
        )
