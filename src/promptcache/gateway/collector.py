"""The garbage collector of a ``promptcache proxy`` process, set as servers set it.

Only the gateway's own server process does this (``promptcache proxy``, through
``create_app(..., server_process=True)``); an app that mounts the gateway in its own process
keeps its collector as it is.

Why (measured with ``gc.callbacks`` timing in the gateway process, at 200 requests/s on
loopback): Python's full collections walk every tracked object, and the start-up heap of a
gateway (pydantic, aiohttp, uvicorn, prometheus-client, the policy, the scanners, the price
catalog: ~66,000 objects) made each one a 70-85 ms stop of the event loop, about one per 20 s,
during which every request in flight waits. Those stops were the gateway's p99. So, once
start-up is done:

1. :func:`gc.freeze` moves everything alive into the permanent generation, which no
   collection ever scans again (the start-up heap is never garbage: modules, classes,
   compiled patterns). A full collection then walks only what requests created and kept (the
   analysis memo, learned state): 37-39 ms instead of 98-165 ms in a loop of
   ``prepare_request`` calls.
2. Full collections wait for 100 middle-generation collections instead of 10 (about once a
   minute at 200 requests/s, where they came every ~20 s), and the middle generation is
   collected after 3 young collections instead of 10, so each walks about a third of the
   objects (in that loop: at most 4.3 ms instead of 10-24 ms; in the gateway at 200
   requests/s, 2.0 ms at p90 and 3.1 ms at most).
   The young generation keeps its threshold (700): its collections stay around 1 ms, and a
   higher one only made them longer (10,000: up to 39 ms each).

What it costs: cyclic garbage that outlives two young collections is reclaimed about a minute
later rather than seconds later (objects without cycles are freed by reference counting at once, as
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
