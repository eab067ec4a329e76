"""``Sealed``: encryption and integrity of entries below L1, as a store wrapper.

Writes encrypt the payload with the key ring's active key (when there is a key
ring); reads decrypt with the key the entry names and check the payload against
its content hash. Design rule (DESIGN.md, "Failure behaviour"): *entry
unreadable (corrupt, old schema) → treat as a miss, count it, overwrite on the
next write*: an entry that fails decryption or its integrity check is a miss,
counted as ``corrupt`` on the tier, and the next write of its key replaces it.
"""

from __future__ import annotations

import logging
from typing import Any

from promptcache.tiers._async.sealed import AsyncSealedReads
from promptcache.tiers._sync.sealed import SyncSealedReads
from promptcache.tiers.base import StatsCounter
from promptcache.tiers.crypto import KeyRing
from promptcache.tiers.entry import Entry, key_digest
from promptcache.tiers.wrapper import Forwarding

__all__ = ["Sealed"]

log = logging.getLogger("promptcache.tiers")


class Sealed(SyncSealedReads, AsyncSealedReads, Forwarding):
    """Seal what goes into ``inner`` with ``keyring`` (``None``: plaintext, still integrity-checked)."""

    def __init__(self, inner: Any, *, keyring: KeyRing | None, counters: StatsCounter) -> None:
        """Count unreadable entries in ``counters`` (the tier's)."""
        super().__init__(inner)
        self.keyring = keyring
        self.counters = counters

    def seal(self, entry: Entry) -> Entry:
        """The form ``entry`` takes below L1 (runs on the write-back thread, off the hot path)."""
        payload = entry.payload or b""
        key_id = None
        if self.keyring is not None:
            key_id, payload = self.keyring.seal(entry)
        return entry.model_copy(update={"payload": payload, "size": len(payload), "key_id": key_id})

    def open(self, entry: Entry) -> Entry | None:
        """The plaintext entry, or ``None`` (counted) when it fails decryption or its integrity check."""
        stored = entry.payload
        if stored is not None and entry.key_id is not None:
            plain = None if self.keyring is None else self.keyring.open(entry, stored)
        else:
            plain = stored
        out = entry.model_copy(update={"payload": plain, "key_id": None, "size": len(plain or b"")})
        if plain is None or not out.verify():
            self.counters.add("corrupt")
            log.warning("entry %s failed decryption or integrity check", key_digest(entry.key))
            return None
        return out

    def put(self, entry: Entry) -> None:
        """Write the sealed form of ``entry`` (reads: ``_async/sealed.py``, and its generated sync form)."""
        self.inner.put(self.seal(entry))
