"""The cache entry envelope and its compact, versioned wire form.

Every tier stores the same :class:`Entry`. On L2/L3 it is serialized as::

    b"PCE" | schema (1 byte) | meta length (4 bytes, big endian) | meta (orjson) | payload bytes

The payload travels raw after the JSON header, so large payloads are never
base64-inflated, and nothing is ever unpickled. Decoding is total: anything
that is truncated, foreign, of another schema version or fails its checks
decodes to ``None`` and the caller counts a miss (``corrupt``), it never raises.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "MAGIC",
    "SCHEMA_VERSION",
    "Entry",
    "EntryType",
    "content_hash",
    "decode_entry",
    "encode_entry",
    "key_digest",
]

log = logging.getLogger("promptcache.tiers")

SCHEMA_VERSION = 2
"""Bumped whenever the envelope changes shape; entries of another version read as misses.

2: ``tenant`` is the tenant's keyed hash (:func:`promptcache.pseudonym.tenant_label`)."""

MAGIC = b"PCE"
_HEADER = struct.Struct(">3sBI")
_MAX_META = 1 << 20  # a header past 1 MiB is not ours: refuse before parsing it


class EntryType:
    """Well-known entry types (an entry type is an open string; these are the core's own)."""

    RETRIEVAL = "retrieval"
    TOOL_OUTPUT = "tool_output"
    RESPONSE = "response"
    VOLATILITY_MAP = "volatility_map"
    GEMINI_HANDLE = "gemini_handle"
    METADATA = "metadata"


def content_hash(payload: bytes) -> str:
    """SHA-256 hex of a plaintext payload (what an entry's integrity check compares)."""
    return hashlib.sha256(payload).hexdigest()


def key_digest(key: str) -> str:
    """A short, non-reversible label for a key, fit for logs (keys themselves are never logged)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class Entry(BaseModel):
    """One cached value and the metadata every tier needs to serve it safely.

    ``tags`` maps each tag to the generation that tag had when the value was
    computed; a reader serves the entry only while every tag is still at that
    generation (see :mod:`promptcache.invalidation`). Exactly one of
    ``payload`` (inline bytes) and ``blob`` (content hash of an L3 blob) is set.
    ``key_id`` is set when ``payload``/the blob holds AES-GCM ciphertext.
    ``policy`` is the identity of the policy that admitted the value
    (:attr:`promptcache.policy.Policy.identity`), ``None`` for entries no policy
    decided on; a reader under another policy does not serve it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    key: str = Field(min_length=1, max_length=512)
    entry_type: str = Field(min_length=1, max_length=64)
    tenant: str = Field(min_length=1, max_length=256)  # a tenant_label, never the tenant
    tags: dict[str, int] = Field(default_factory=dict)
    created_at: float
    expires_at: float | None = None
    stale_until: float | None = None
    payload: bytes | None = Field(default=None, repr=False)  # never in logs or reprs
    blob: str | None = None
    size: int = Field(default=0, ge=0)
    content_hash: str = Field(min_length=64, max_length=64)
    key_id: str | None = None
    policy: str | None = Field(default=None, max_length=128)

    @field_validator("tags")
    @classmethod
    def _tags_are_plain(cls, value: dict[str, int]) -> dict[str, int]:
        for tag, gen in value.items():
            # newlines separate tags in the Redis tag field; NUL breaks SQLite text
            if not tag or "\n" in tag or "\x00" in tag or len(tag) > 512:
                raise ValueError("a tag is 1-512 characters without newline or NUL")
            if gen < 0:
                raise ValueError("a tag generation is never negative")
        return value

    @classmethod
    def new(
        cls,
        key: str,
        payload: bytes,
        *,
        tenant: str,
        entry_type: str,
        created_at: float,
        ttl_s: float | None = None,
        tags: dict[str, int] | None = None,
        policy: str | None = None,
    ) -> Entry:
        """Build a plaintext entry for ``payload``, hashing it and computing ``expires_at``."""
        return cls(
            key=key,
            entry_type=entry_type,
            tenant=tenant,
            tags=dict(tags or {}),
            created_at=created_at,
            expires_at=None if ttl_s is None else created_at + ttl_s,
            payload=payload,
            size=len(payload),
            content_hash=content_hash(payload),
            policy=policy,
        )

    def fresh_at(self, now: float) -> bool:
        """True while the entry is within its TTL."""
        return self.expires_at is None or now < self.expires_at

    def dead_at(self, now: float) -> bool:
        """True once the entry may not be served even as stale (past TTL and any SWR window)."""
        if self.expires_at is None:
            return False
        limit = self.expires_at if self.stale_until is None else max(self.expires_at, self.stale_until)
        return now >= limit

    def retain_until(self) -> float | None:
        """The last instant a store needs to keep this entry."""
        if self.expires_at is None:
            return None
        return self.expires_at if self.stale_until is None else max(self.expires_at, self.stale_until)

    def footprint(self) -> int:
        """Approximate bytes the entry occupies in memory (payload plus a fixed overhead)."""
        return self.size if self.payload is None else len(self.payload) + 256 + len(self.key)

    def verify(self) -> bool:
        """True if the inline plaintext payload matches ``content_hash``."""
        return (
            self.payload is not None
            and self.key_id is None
            and hashlib.sha256(self.payload).hexdigest() == self.content_hash
        )


# Wire order of the header. The Redis invalidation script finds an entry's tags between
# ',"tags":{' and '},"created_at":' without decoding the JSON: keep tags just before created_at.
_META_FIELDS = (
    "key",
    "entry_type",
    "tenant",
    "tags",
    "created_at",
    "expires_at",
    "stale_until",
    "blob",
    "size",
    "content_hash",
    "key_id",
    "policy",
)


def encode_entry(entry: Entry) -> bytes:
    """Serialize ``entry`` to its compact wire form (see the module docstring)."""
    meta: dict[str, Any] = {name: getattr(entry, name) for name in _META_FIELDS}
    meta["inline"] = entry.payload is not None
    head = orjson.dumps(meta)
    body = entry.payload or b""
    return _HEADER.pack(MAGIC, SCHEMA_VERSION, len(head)) + head + body


def decode_entry(data: bytes | bytearray | memoryview | None) -> Entry | None:
    """Parse the wire form; return ``None`` for anything that is not a current, whole entry."""
    if data is None:
        return None
    raw = data if type(data) is bytes else bytes(data)
    try:
        magic, version, meta_len = _HEADER.unpack_from(raw)
    except struct.error:
        return None
    if magic != MAGIC or version != SCHEMA_VERSION or meta_len > _MAX_META:
        return None
    end = _HEADER.size + meta_len
    if len(raw) < end:
        return None
    try:
        meta = orjson.loads(memoryview(raw)[_HEADER.size : end])
        if type(meta) is not dict:
            return None
        fast = _construct_checked(meta, raw, end)
        if fast is not None:
            return fast
        inline = meta.pop("inline", True)
        payload = raw[end:]
        if inline:
            if len(payload) != meta.get("size"):
                return None  # truncated (or padded) payload
            meta["payload"] = payload
        elif payload:
            return None
        return Entry.model_validate(meta)
    except (orjson.JSONDecodeError, ValidationError, TypeError, ValueError):
        return None


_NUM = (int, float)
# the header as encode_entry writes it; any other shape takes the validating path
_WIRE_ORDER = (*_META_FIELDS, "inline")
_ALL_SET = frozenset(Entry.model_fields)
_new_entry = Entry.__new__
_set = object.__setattr__


def _construct_checked(meta: dict[str, Any], raw: bytes, end: int) -> Entry | None:
    """Build an entry without pydantic's validator when the header is exactly what we write.

    This is the L2 read hot path (pydantic validation alone costs more than the
    rest of a Redis hit). It checks what the model's validators check, with
    plain type tests. Anything unusual returns ``None`` and goes through full
    validation instead, so a malformed header is still refused; a payload of
    the wrong length raises ``ValueError`` (the caller's miss).
    """
    if tuple(meta) != _WIRE_ORDER:
        return None
    values = tuple(meta.values())
    key, entry_type, tenant, tags, created, expires_at, stale_until, blob, size, chash, key_id = values[:11]
    policy, inline = values[11:]
    if not (
        type(key) is str
        and 0 < len(key) <= 512
        and type(entry_type) is str
        and 0 < len(entry_type) <= 64
        and type(tenant) is str
        and 0 < len(tenant) <= 256
        and type(tags) is dict
        and type(created) in _NUM
        and (expires_at is None or type(expires_at) in _NUM)
        and (stale_until is None or type(stale_until) in _NUM)
        and (blob is None or type(blob) is str)
        and type(size) is int
        and size >= 0
        and type(chash) is str
        and len(chash) == 64
        and (key_id is None or type(key_id) is str)
        and (policy is None or (type(policy) is str and len(policy) <= 128))
    ):
        return None
    for t, g in tags.items():
        if type(g) is not int or g < 0 or not 0 < len(t) <= 512 or "\n" in t or "\x00" in t:
            return None
    if inline is True:
        if len(raw) - end != size:
            raise ValueError("truncated (or padded) payload")
        payload: bytes | None = raw[end:]
    elif inline is False and len(raw) == end:
        payload = None
    else:
        return None
    entry = _new_entry(Entry)
    # what model_construct does, minus its per-field default handling (every field is here)
    _set(
        entry,
        "__dict__",
        {
            "schema_version": SCHEMA_VERSION,
            "key": key,
            "entry_type": entry_type,
            "tenant": tenant,
            "tags": tags,
            "created_at": created,
            "expires_at": expires_at,
            "stale_until": stale_until,
            "payload": payload,
            "blob": blob,
            "size": size,
            "content_hash": chash,
            "key_id": key_id,
            "policy": policy,
        },
    )
    _set(entry, "__pydantic_fields_set__", set(_ALL_SET))
    _set(entry, "__pydantic_extra__", None)
    _set(entry, "__pydantic_private__", None)
    return entry
