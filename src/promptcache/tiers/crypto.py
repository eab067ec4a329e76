"""Optional encryption at rest for L2/L3 payloads (AES-256-GCM, rotating key ids).

Each stored payload is ``nonce (12 bytes) | ciphertext+tag`` and the entry
records the id of the key that sealed it, so keys can rotate: new writes use
the active key, reads use whichever key the entry names (an entry whose key
was retired reads as a counted miss). The associated data binds the
ciphertext to its entry's key, tenant, type and plaintext hash: a payload
copied under another key or tenant fails authentication instead of being
served. Needs the optional ``cryptography`` package (extra ``crypto``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from promptcache.tiers.base import TierError
from promptcache.tiers.entry import Entry, content_hash

__all__ = ["KeyRing"]

_NONCE = 12


def _aad(entry: Entry) -> bytes:
    return "\x00".join((entry.key, entry.tenant, entry.entry_type, entry.content_hash)).encode()


class KeyRing:
    """A set of named 256-bit keys, one of them active for new writes."""

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        """``keys`` maps key id → 32 raw bytes; ``active`` names the key new writes use."""
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise TierError("encryption at rest needs the 'cryptography' package") from exc
        if active not in keys:
            raise ValueError("the active key id must be one of the keys")
        for kid, raw in keys.items():
            if len(raw) != 32 or not kid:
                raise ValueError("each key is 32 bytes under a non-empty id")
        self.active = active
        self._aead: dict[str, Any] = {kid: AESGCM(raw) for kid, raw in keys.items()}

    @staticmethod
    def generate_key() -> bytes:
        """32 random bytes, fit for a new key."""
        return os.urandom(32)

    def seal(self, entry: Entry) -> tuple[str, bytes]:
        """Encrypt ``entry``'s plaintext payload; returns (key id, nonce|ciphertext)."""
        if entry.payload is None:
            raise ValueError("only an inline plaintext payload can be sealed")
        nonce = os.urandom(_NONCE)
        ct = self._aead[self.active].encrypt(nonce, entry.payload, _aad(entry))
        return self.active, nonce + ct

    def open(self, entry: Entry, sealed: bytes) -> bytes | None:
        """Decrypt and verify ``sealed``; ``None`` if the key is unknown or the check fails."""
        from cryptography.exceptions import InvalidTag

        aead = self._aead.get(entry.key_id or "")
        if aead is None or len(sealed) < _NONCE + 16:
            return None
        try:
            plain: bytes = aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], _aad(entry))
        except InvalidTag:
            return None
        return plain if content_hash(plain) == entry.content_hash else None
