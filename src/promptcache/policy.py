"""Policy: what may be cached, for how long and for whom.

A :class:`Policy` is plain data (pydantic), loadable from YAML, TOML, JSON or
a dict, and versioned: its ``version`` enters every cache key, so changing the
policy never serves entries written under the old one.

Secrets are never cached, whatever the policy says. PII classes shorten or
deny TTLs as the policy says. A malformed policy fails at load time with a
message that names the field and the fix.

>>> p = Policy.load({"version": "7", "entries": {"tool_output": {"ttl": {"default": "10m"}}}})
>>> p.decide("tool_output").ttl_seconds
600
>>> p.decide("tool_output", data_classes={"secret"}).allowed
False
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from promptcache.blocks import BlockKind
from promptcache.detect import SECRET


class EntryType(StrEnum):
    """The kinds of thing promptcache caches or marks for caching."""

    PROMPT_PREFIX = "prompt_prefix"
    CONTEXT_BUNDLE = "context_bundle"
    RETRIEVAL_RESULT = "retrieval_result"
    TOOL_OUTPUT = "tool_output"
    MODEL_RESPONSE = "model_response"


_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


#: The longest TTL a policy may state: ten years. Stores take far less than what an unbounded
#: integer allows (Redis drops an expiry past 2**63 ms without an error), so a larger figure is
#: a mistake to report, not a value to pass on.
MAX_TTL_S = 10 * 365 * 86400


def parse_duration(value: Any) -> Any:
    """Seconds from ``300``, ``"300s"``, ``"5m"``, ``"1h"`` or ``"2d"``."""
    if isinstance(value, bool):
        # pydantic would read true as 1 second: a YAML "yes" is not a duration.
        raise ValueError(f"{value!r} is not a duration; write seconds (300) or '5m', '1h', '2d'")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m or m.group(2) == "ms":
            raise ValueError(f"{value!r} is not a duration; write seconds (300) or '5m', '1h', '2d'")
        return int(m.group(1)) * _UNIT[m.group(2)]
    return value


Seconds = Annotated[int, BeforeValidator(parse_duration), Field(ge=0, le=MAX_TTL_S)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TTLRange(_Strict):
    """Allowed TTLs in seconds; ``default`` is used when the caller asks for none."""

    min: Seconds = Field(default=0, description="shortest TTL a caller may ask for")
    default: Seconds = Field(default=300, description="TTL when the caller asks for none")
    max: Seconds = Field(default=86400, description="longest TTL a caller may ask for")

    @model_validator(mode="after")
    def _ordered(self) -> TTLRange:
        if not self.min <= self.default <= self.max:
            raise ValueError(
                f"need min <= default <= max, got {self.min} / {self.default} / {self.max} seconds"
            )
        return self


class EntryRule(_Strict):
    """Rules for one entry type."""

    eligible: bool = Field(default=True, description="whether this entry type may be cached at all")
    ttl: TTLRange = Field(default=TTLRange(), description="allowed TTLs for this entry type")
    stale_while_revalidate: Seconds = Field(
        default=0, description="seconds an expired entry may still be served while it refreshes"
    )


class DataClassRule(_Strict):
    """What to do when content of a data class (e.g. ``pii.email``) is present."""

    action: Literal["allow", "shorten", "deny"] = Field(
        default="shorten", description="allow as usual, cap the TTL at max_ttl, or never cache"
    )
    max_ttl: Seconds | None = Field(default=3600, description="cap for action='shorten'")
    provider_caching: bool = Field(
        default=True, description="may provider-side prompt caching cover this content"
    )


class ResponseCacheRule(_Strict):
    """When a model response may be served from promptcache's own cache."""

    max_temperature: float = Field(default=0.2, ge=0, description="highest sampling temperature cached")
    require_structured_output: bool = Field(
        default=True, description="only responses constrained by a JSON schema / structured output"
    )
    allow_with_tools: bool = Field(
        default=False, description="allow when the request offers tools (side effects possible)"
    )


class RelocationRule(_Strict):
    """Moving volatile values out of the stable prefix."""

    enabled: bool = Field(default=True, description="move volatile values out of the stable prefix")
    disabled_kinds: frozenset[BlockKind] = Field(
        default=frozenset(), description="block kinds whose volatile values stay in place"
    )
    learn_after: int = Field(
        default=2, ge=1, description="changes of the same line in a family before it is learned"
    )


class LayoutRule(_Strict):
    """Static-first layout switches."""

    pin_tool_order: bool = Field(
        default=False, description="keep the caller's tool order instead of sorting by name"
    )


def _default_entries() -> dict[EntryType, EntryRule]:
    return {
        EntryType.PROMPT_PREFIX: EntryRule(ttl=TTLRange(min=300, default=300, max=86400)),
        EntryType.CONTEXT_BUNDLE: EntryRule(ttl=TTLRange(default=3600)),
        EntryType.RETRIEVAL_RESULT: EntryRule(ttl=TTLRange(default=900)),
        EntryType.TOOL_OUTPUT: EntryRule(ttl=TTLRange(default=300)),
        EntryType.MODEL_RESPONSE: EntryRule(ttl=TTLRange(default=3600)),
    }


def _default_data_classes() -> dict[str, DataClassRule]:
    return {
        "pii.email": DataClassRule(action="shorten", max_ttl=3600),
        "pii.phone": DataClassRule(action="shorten", max_ttl=3600),
        "pii.national_id": DataClassRule(action="deny", max_ttl=None, provider_caching=False),
        "pii.financial": DataClassRule(action="deny", max_ttl=None, provider_caching=False),
    }


class Decision(_Strict):
    """The outcome of a policy check: allowed or not, the TTL, and why."""

    allowed: bool
    ttl_seconds: int = 0
    reason: str


_DecisionKey = tuple["EntryType", frozenset[str], int | None]


class Policy(_Strict):
    """The whole caching policy. See the module docstring for an example."""

    version: str = Field(default="1", description="enters every key: a new version never serves old entries")
    require_tenant: bool = Field(
        default=False, description="refuse calls that carry no tenant (multi-tenant deployments)"
    )
    default_tenant: str = Field(
        default="default",
        min_length=1,
        description="tenant used when none is given and none is required (not empty)",
    )
    allow_public: bool = Field(
        default=False, description="whether entries may use the cross-tenant 'public' scope"
    )
    entries: dict[EntryType, EntryRule] = Field(
        default_factory=_default_entries,
        description="rules per entry type; unnamed types keep their defaults",
    )
    data_classes: dict[str, DataClassRule] = Field(
        default_factory=_default_data_classes,
        description="rules per detected data class (pii.email, pii.phone, pii.national_id, ...)",
    )
    response_cache: ResponseCacheRule = Field(
        default=ResponseCacheRule(), description="when model responses may be served from cache"
    )
    relocation: RelocationRule = Field(default=RelocationRule(), description="volatile-value relocation")
    layout: LayoutRule = Field(default=LayoutRule(), description="static-first layout switches")
    # decide() results by (entry type, classes, ttl): a policy is frozen, and the
    # engine asks the same question on every call of an agent.
    _decisions: dict[tuple[EntryType, frozenset[str], int | None], Decision] = PrivateAttr(
        default_factory=dict
    )
    _identity: str | None = PrivateAttr(default=None)

    @property
    def identity(self) -> str:
        """A digest of this policy's whole content (every field, defaults included).

        Every entry an artifact cache stores carries the identity of the policy that
        admitted it, and a reader serves only entries of its own policy: two policies
        sharing one store, even with the same ``version``, never serve each other's
        entries (issue 19, item 5). Equal content gives an equal identity, whatever file
        format or key order it was loaded from.

        >>> Policy().identity == Policy.load({"version": "1"}).identity
        True
        >>> Policy().identity == Policy.load({"allow_public": True}).identity
        False
        """
        if self._identity is None:
            text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
            self._identity = hashlib.sha256(text.encode()).hexdigest()[:32]
        return self._identity

    @model_validator(mode="before")
    @classmethod
    def _merge_entry_defaults(cls, data: Any) -> Any:
        # A policy file names only what it changes; unnamed entry types keep defaults.
        if isinstance(data, Mapping) and isinstance(data.get("entries"), Mapping):
            merged: dict[str, Any] = {k.value: v.model_dump() for k, v in _default_entries().items()}
            for k, v in data["entries"].items():
                base = merged.get(str(k), {})
                merged[str(k)] = {**base, **v} if isinstance(v, Mapping) else v
            data = {**data, "entries": merged}
        return data

    @model_validator(mode="after")
    def _secrets_never(self) -> Policy:
        rule = self.data_classes.get(SECRET)
        if rule is not None and rule.action != "deny":
            raise ValueError(
                "data_classes.secret: secrets are never cached; remove this entry or set action: deny"
            )
        return self

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any]) -> Policy:
        """Load a policy from a YAML/TOML/JSON file path or a mapping.

        Raises :class:`PolicyError` naming the offending field.
        """
        where = "policy"
        if isinstance(source, Mapping):
            data: Any = dict(source)
        else:
            path = Path(source)
            where = str(path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise PolicyError(f"{where}: cannot read the policy file ({exc.strerror})") from None
            try:
                if path.suffix in (".yaml", ".yml"):
                    data = yaml.safe_load(text)
                elif path.suffix == ".toml":
                    data = tomllib.loads(text)
                elif path.suffix == ".json":
                    data = json.loads(text)
                else:
                    raise PolicyError(
                        f"{where}: unknown policy file type {path.suffix!r}; use .yaml, .toml or .json"
                    )
            except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
                raise PolicyError(f"{where}: not valid {path.suffix[1:].upper()}: {exc}") from None
            if data is None:
                data = {}
        if not isinstance(data, Mapping):
            raise PolicyError(f"{where}: the policy must be a mapping of fields, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PolicyError.from_validation(exc, where) from None

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with changes; its decisions are worked out afresh (pydantic's copy
        would share this policy's memo of them)."""
        copy = super().model_copy(update=update, deep=deep)
        copy._decisions = {}
        copy._identity = None
        return copy

    def entry(self, entry_type: EntryType | str) -> EntryRule:
        """The rule for ``entry_type``."""
        rule = self.entries.get(entry_type if type(entry_type) is EntryType else EntryType(entry_type))
        return _INELIGIBLE if rule is None else rule

    def decide(
        self,
        entry_type: EntryType | str,
        *,
        data_classes: Iterable[str] = (),
        ttl: int | None = None,
    ) -> Decision:
        """May an entry of ``entry_type`` holding ``data_classes`` be cached, and for how long?"""
        et = entry_type if type(entry_type) is EntryType else EntryType(entry_type)
        classes = frozenset(data_classes)
        key = (et, classes, ttl)
        # Straight from pydantic's private dict: attribute access to a private
        # attribute goes through __getattr__ and cost more than the lookup.
        memo: dict[_DecisionKey, Decision] = self.__pydantic_private__["_decisions"]  # type: ignore[index]
        hit = memo.get(key)
        if hit is None:
            hit = self._decide(et, classes, ttl)
            if len(memo) < 4096:
                memo[key] = hit
        return hit

    def _decide(self, et: EntryType, classes: frozenset[str], ttl: int | None) -> Decision:
        rule = self.entry(et)
        if not rule.eligible:
            return Decision(allowed=False, reason=f"policy: {et.value} is not eligible")
        if SECRET in classes:
            return Decision(allowed=False, reason="secret detected: never cached")
        wanted = rule.ttl.default if ttl is None else ttl
        chosen = min(max(wanted, rule.ttl.min), rule.ttl.max)
        reason = f"{et.value}: ttl {chosen}s"
        for dc in sorted(classes):
            dcr = self.data_classes.get(dc)
            if dcr is None:
                continue
            if dcr.action == "deny":
                return Decision(allowed=False, reason=f"data class {dc}: denied by policy")
            if dcr.action == "shorten" and dcr.max_ttl is not None and chosen > dcr.max_ttl:
                chosen = dcr.max_ttl
                reason = f"{et.value}: ttl shortened to {chosen}s for {dc}"
        return Decision(allowed=True, ttl_seconds=chosen, reason=reason)

    def provider_caching_allowed(self, data_classes: Iterable[str]) -> bool:
        """Whether provider-side prompt caching may cover content of these classes."""
        for dc in data_classes:
            if dc == SECRET:
                return False
            rule = self.data_classes.get(dc)
            if rule is not None and not rule.provider_caching:
                return False
        return True


# Built once: constructing a model on every lookup of an absent entry type was
# a measurable share of a warm prepare_request.
_INELIGIBLE = EntryRule(eligible=False)


class PolicyError(ValueError):
    """A policy that cannot be loaded; the message names the field and the fix."""

    @classmethod
    def from_validation(cls, exc: ValidationError, where: str) -> PolicyError:
        """Turn pydantic's errors into one message per field, with a hint."""
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field; check the spelling against the policy reference"
            lines.append(f"  field '{loc}': {msg} (got {err.get('input')!r})")
        return cls(f"{where}: invalid policy\n" + "\n".join(lines))
