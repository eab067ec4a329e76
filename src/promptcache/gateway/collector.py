"""The garbage collector of a ``promptcache proxy`` process, set as servers set it.

Only the gateway's own server process does this (``promptcache proxy``, through
``create_app(..., server_process=True)``); an app that mounts the gateway in its own process
keeps its collector as it is.

Why (measured at 200 requests/s on loopback, ``gc.callbacks`` timing in the gateway process):
Python's full collections walk every tracked object, and the import-time heap of a gateway
(pydantic, aiohttp, uvicorn, prometheus-client, the policy and scanners: ~66,000 objects) made
each one a 60-100 ms stop of the event loop, during which every request in flight waits;
collections of the middle generation took 10-25 ms, about once a second. Those stops were
the gateway's p99. So, once start-up is done:

1. :func:`gc.freeze` moves everything alive into the permanent generation, which no
   collection ever scans again (the import-time heap is never garbage: modules, classes,
   compiled patterns). A full collection then walks only what requests created and kept (the
   analysis memo, learned state): about half the time.
2. The middle generation is collected after 3 young collections instead of 10, so each of
   its collections walks a third of the objects (under 5 ms here) rather than 10-25 ms at
   once; full collections wait for 100 of them instead of 10 (minutes apart at 200
   requests/s, not every ~20 s). The young generation keeps its threshold (700): its
   collections are short (well under 1 ms), and a higher threshold only made them longer.

What it costs: cyclic garbage that outlives two young collections is reclaimed minutes later
rather than seconds (objects without cycles are freed by reference counting at once, as
always), and objects created during start-up that later become cyclic garbage are never
reclaimed (there are none to speak of: start-up builds what the process keeps).
"""

from __future__ import annotations

import gc

from promptcache.catalog import default_catalog
from promptcache.formats import WireFormat
from promptcache.wire import get_adapter

__all__ = ["SERVER_THRESHOLDS", "settle_server_heap"]

#: ``gc.set_threshold`` of a gateway server process (see the module docstring).
SERVER_THRESHOLDS = (700, 3, 100)


def settle_server_heap() -> None:
    """Load what the first requests would load, collect once, freeze what is left, and set
    :data:`SERVER_THRESHOLDS` (see the module docstring). Call once, when start-up is over."""
    # Loaded on first use, by the first requests otherwise: into the frozen heap with the rest
    # (the catalog is a YAML file, tens of milliseconds to parse).
    get_adapter(WireFormat.OPENAI_CHAT)
    default_catalog()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVER_THRESHOLDS)
