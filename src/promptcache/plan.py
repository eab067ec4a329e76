"""``Plan``: what promptcache decided for one request, and ``Prepared``.

A plan lists the blocks in the order they are sent, their canonical digests,
the section each sits in, the key of the stable prefix, the volatile values
moved out of it, the moves the layout made and the policy decisions.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from promptcache.blocks import Block
from promptcache.canonical import Fragment
from promptcache.explain import Explanation, Snapshot, compare, describe, provider_line
from promptcache.figures import ProviderMissReason
from promptcache.formats import WireFormat
from promptcache.keys import KeyContract, derive_key


class Move(BaseModel):
    """A block the layout moved, and why."""

    model_config = ConfigDict(frozen=True)

    block: str
    from_index: int
    to_index: int
    reason: str


class Hint(BaseModel):
    """A provider caching hint placed in the request (a breakpoint, a key)."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(description="cache_control, prompt_cache_key, cachePoint, ...")
    where: str = Field(description="JSON path of the hint in the request body")
    ttl: str | None = None
    prefix_tokens: int | None = Field(default=None, description="estimated tokens it covers")


class Plan(BaseModel):
    """The caching plan of one request.

    ``prefix_end`` is how many of ``blocks`` form the stable, cacheable prefix
    (system, developer, tools, examples, static context); ``prefix_key`` is its
    tenant-scoped key. ``explain()`` says why this prefix differs from the
    family's previous request.
    """

    model_config = ConfigDict(frozen=True)

    format: WireFormat | None = None
    model: str
    tenant: str
    family: str
    blocks: list[Block]
    digests: list[str]
    sections: list[str]
    prefix_end: int
    prefix_key: str
    conversation_key: str = Field(description="key of the prefix through the history")
    routing_key: str = Field(
        default="", description="key a provider routes by: tenant, model, tool set, system prompt start"
    )
    fragments: list[Fragment] = Field(default_factory=list)
    moves: list[Move] = Field(default_factory=list)
    hints: list[Hint] = Field(default_factory=list)
    decisions: list[str] = Field(default_factory=list)
    data_classes: dict[int, list[str]] = Field(
        default_factory=dict, description="detected data classes per block index"
    )
    mode: str = "active"

    _contract: KeyContract | None = PrivateAttr(default=None)
    _snapshot: Snapshot | None = PrivateAttr(default=None)
    _previous: Snapshot | None = PrivateAttr(default=None)
    #: (tenant, conversation id) of a request sent with cache diagnostics (Anthropic, OpenAI).
    _chain: tuple[str, bytes] | None = PrivateAttr(default=None)
    #: The provider's verdict on this request, once its answer was read.
    _provider: tuple[ProviderMissReason, int | None] | None = PrivateAttr(default=None)

    def with_hints(self, hints: list[Hint], decisions: list[str]) -> Plan:
        """A copy carrying the provider hints placed and the policy notes."""
        return self.model_copy(update={"hints": hints, "decisions": decisions})

    def block_key(self, index: int, entry_type: str = "prompt_block") -> str:
        """The tenant-scoped cache key of block ``index``."""
        if self._contract is None:
            raise RuntimeError("this plan was not produced by PromptCache and has no key contract")
        return derive_key(self._contract, entry_type, self.digests[index])

    @property
    def block_keys(self) -> list[str]:
        """Keys of every block, in order (computed on demand)."""
        return [self.block_key(i) for i in range(len(self.blocks))]

    def explain(self) -> Explanation:
        """Why this request's cacheable prefix differs from the last one of its family."""
        if self._snapshot is None:
            found = Explanation(family=self.family, first_in_family=True, prefix_unchanged=False, changes=[])
        else:
            found = compare(self.family, self._previous, self._snapshot)
        if self._provider is None:
            return found
        reason, missed = self._provider
        return found.model_copy(update={"provider_reason": reason, "provider_missed_tokens": missed})

    @property
    def provider_reason(self) -> ProviderMissReason | None:
        """The provider's own verdict on this request's miss, once its answer was read (None:
        none given, or cache diagnostics not asked for)."""
        return self._provider[0] if self._provider is not None else None

    def explain_text(self) -> str:
        """``str(self.explain())``, without building the explanation when nothing changed
        (what integrations put in every call's metadata)."""
        # From the private dict itself: pydantic serves private attributes through a
        # __getattr__ that first fails a normal lookup, twice per call here.
        private = self.__pydantic_private__ or {}
        text = describe(self.family, private.get("_previous"), private.get("_snapshot"))
        provider = private.get("_provider")
        return text if provider is None else text + provider_line(*provider)


class Prepared(BaseModel):
    """A request rewritten for caching: ``body`` (same wire format) and its ``plan``."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    body: dict[str, Any]
    plan: Plan
