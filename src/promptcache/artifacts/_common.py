"""What the three artifact caches share: results, counters, payload envelopes, secret scans, tags.

Nothing here logs a payload, an argument or a tag value: log lines carry key
digests, sizes and decisions only, because tags and arguments routinely hold
identifiers of the end user (reservation codes, e-mail addresses).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict

from promptcache.artifacts.codec import from_plain, scan_view, to_plain
from promptcache.blocks import PUBLIC_SCOPE
from promptcache.canonical import canonical_json
from promptcache.detect import SECRET, scan_sensitive
from promptcache.figures import LookupReason
from promptcache.keys import KeyContract, MissingTenantError, derive_key
from promptcache.policy import Policy
from promptcache.scan import visible_text
from promptcache.tiers.outcome import Outcome

__all__ = [
    "PUBLIC_TENANT",
    "ArtifactStats",
    "LookupReason",
    "LookupResult",
    "Outcome",
    "ScopeNotAllowed",
    "Served",
    "TagTemplate",
    "Uncacheable",
    "data_classes_of",
    "key_refusal",
    "refusal",
]

log = logging.getLogger("promptcache.artifacts")

T = TypeVar("T")

#: The tenant recorded on entries of the cross-tenant ``public`` scope (entries always name one).
PUBLIC_TENANT = "*public*"

#: Version of the JSON envelope every artifact payload is wrapped in; another version reads as a miss.
#: 2: values in their tagged stored form (:mod:`promptcache.artifacts.codec`).
ENVELOPE_VERSION = 2


class LookupResult(BaseModel):
    """How an artifact call was answered, for callbacks, metrics and ``explain``.

    ``reason`` says how, as an enum value set by the code that decided it; telemetry and stats
    count it as it is. ``hit`` is true when the value came from a cache tier (``tier``: ``l1``,
    ``l2``, ``l3``, or ``flight`` when a concurrent identical call computed it). ``stored`` says
    whether the computed value was written to the cache, with ``ttl_seconds``. ``detail`` adds
    the decision's specifics in words (the argument that has no JSON form, the data class the
    policy denied); it never contains payload text and nothing parses it. ``dropped`` counts
    retrieved documents the authorizer no longer lets the caller read.
    ``invalidated``/``invalidation_failed`` list the tags a successful write invalidated or could
    not invalidate. :attr:`why` renders all of it as one human-readable line.
    """

    model_config = ConfigDict(frozen=True)

    hit: bool
    reason: LookupReason
    detail: str = ""
    tier: str | None = None
    stale: bool = False
    stored: bool = False
    ttl_seconds: int | None = None
    dropped: int = 0
    invalidated: tuple[str, ...] = ()
    invalidation_failed: tuple[str, ...] = ()
    key_digest: str | None = None

    @property
    def outcome(self) -> Outcome:
        """Hit, computed and stored, or computed and not stored (then ``reason`` says why)."""
        if self.hit:
            return Outcome.HIT
        return Outcome.STORED if self.stored else Outcome.NOT_STORED

    @property
    def why(self) -> str:
        """The answer as one short line for people (logs, callbacks): derived, never parsed.

        >>> LookupResult(hit=False, reason=LookupReason.SIDE_EFFECT, detail="side_effecting").why
        'side effects: never served from cache (side_effecting)'
        """
        head = self.reason.text
        if self.reason is LookupReason.HIT:
            head = f"hit in {self.tier}" + (" (stale)" if self.stale else "")
        elif self.reason is LookupReason.STORED and self.ttl_seconds is not None:
            head = f"miss: stored for {self.ttl_seconds}s"
        parts = [f"{head} ({self.detail})" if self.detail else head]
        if self.dropped:
            parts.append(f"{self.dropped} withheld")
        if self.invalidated:
            parts.append(f"invalidated {len(self.invalidated)} tag(s)")
        if self.invalidation_failed:
            n = len(self.invalidation_failed)
            parts.append(f"{n} invalidation(s) failed: cached reads may be stale")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Served(Generic[T]):
    """A value an artifact cache returns, how it was answered, and its trust label.

    Tool outputs and retrieved documents are ``untrusted``: caching them does not
    make them instructions, and integrations keep them in their own section.
    """

    value: T
    lookup: LookupResult
    trust: Literal["untrusted", "model"] = "untrusted"

    def __iter__(self) -> Iterator[Any]:
        """Unpack as ``value, lookup = cache.call(...)``."""
        return iter((self.value, self.lookup))


@dataclass(frozen=True, slots=True)
class Uncacheable:
    """A caller's verdict that a computed result must not be stored (see ``ToolOutputCache.run``).

    ``why`` is a short reason for ``LookupResult.detail``; never the result itself.
    """

    why: str = "result not cacheable"


class ArtifactStats(BaseModel):
    """Counters of one artifact cache.

    ``bypassed``: calls that may never be served from cache (side-effecting
    tools, ineligible responses); ``refused_secret``: values not written because
    a secret was found in them; ``unkeyable``: calls whose arguments could not be
    put in canonical form (run uncached); ``unserializable``: values that could
    not be stored; ``cache_errors``: faults of the cache machinery that made the
    call run uncached; ``auth_dropped``: documents withheld on a hit because the
    authorizer refused them; ``auth_errors``: hits discarded because the
    authorizer failed (fail closed); ``policy_mismatch``: entries (or concurrent
    results) admitted by another policy, not served and recomputed.
    """

    hits: int = 0
    misses: int = 0
    stored: int = 0
    bypassed: int = 0
    refused_secret: int = 0
    refused_policy: int = 0
    unkeyable: int = 0
    unserializable: int = 0
    corrupt: int = 0
    cache_errors: int = 0
    invalidations: int = 0
    invalidation_failed: int = 0
    auth_dropped: int = 0
    auth_errors: int = 0
    policy_mismatch: int = 0


class Counters:
    """Thread-safe counters behind :class:`ArtifactStats`."""

    __slots__ = ("_lock", "_v")

    def __init__(self) -> None:
        """All counters at zero."""
        self._lock = threading.Lock()
        self._v = dict.fromkeys(ArtifactStats.model_fields, 0)

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to ``name``."""
        with self._lock:
            self._v[name] += n

    def snapshot(self) -> ArtifactStats:
        """A consistent copy."""
        with self._lock:
            return ArtifactStats(**self._v)


# sensitive data ---------------------------------------------------------------


def data_classes_of(value: Any) -> set[str]:
    """Data classes (``secret``, ``pii.email``, ...) found anywhere in a value, as it is stored.

    The value is read in its stored form (:func:`promptcache.artifacts.codec.to_plain`: the
    fields of dataclasses, pydantic models, attrs classes and named tuples, bytes as text),
    rendered as the model would read it (:func:`promptcache.scan.visible_text`: no JSON
    escapes to hide a quoted secret or a PEM header). A value with no stored form is read as
    its ``str``: it cannot be stored, but a request holding it must still be refused.
    """
    try:
        view = scan_view(to_plain(value))
    except TypeError:
        view = str(value)
    return _classes_of_view(view)


def _classes_of_view(view: Any) -> set[str]:
    return {f.data_class for f in scan_sensitive(visible_text(view))}


# envelopes --------------------------------------------------------------------


class EnvelopeError(ValueError):
    """A stored payload that is not one of ours (foreign, corrupt or another version)."""


def encode_envelope(kind: str, value: Any) -> bytes:
    """The bytes stored for ``value``; raises ``TypeError`` when it has no stored form."""
    return orjson.dumps({"v": ENVELOPE_VERSION, "kind": kind, "value": to_plain(value)})


def encode_scanned(kind: str, value: Any) -> tuple[bytes, set[str]]:
    """The bytes stored for ``value`` and the data classes found in exactly what they hold.

    One stored form is built and both serialized and scanned, so no object type can reach
    storage unscanned. Raises ``TypeError`` when ``value`` has no stored form.
    """
    plain = to_plain(value)
    payload = orjson.dumps({"v": ENVELOPE_VERSION, "kind": kind, "value": plain})
    return payload, _classes_of_view(scan_view(plain))


def decode_envelope(kind: str, payload: bytes) -> Any:
    """The value stored by :func:`encode_envelope`, with its types, or :class:`EnvelopeError`."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("not JSON") from exc
    if not isinstance(data, dict) or data.get("v") != ENVELOPE_VERSION or data.get("kind") != kind:
        raise EnvelopeError("foreign or old envelope")
    try:
        return from_plain(data.get("value"))
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeError("malformed stored value") from exc


# keys -------------------------------------------------------------------------


class ScopeNotAllowed(ValueError):
    """The policy does not allow the scope asked for (``public`` without ``allow_public``)."""


def contract_for(policy: Policy, tenant: str, scope: str, model: str, **extra: str | None) -> KeyContract:
    """The key contract of an artifact; ``public`` scope only when the policy allows it.

    Raises :class:`~promptcache.keys.MissingTenantError` without a tenant and
    :class:`ScopeNotAllowed` for a scope the policy refuses (see :func:`key_refusal`).
    """
    if not tenant:
        raise MissingTenantError("tenant is required (an empty tenant would share entries across tenants)")
    if scope == PUBLIC_SCOPE:
        if not policy.allow_public:
            raise ScopeNotAllowed("scope 'public' is not allowed by the policy (allow_public: false)")
        return KeyContract(tenant=None, scope=scope, model=model, policy_version=policy.version, **extra)
    return KeyContract(tenant=tenant, scope=scope, model=model, policy_version=policy.version, **extra)


def key_refusal(exc: ValueError) -> LookupReason:
    """Why no key could be derived, told by the exception's type (never its words).

    No tenant, a scope the policy refuses, or content with no canonical form.
    """
    if isinstance(exc, MissingTenantError):
        return LookupReason.TENANT_MISSING
    if isinstance(exc, ScopeNotAllowed):
        return LookupReason.POLICY_DENIED
    return LookupReason.UNKEYABLE


def refusal(data_classes: set[str]) -> LookupReason:
    """Why the policy refused to store a value holding ``data_classes``.

    Only called after the entry type was found eligible, so a refusal is the data's: a secret
    (never cached, DESIGN.md) or a class the policy denies.
    """
    if SECRET in data_classes:
        return LookupReason.SECRET
    return LookupReason.PII if data_classes else LookupReason.POLICY_DENIED


def entry_tenant(tenant: str, scope: str) -> str:
    """The tenant an entry is stored under: the caller's, or the shared one for ``public``."""
    return PUBLIC_TENANT if scope == PUBLIC_SCOPE else tenant


def key_for(contract: KeyContract, entry_type: str, content: Any, *, where: str) -> str:
    """Cache key of ``content`` (canonical JSON) under ``contract``."""
    import hashlib

    return derive_key(contract, entry_type, hashlib.sha256(canonical_json(content, where=where)).hexdigest())


# tag templates ----------------------------------------------------------------

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BRACES = re.compile(r"[{}]")


class TagTemplate:
    """A tag with ``{argument}`` placeholders, e.g. ``reservation:{reservation_id}``.

    Only bare argument names are allowed: ``str.format`` would also evaluate
    ``{a.__class__}`` or ``{a[0]}`` on caller-controlled values.
    """

    __slots__ = ("fields", "text")

    def __init__(self, text: str) -> None:
        """Parse ``text``; raises ``ValueError`` on anything but ``{name}`` placeholders."""
        if not text or "\n" in text or "\x00" in text or len(text) > 512:
            raise ValueError("a tag is 1-512 characters without newline or NUL")
        if _BRACES.search(_FIELD.sub("", text)):
            raise ValueError(f"tag template {text!r}: placeholders are {{argument_name}} only")
        self.text = text
        self.fields = tuple(_FIELD.findall(text))

    def fill(self, args: Mapping[str, Any]) -> str:
        """The tag for ``args``; ``KeyError`` names a missing argument, ``ValueError`` a bad value."""

        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in args:
                raise KeyError(name)
            v = args[name]
            if isinstance(v, bool) or not isinstance(v, str | int):
                raise ValueError(f"argument {name!r} fills a tag and must be a string or an integer")
            s = str(v)
            if not s or "\n" in s or "\x00" in s:
                raise ValueError(f"argument {name!r} cannot fill a tag (empty, newline or NUL)")
            return s

        out = _FIELD.sub(one, self.text)
        if len(out) > 512:
            raise ValueError("filled tag longer than 512 characters")
        return out


def fill_tags(templates: Iterable[TagTemplate], args: Mapping[str, Any]) -> tuple[str, ...]:
    """Every template filled from ``args`` (raises like :meth:`TagTemplate.fill`)."""
    return tuple(sorted({t.fill(args) for t in templates}))
