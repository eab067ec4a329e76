"""``Forwarding``: the base of the store wrappers, which forwards what a wrapper does not change.

A wrapper takes a store and is a store (the shape LangGraph's ``serde/encrypted.py``
gives a serializer): it overrides the methods its rule is about and inherits the
rest from here, so each wrapper's module holds its rule and nothing else.

The forwarding is written once, for asyncio (``_async/wrapper.py``); the sync methods are
generated from it (``_sync/wrapper.py``, scripts/gen_sync.py). Writes have only a sync form:
below L1 they run on the write-back thread.
"""

from __future__ import annotations

from typing import Any

from promptcache.tiers._async.wrapper import AsyncForwarding
from promptcache.tiers._sync.wrapper import SyncForwarding
from promptcache.tiers.entry import Entry

__all__ = ["Forwarding"]


class Forwarding(SyncForwarding, AsyncForwarding):
    """Forward every store method, sync and asyncio, to ``inner``."""

    def __init__(self, inner: Any) -> None:
        """Wrap ``inner`` (a store, or another wrapper)."""
        self.inner = inner

    def put(self, entry: Entry) -> None:
        """See :meth:`promptcache.tiers.base.Store.put`."""
        self.inner.put(entry)
