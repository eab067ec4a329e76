"""The tiered stores: L1 memory, L2 SQLite or Redis, L3 blobs, and the router over them.

>>> store = TieredStore()          # L1 only; TieredStore.default() adds the embedded SQLite L2
>>> _ = store.put("k" * 64, b"v", tenant="t1", entry_type="metadata", tags=["policy:v12"])
>>> store.get("k" * 64, tenant="t1").payload
b'v'
>>> _ = store.invalidate("policy:v12")
>>> store.get("k" * 64, tenant="t1") is None
True
"""

from promptcache.tiers.base import AsyncStore, Store, TierError, TierStats
from promptcache.tiers.blob import BlobStore, FileBlobStore, FsspecBlobStore, open_blob_store
from promptcache.tiers.crypto import KeyRing
from promptcache.tiers.entry import SCHEMA_VERSION, Entry, EntryType, decode_entry, encode_entry
from promptcache.tiers.memory import MemoryStore
from promptcache.tiers.router import InvalidationFailed, Lookup, Result, RouterStats, TieredStore
from promptcache.tiers.sqlite import SQLiteStore, default_cache_dir

__all__ = [
    "SCHEMA_VERSION",
    "AsyncStore",
    "BlobStore",
    "Entry",
    "EntryType",
    "FileBlobStore",
    "FsspecBlobStore",
    "InvalidationFailed",
    "KeyRing",
    "Lookup",
    "MemoryStore",
    "Result",
    "RouterStats",
    "SQLiteStore",
    "Store",
    "TierError",
    "TierStats",
    "TieredStore",
    "decode_entry",
    "default_cache_dir",
    "encode_entry",
    "open_blob_store",
]
