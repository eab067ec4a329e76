"""The tool-output cache: only ``pure`` and ``read_only`` tools are served from cache.

Every tool declares a side-effect class. An undeclared tool is
``side_effecting``; MCP annotations (``readOnlyHint``, ``idempotentHint``,
``destructiveHint``) are read when there is no explicit declaration. Outputs
are keyed by tenant, scope, tool name, tool schema version and the canonical
arguments; a successful write invalidates the tags it declares.

>>> from promptcache.tiers import TieredStore
>>> from promptcache.policy import Policy
>>> tools = ToolOutputCache(TieredStore(), Policy())
>>> spec = ToolSpec(name="get_fare", side_effect="read_only", tags=["fare:{route}"])
>>> tools.call(spec, {"route": "SFO-JFK"}, lambda route: {"usd": 210}, tenant="acme").lookup.hit
False
>>> tools.call(spec, {"route": "SFO-JFK"}, lambda route: {"usd": 210}, tenant="acme").lookup.hit
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from promptcache.artifacts._async.tools import AsyncToolCalls
from promptcache.artifacts._common import (
    ArtifactStats,
    Counters,
    LookupResult,
    TagTemplate,
    contract_for,
    encode_scanned,
    entry_tenant,
    fill_tags,
    key_for,
    key_refusal,
    refusal,
)
from promptcache.artifacts._flow import Call, keep, refuse
from promptcache.artifacts._sync.tools import SyncToolCalls
from promptcache.canonical import CanonicalizationError, canonical_json
from promptcache.figures import LookupReason
from promptcache.policy import EntryType as PolicyEntry
from promptcache.policy import Policy, Seconds
from promptcache.tiers.entry import EntryType
from promptcache.tiers.outcome import Produced
from promptcache.tiers.router import TieredStore

__all__ = ["McpAnnotations", "SideEffect", "ToolOutputCache", "ToolSpec"]

log = logging.getLogger("promptcache.artifacts")

T = TypeVar("T")


class SideEffect(StrEnum):
    """What calling a tool does to the world (only the first two may be served from cache)."""

    PURE = "pure"  # output depends on the arguments only
    READ_ONLY = "read_only"  # reads state that may change: cache with a TTL and tags
    IDEMPOTENT_WRITE = "idempotent_write"  # repeatable write: never cached, invalidates
    SIDE_EFFECTING = "side_effecting"  # anything else, and every undeclared tool


CACHEABLE = frozenset({SideEffect.PURE, SideEffect.READ_ONLY})


class McpAnnotations(BaseModel):
    """The MCP tool annotations promptcache reads (hints; the MCP defaults apply when absent)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    read_only: bool = Field(default=False, alias="readOnlyHint")
    destructive: bool = Field(default=True, alias="destructiveHint")
    idempotent: bool = Field(default=False, alias="idempotentHint")

    def side_effect(self) -> SideEffect:
        """The class these hints imply.

        ``readOnlyHint`` gives ``read_only`` (not ``pure``: the hint says nothing of
        determinism); an idempotent, non-destructive tool is an ``idempotent_write``;
        anything else is ``side_effecting``.
        """
        if self.read_only:
            return SideEffect.READ_ONLY
        if self.idempotent and not self.destructive:
            return SideEffect.IDEMPOTENT_WRITE
        return SideEffect.SIDE_EFFECTING


class ToolSpec(BaseModel):
    """A tool as the cache sees it.

    ``tags`` (for cached outputs) and ``invalidates`` (for writes) are templates
    filled from the arguments: ``reservation:{reservation_id}``. ``ttl`` is the
    freshness wanted (seconds or ``"5m"``), clamped to the policy's range.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    side_effect: SideEffect | None = None
    annotations: McpAnnotations | None = None
    ttl: Seconds | None = None
    tags: tuple[str, ...] = ()
    invalidates: tuple[str, ...] = ()
    schema_version: str = "1"

    @field_validator("tags", "invalidates")
    @classmethod
    def _templates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for t in value:
            TagTemplate(t)  # raises with the offending template
        return value

    @model_validator(mode="after")
    def _writes_invalidate(self) -> ToolSpec:
        if self.invalidates and self.effective_side_effect in CACHEABLE:
            raise ValueError(
                f"tool {self.name!r}: only writes invalidate; it is {self.effective_side_effect}"
            )
        return self

    @property
    def effective_side_effect(self) -> SideEffect:
        """The declared class, else the one the MCP annotations imply, else ``side_effecting``."""
        if self.side_effect is not None:
            return self.side_effect
        if self.annotations is not None:
            return self.annotations.side_effect()
        return SideEffect.SIDE_EFFECTING

    @property
    def cacheable(self) -> bool:
        """Whether outputs of this tool may be served from cache."""
        return self.effective_side_effect in CACHEABLE

    @classmethod
    def from_mcp(cls, tool: Mapping[str, Any] | Any, **overrides: Any) -> ToolSpec:
        """A spec from an MCP tool (a ``mcp.types.Tool`` or its dict form); ``overrides`` win."""
        if isinstance(tool, Mapping):
            name, ann = tool.get("name"), tool.get("annotations")
        else:
            name, ann = getattr(tool, "name", None), getattr(tool, "annotations", None)
        if ann is not None and not isinstance(ann, Mapping):
            dump = getattr(ann, "model_dump", None)
            ann = dump(by_alias=True, exclude_none=True) if callable(dump) else vars(ann)
        data: dict[str, Any] = {"name": name}
        if ann:
            data["annotations"] = {k: v for k, v in ann.items() if v is not None}
        return cls.model_validate({**data, **overrides})

    def tag_templates(self) -> tuple[TagTemplate, ...]:
        """Parsed ``tags``."""
        return tuple(TagTemplate(t) for t in self.tags)


def tool_tag(name: str) -> str:
    """The tag every cached output of tool ``name`` carries (invalidate it to drop them all)."""
    return f"tool:{name}"


def _unkeyable_reason(args: Mapping[str, Any]) -> str:
    """Which argument keeps ``args`` out of canonical form (named, never shown)."""
    for k, v in args.items():
        if not isinstance(k, str):
            return f"argument names must be strings (got a {type(k).__name__})"
        try:
            canonical_json(v, where=f"argument {k!r}")
        except CanonicalizationError:
            return f"argument {k!r} is not JSON-serializable ({type(v).__name__})"
    return "arguments are not JSON-serializable"


class ToolOutputCache(SyncToolCalls, AsyncToolCalls):
    """Caches outputs of ``pure``/``read_only`` tools; runs writes and invalidates their tags.

    ``call``/``run`` and ``acall``/``arun`` are written once (``_async/tools.py``); the sync ones
    are generated.
    """

    def __init__(self, store: TieredStore, policy: Policy | None = None) -> None:
        """Use ``store`` (see :func:`open_store`) under ``policy`` (default policy if None)."""
        self.store = store
        self.policy = policy if policy is not None else Policy()
        self._counters = Counters()

    def stats(self) -> ArtifactStats:
        """Counters of this cache."""
        return self._counters.snapshot()

    # planning ----------------------------------------------------------------

    def _plan(
        self,
        spec: ToolSpec,
        args: Mapping[str, Any],
        tenant: str,
        scope: str,
        storable: Callable[[Any], Any] | None = None,
    ) -> Call[Any] | LookupResult:
        """The cached call to make, or the reason the call runs uncached."""
        if not spec.cacheable:
            self._counters.add("bypassed")
            detail = str(spec.effective_side_effect)
            return LookupResult(hit=False, reason=LookupReason.SIDE_EFFECT, detail=detail)
        planned = self.policy.decide(PolicyEntry.TOOL_OUTPUT, ttl=spec.ttl)
        if not planned.allowed:
            self._counters.add("refused_policy")
            return LookupResult(hit=False, reason=LookupReason.POLICY_DENIED, detail=planned.reason)
        try:
            tags = (*fill_tags(spec.tag_templates(), args), tool_tag(spec.name))
        except KeyError as exc:
            self._counters.add("unkeyable")
            detail = f"tag needs argument {exc.args[0]!r}"
            return LookupResult(hit=False, reason=LookupReason.UNKEYABLE, detail=detail)
        except ValueError as exc:
            self._counters.add("unkeyable")
            return LookupResult(hit=False, reason=LookupReason.UNKEYABLE, detail=str(exc))
        try:
            contract = contract_for(
                self.policy, tenant, scope, "tool", tool_schema_version=spec.schema_version
            )
            key = key_for(
                contract, EntryType.TOOL_OUTPUT, {"tool": spec.name, "args": dict(args)}, where="args"
            )
        except CanonicalizationError:
            self._counters.add("unkeyable")
            detail = _unkeyable_reason(args)
            return LookupResult(hit=False, reason=LookupReason.UNKEYABLE, detail=detail)
        except ValueError as exc:
            self._counters.add("unkeyable")
            return LookupResult(hit=False, reason=key_refusal(exc), detail=str(exc))

        def prepare(value: Any) -> Produced:
            return self._prepare(spec, value)

        return Call(
            store=self.store,
            counters=self._counters,
            kind=EntryType.TOOL_OUTPUT,
            key=key,
            tenant=entry_tenant(tenant, scope),
            tags=tags,
            planned_ttl_s=planned.ttl_seconds,
            prepare=prepare,
            decode=lambda v: v,
            storable=storable,
            policy=self.policy.identity,
        )

    def _prepare(self, spec: ToolSpec, value: Any) -> Produced:
        try:
            payload, classes = encode_scanned(EntryType.TOOL_OUTPUT, value)
        except TypeError:
            return refuse(LookupReason.UNSERIALIZABLE, "the tool output")
        d = self.policy.decide(PolicyEntry.TOOL_OUTPUT, data_classes=classes, ttl=spec.ttl)
        if not d.allowed:
            return refuse(refusal(classes), d.reason)
        return keep(payload, d.ttl_seconds, d.reason)

    # writes ------------------------------------------------------------------

    def _invalidation_targets(
        self, spec: ToolSpec, args: Mapping[str, Any]
    ) -> tuple[tuple[str, ...], str | None]:
        try:
            return fill_tags((TagTemplate(t) for t in spec.invalidates), args), None
        except KeyError as exc:
            return (), f"cannot fill an invalidation tag: argument {exc.args[0]!r} missing"
        except ValueError as exc:
            return (), f"cannot fill an invalidation tag: {exc}"

    def _invalidation_tenant(self, tenant: str, scope: str) -> str:
        """The tenant a write's invalidations are scoped to: the one whose entries its reads stored."""
        return entry_tenant(tenant, scope)

    def _count_invalidations(
        self, spec: ToolSpec, done: list[str], failed: list[str], err: str | None
    ) -> tuple[tuple[str, ...], tuple[str, ...], str]:
        """Count a write's invalidations: the tags done, the tags failed, why a tag could not be filled."""
        self._counters.add("invalidations", len(done))
        if failed:
            self._counters.add("invalidation_failed", len(failed))
        return tuple(done), tuple(failed), err or ""

    def _wrote(
        self, spec: ToolSpec, plan: LookupResult, done: tuple[str, ...], failed: tuple[str, ...], err: str
    ) -> LookupResult:
        # The lookup's ``why`` renders the counts; only a tag that could not be filled needs words.
        detail = f"{plan.detail}; {err}" if err else plan.detail
        return plan.model_copy(update={"invalidated": done, "invalidation_failed": failed, "detail": detail})

    def invalidate(self, tag: str, *, tenant: str | None = None) -> int:
        """Invalidate ``tenant``'s ``tag`` (``None``: every tenant's); raises ``InvalidationFailed``."""
        gen = self.store.invalidate(tag, tenant=tenant)
        self._counters.add("invalidations")
        return gen
