"""The model catalog: which models cache how, and what their tokens cost.

The figures live in ``promptcache/data/models.yaml`` (dated, with a source note per provider),
not in code. :func:`load_catalog` reads it, optionally merged with your own overrides, and
:meth:`Catalog.lookup` finds a model by the id a provider reports, tolerating the decorations
providers add::

    >>> catalog = load_catalog()
    >>> catalog.lookup("us.anthropic.claude-3-7-sonnet-20250219-v1:0", provider="bedrock").id
    'claude-3-7-sonnet'
    >>> catalog.lookup("gpt-4o-mini-2024-07-18").prices.cache_read
    0.075

An unknown model raises :class:`UnknownModelError` (a ``KeyError``) that says how to add it::

    >>> custom = load_catalog(overrides={"providers": {"openai": {"models": {
    ...     "my-finetune": {"prices": {"input": 1.0, "output": 2.0, "cache_read": 0.5}}}}}})
    >>> custom.lookup("my-finetune").prices.output
    2.0
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

__all__ = [
    "CacheRules",
    "Capability",
    "Catalog",
    "FamilySpec",
    "LongContextTier",
    "ModelInfo",
    "ModelSpec",
    "Prices",
    "ProviderInfo",
    "UnknownModelError",
    "load_catalog",
]


class Prices(BaseModel):
    """USD per million tokens (``cache_storage_per_hour``: per million tokens per hour).

    ``cache_read`` is None where the provider publishes no cached-input price.
    ``cache_write`` maps a TTL label (``"5m"``, ``"1h"``) to its write price; an empty map
    means writes cost the plain input rate.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: dict[str, float] = Field(default_factory=dict)
    cache_storage_per_hour: float | None = Field(default=None, ge=0)

    @field_validator("cache_write")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        for ttl, price in value.items():
            if price < 0:
                raise ValueError(f"cache_write[{ttl!r}] must be non-negative, got {price}")
        return value


class LongContextTier(BaseModel):
    """Prices that apply to a whole call once its prompt exceeds ``threshold_tokens``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold_tokens: int = Field(gt=0)
    prices: Prices


Capability = Literal["mid_conversation_system", "mid_conversation_tools"]
"""What a model accepts beyond plain prompt caching, as the provider's docs list it:
``mid_conversation_system`` (a ``{"role": "system"}`` message inside the conversation) and
``mid_conversation_tools`` (``tool_addition`` / ``tool_removal`` blocks in such a message), per
platform.claude.com/docs/en/build-with-claude/mid-conversation-system-messages (read 2026-12-07)."""


class ModelSpec(BaseModel):
    """One catalog entry as written in the YAML file.

    ``source`` / ``source_date``: the page the entry was read from and the day, when the entry
    names its own (else its provider's); ``capabilities``: see :data:`Capability`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str | None = None
    source_date: date | None = None
    capabilities: list[Capability] = Field(default_factory=list)

    min_cacheable_tokens: int | None = Field(default=None, ge=0)
    cache_increment_tokens: int | None = Field(default=None, gt=0)
    ttl_options: list[str] = Field(default_factory=list)
    prices: Prices
    long_context: LongContextTier | None = None
    default_write_ttl: str | None = Field(
        default=None, description="overrides the provider's label for unlabelled writes"
    )
    notes: str | None = None


class FamilySpec(BaseModel):
    """Caching rules the provider's docs say a whole family of ids shares (no prices: a model
    known only by its family is unpriced)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    source_date: date
    min_cacheable_tokens: int | None = Field(default=None, ge=0)
    ttl_options: list[str] = Field(default_factory=list)
    capabilities: list[Capability] = Field(default_factory=list)


class ProviderInfo(BaseModel):
    """A provider's models, where the figures came from, and how it bills writes.

    ``families`` maps an id prefix (``"claude-"``, ``"arn:aws:bedrock:"``) to the rules its ids
    share, for ids the ``models`` table lacks (:meth:`Catalog.rules`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="where the figures were read, for humans")
    source_date: date | None = Field(default=None, description="overrides the catalog date")
    default_write_ttl: str | None = Field(
        default=None, description="TTL label of a write the usage does not label"
    )
    write_premium: bool = Field(description="True if cache writes cost more than plain input")
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    families: dict[str, FamilySpec] = Field(default_factory=dict)


class CacheRules(BaseModel):
    """How a model caches, whether the catalog knows the model itself or only its family.

    ``family`` is the prefix whose shared rules apply (None: the model's own entry);
    ``priced`` is False for a family match, whose prices the catalog does not guess.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    provider: str
    family: str | None
    min_cacheable_tokens: int | None
    ttl_options: tuple[str, ...]
    capabilities: frozenset[str]
    priced: bool
    source: str
    source_date: date


class ModelInfo(BaseModel):
    """A resolved catalog entry: the spec plus its id, provider and dating."""

    model_config = ConfigDict(frozen=True)

    id: str
    provider: str
    spec: ModelSpec
    default_write_ttl: str | None
    write_premium: bool
    source: str
    source_date: date

    @property
    def prices(self) -> Prices:
        """The standard-tier prices."""
        return self.spec.prices

    @property
    def capabilities(self) -> frozenset[str]:
        """What the model accepts beyond plain prompt caching (:data:`Capability`)."""
        return frozenset(self.spec.capabilities)

    def prices_for(self, input_tokens: int) -> Prices:
        """The prices that apply to a call with ``input_tokens`` prompt tokens in all."""
        tier = self.spec.long_context
        if tier is not None and input_tokens > tier.threshold_tokens:
            return tier.prices
        return self.spec.prices


class UnknownModelError(KeyError):
    """The catalog has no entry for a model; the message says how to add one."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; show the sentence itself.
        return str(self.args[0]) if self.args else ""


# A "us." / "eu." / ... Bedrock inference-profile prefix, and a vendor prefix after it.
_REGION = re.compile(r"^(?:us|eu|apac|ap|jp|au|ca|us-gov|global)\.")
_VENDOR = re.compile(r"^(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen)\.")
_BEDROCK_VERSION = re.compile(r"(?:-v\d+(?::\d+)?|:\d+)$")
_DATE = re.compile(r"(?:[-@]\d{8}|-\d{4}-\d{2}-\d{2}|-\d{3})$")
# Words that name a different (cheaper or dearer) sibling model: a prefix match must not cross
# them, or "gpt-5-pro" would be priced as "gpt-5" and "o4-mini-deep-research" as "o4-mini".
_VARIANT_WORDS = frozenset(
    {
        "mini",
        "nano",
        "lite",
        "micro",
        "pro",
        "max",
        "premier",
        "flash",
        "haiku",
        "sonnet",
        "opus",
        "deep",
        "research",
        "audio",
        "realtime",
        "search",
        "image",
        "tts",
        "transcribe",
        "codex",
        "fast",
    }
)


def _strip_date(model: str) -> str:
    return _DATE.sub("", model)


def _candidates(model: str) -> Iterator[str]:
    """Ever more normalized spellings of ``model``, most specific first."""
    seen: set[str] = set()

    def fresh(value: str) -> bool:
        if value and value not in seen:
            seen.add(value)
            return True
        return False

    base = model.strip()
    if fresh(base):
        yield base
    # "models/gemini-2.5-flash", "openai/gpt-4o": the last path segment is the model.
    tail = base.rsplit("/", 1)[-1]
    unversioned = _BEDROCK_VERSION.sub("", tail)
    for value in (tail, unversioned, _strip_date(unversioned)):
        if fresh(value):
            yield value
    # A Bedrock inference-profile id: keep the profile first (global pricing differs), then drop it.
    bare = _VENDOR.sub("", _REGION.sub("", unversioned))
    for value in (bare, _strip_date(bare)):
        if fresh(value):
            yield value


def _is_bedrock_id(model: str) -> bool:
    stripped = _REGION.sub("", model)
    return bool(_VENDOR.match(stripped)) or bool(_BEDROCK_VERSION.search(model))


class Catalog(BaseModel):
    """All providers' caching rules and prices, with the date they were checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    source_date: date
    currency: str = "USD"
    providers: dict[str, ProviderInfo]

    # lookup() answers by (model, provider): every priced call and every hint placement
    # asks, and the search below normalizes ids with regexes. Found models only, so an
    # unknown one still raises its explanation.
    _found: dict[tuple[str, str | None], ModelInfo] = PrivateAttr(default_factory=dict)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with changes, whose lookups start afresh (pydantic's copy would share them)."""
        copy = super().model_copy(update=update, deep=deep)
        copy._found = {}
        return copy

    def lookup(self, model: str, *, provider: str | None = None) -> ModelInfo:
        """Find ``model``: exact id, then normalized ids, then the longest safe prefix.

        ``provider`` narrows the search to one provider ("anthropic", "openai", "gemini",
        "bedrock"). Without it, a Bedrock-shaped id (``anthropic.`` / ``-v1:0``) searches
        Bedrock first, anything else the providers in file order.

        Raises :class:`UnknownModelError` naming the model and how to add it.
        """
        if provider is not None and provider not in self.providers:
            known = ", ".join(self.providers)
            raise UnknownModelError(
                f"provider {provider!r} is not in the promptcache catalog (known: {known}); "
                f"add it with load_catalog(overrides={{'providers': {{{provider!r}: {{...}}}}}})"
            )
        memo: dict[tuple[str, str | None], ModelInfo] = self.__pydantic_private__["_found"]  # type: ignore[index]
        hit = memo.get((model, provider))
        if hit is not None:
            return hit
        for name in self._search_order(model, provider):
            found = self._find_in(name, model)
            if found is not None:
                if len(memo) < 4096:
                    memo[(model, provider)] = found
                return found
        where = f"provider {provider!r}" if provider else "any provider"
        target = provider or "<provider>"
        raise UnknownModelError(
            f"model {model!r} is not in the promptcache price catalog for {where} "
            f"(source_date {self.source_date.isoformat()}). Add it with "
            f"load_catalog(overrides={{'providers': {{{target!r}: {{'models': {{{model!r}: "
            f"{{'prices': {{'input': ..., 'output': ..., 'cache_read': ...}}}}}}}}}}}}) "
            f"or an override YAML file of the same shape as promptcache/data/models.yaml"
        )

    def rules(self, model: str, *, provider: str | None = None) -> CacheRules | None:
        """The caching rules of ``model``: its own entry's, else those its family shares per the
        provider's docs (unpriced), else None. Never raises for an unknown model.

        >>> arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/abc"
        >>> r = load_catalog().rules(arn)
        >>> (r.provider, r.family, r.priced, r.ttl_options)
        ('bedrock', 'arn:aws:bedrock:', False, ('5m',))
        """
        try:
            info = self.lookup(model, provider=provider)
        except UnknownModelError:
            return self._family_rules(model, provider)
        return CacheRules(
            model=info.id,
            provider=info.provider,
            family=None,
            min_cacheable_tokens=info.spec.min_cacheable_tokens,
            ttl_options=tuple(info.spec.ttl_options),
            capabilities=info.capabilities,
            priced=True,
            source=info.source,
            source_date=info.source_date,
        )

    def _family_rules(self, model: str, provider: str | None) -> CacheRules | None:
        names = [provider] if provider is not None and provider in self.providers else list(self.providers)
        bare = model.strip()
        for name in names:
            info = self.providers[name]
            # The longest prefix first: a narrower family's rules win over a broader one's.
            for prefix in sorted(info.families, key=len, reverse=True):
                tail = bare.rsplit("/", 1)[-1] if not prefix.startswith("arn:") else bare
                if tail.startswith(prefix) or bare.startswith(prefix):
                    fam = info.families[prefix]
                    return CacheRules(
                        model=bare,
                        provider=name,
                        family=prefix,
                        min_cacheable_tokens=fam.min_cacheable_tokens,
                        ttl_options=tuple(fam.ttl_options),
                        capabilities=frozenset(fam.capabilities),
                        priced=False,
                        source=fam.source,
                        source_date=fam.source_date,
                    )
        return None

    def _search_order(self, model: str, provider: str | None) -> list[str]:
        if provider is not None:
            return [provider]
        names = list(self.providers)
        if "bedrock" in names and _is_bedrock_id(model):
            names.remove("bedrock")
            names.insert(0, "bedrock")
        return names

    def _find_in(self, provider: str, model: str) -> ModelInfo | None:
        info = self.providers[provider]
        candidates = list(_candidates(model))
        for candidate in candidates:
            if candidate in info.models:
                return self._resolve(provider, candidate)
        for candidate in candidates:
            best = self._longest_prefix(info, candidate)
            if best is not None:
                return self._resolve(provider, best)
        return None

    @staticmethod
    def _longest_prefix(info: ProviderInfo, candidate: str) -> str | None:
        best: str | None = None
        for known in info.models:
            if not candidate.startswith(known + "-"):
                continue
            extra = candidate[len(known) + 1 :].split("-")
            if _VARIANT_WORDS.intersection(extra):
                continue
            # "claude-sonnet-4-7" continues the version of "claude-sonnet-4": another model.
            if extra[0].isdigit() and len(extra[0]) <= 2:
                continue
            if best is None or len(known) > len(best):
                best = known
        return best

    def _resolve(self, provider: str, model_id: str) -> ModelInfo:
        info = self.providers[provider]
        return ModelInfo(
            id=model_id,
            provider=provider,
            spec=info.models[model_id],
            default_write_ttl=info.models[model_id].default_write_ttl or info.default_write_ttl,
            write_premium=info.write_premium or bool(info.models[model_id].prices.cache_write),
            source=info.models[model_id].source or info.source,
            source_date=info.models[model_id].source_date or info.source_date or self.source_date,
        )


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        prior = merged.get(key)
        if isinstance(prior, dict) and isinstance(value, Mapping):
            merged[key] = _deep_merge(prior, value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path | str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a catalog file must hold a mapping at the top level")
    return data


def _packaged() -> dict[str, Any]:
    text = resources.files("promptcache").joinpath("data/models.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("promptcache/data/models.yaml must hold a mapping at the top level")
    return data


def load_catalog(
    path: Path | str | None = None,
    overrides: Mapping[str, Any] | Path | str | None = None,
) -> Catalog:
    """Load the packaged catalog (or ``path``), deep-merged with ``overrides``.

    ``overrides`` is a mapping or a YAML file of the same shape as the catalog; a provider or
    model it names is added, and a field it sets replaces the packaged one (so
    ``{"providers": {"openai": {"models": {"gpt-4o": {"prices": {"output": 9.0}}}}}}`` changes
    one price and keeps the rest).

    >>> load_catalog().providers["anthropic"].default_write_ttl
    '5m'
    """
    data = _read_yaml(path) if path is not None else _packaged()
    if overrides is not None:
        extra = overrides if isinstance(overrides, Mapping) else _read_yaml(overrides)
        data = _deep_merge(data, extra)
    return Catalog.model_validate(data)


_default: Catalog | None = None


def default_catalog() -> Catalog:
    """The catalog pricing and hint placement use when given none: the packaged one,
    or what :func:`use_catalog` set."""
    global _default
    if _default is None:
        _default = load_catalog()
    return _default


def use_catalog(catalog: Catalog | None) -> None:
    """Make ``catalog`` (e.g. ``load_catalog(overrides=...)``) the default for pricing and
    hint placement; ``None`` goes back to the packaged catalog.

    This is how a model the packaged file lacks (gpt-5.6 and later, a new Claude) gets its
    prices, minimum, TTL options and ``explicit`` marker before the file is updated.
    """
    global _default
    _default = catalog
