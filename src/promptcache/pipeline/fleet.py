"""A fleet learns once: what one process learned about a family, shared through the store.

Issue 22, decision 7. Every worker process learns a family's volatility from its own traffic, so
without sharing, the first change each process sees is a miss of its own, and processes that
learned at different moments send different prefixes for a while. Here the decisions a family has
made (:class:`LearnedState`: which detected values and lines change, whether a slot changes
wholesale, whether the tools go out canonical) are written to the cache's store (SQLite or Redis,
the L2 every worker shares) when they change, and read by a process when it meets the family, and
again every :data:`REFRESH_S`.

What is shared is decisions, as hashes and counters: where changing values sit and which lines
change (CRC-32 of the stable line above, distances, orders), flags. Never prompt text. The entry
is scoped like every other: its key derives from the family's
:class:`~promptcache.keys.KeyContract` (tenant and model), and the store checks the tenant on read.
Sizes are bounded (:data:`MAX_ITEMS` per slot).

Reads happen on the call path once per family per :data:`REFRESH_S` (one store read); writes
happen in a background thread. Any store fault leaves the process learning on its own, counted in
:data:`FLEET_FAULTS`: sharing never fails a call.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promptcache.keys import KeyContract, derive_key
from promptcache.pipeline.learning import Family, order_positions
from promptcache.volatility import SlotVolatility

log = logging.getLogger("promptcache.fleet")

#: The store entry type of a family's shared decisions.
ENTRY_TYPE = "learned_layout"
#: How long a family's shared decisions are kept without a new write.
TTL_S = 7 * 86400
#: How often a process reads a family's shared decisions again (on the call path, one read).
REFRESH_S = 30.0
#: At most this many values and lines are shared per slot (the rest stay local).
MAX_ITEMS = 256
#: Store faults met while sharing (reads and writes), by kind.
FLEET_FAULTS: Counter[str] = Counter()


class LearnedSlot(BaseModel):
    """What one system slot of a family has learned."""

    model_config = ConfigDict(frozen=True)

    changing: list[tuple[int, int, int, int]] = Field(
        default_factory=list,
        description="detected values seen changing, by position (anchor CRC, distance, order, occurrence)",
        max_length=MAX_ITEMS,
    )
    lines: list[tuple[int, int]] = Field(
        default_factory=list,
        description="learned volatile lines (anchor CRC, distance)",
        max_length=MAX_ITEMS,
    )
    block: bool = Field(default=False, description="the slot changes wholesale")


class LearnedState(BaseModel):
    """A family's shared decisions (no prompt text)."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    slots: dict[str, LearnedSlot] = Field(default_factory=dict, max_length=64)
    tools_canonical: bool = False
    tool_order: list[int] = Field(
        default_factory=list,
        description="the family's tool order, as positions in its tool names sorted (no names)",
        max_length=4096,
    )


def export_state(fam: Family) -> LearnedState:
    """The decisions ``fam`` has made (call under ``fam.lock``)."""
    slots = {
        name: LearnedSlot(
            changing=sorted(slot.changing)[:MAX_ITEMS],
            lines=sorted(slot.learned)[:MAX_ITEMS],
            block=slot.volatile_block,
        )
        for name, slot in sorted(fam.slots.items())
        if slot.changing or slot.learned or slot.volatile_block
    }
    order = fam.tool_order
    positions = order_positions(order) if order else []
    return LearnedState(
        slots=slots,
        tools_canonical=fam.tools_unstable,
        # By name is what every process decides on its own: only an inherited order is shared.
        tool_order=[] if positions == sorted(positions) else positions,
    )


def adopt_state(fam: Family, state: LearnedState, learn_after: int) -> None:
    """Add the fleet's decisions to ``fam``'s own (call under ``fam.lock``). Decisions only ever
    add up: nothing the process learned itself is undone."""
    for name, shared in state.slots.items():
        slot = fam.slots.get(name)
        if slot is None:
            slot = fam.slots[name] = SlotVolatility(learn_after=learn_after)
        slot.changing.update(tuple(v) for v in shared.changing)  # type: ignore[misc]
        slot.learned.update(tuple(v) for v in shared.lines)  # type: ignore[misc]
        if shared.block:
            slot.wholesale_streak = max(slot.wholesale_streak, slot.learn_after)
    fam.tools_unstable = fam.tools_unstable or state.tools_canonical
    if fam.tool_order is None and state.tool_order:
        # The first order the fleet decided for this family: every process sends the same one.
        fam.pending_order = state.tool_order


def merge_states(a: LearnedState, b: LearnedState) -> LearnedState:
    """Both sets of decisions (they only add up: a value seen changing by one process is volatile).

    >>> one = LearnedState(slots={"s0": LearnedSlot(changing=[(3, 1, 0, 0)])})
    >>> two = LearnedState(slots={"s0": LearnedSlot(lines=[(7, 1)])}, tools_canonical=True)
    >>> m = merge_states(one, two)
    >>> m.slots["s0"].changing, m.slots["s0"].lines, m.tools_canonical
    ([(3, 1, 0, 0)], [(7, 1)], True)
    """
    slots = dict(a.slots)
    for name, s in b.slots.items():
        t = slots.get(name)
        slots[name] = (
            s
            if t is None
            else LearnedSlot(
                changing=sorted({*map(tuple, t.changing), *map(tuple, s.changing)})[:MAX_ITEMS],
                lines=sorted({*map(tuple, t.lines), *map(tuple, s.lines)})[:MAX_ITEMS],
                block=t.block or s.block,
            )
        )
    canonical = a.tools_canonical or b.tools_canonical
    return LearnedState(
        slots=dict(sorted(slots.items())),
        tools_canonical=canonical,
        tool_order=a.tool_order or b.tool_order,  # the first decided (stored) order stays
    )


def _digest(state: LearnedState) -> str:
    return hashlib.sha256(state.model_dump_json().encode()).hexdigest()


class FleetLearning:
    """Shares one :class:`~promptcache.engine.PromptCache`'s family decisions through its store.

    ``store_of`` returns the store (opened on first use), ``learn_after`` is the policy's.
    """

    def __init__(self, store_of: Any, learn_after: int) -> None:
        self._store_of = store_of
        self._learn_after = learn_after
        # Per family: when its shared state was last read, and the digest last written or read.
        self._read_at: dict[str, float] = {}
        self._known: dict[str, str] = {}
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def key(self, contract: KeyContract, family: str) -> str:
        """The store key of ``family``'s shared decisions."""
        return derive_key(contract, ENTRY_TYPE, family)

    def before(self, fam: Family, family: str, contract: KeyContract, tenant: str) -> None:
        """Read the fleet's decisions for ``family`` when this process has not lately."""
        now = time.monotonic()
        read_at = self._read_at.get(family)
        if read_at is not None and now - read_at < REFRESH_S:
            return
        self._read_at[family] = now
        if len(self._read_at) > 65536:  # bounded like the families themselves
            self._read_at.pop(next(iter(self._read_at)))
        try:
            store = self._store_of()
            key = self.key(contract, family)
            if getattr(store, "l2", None) is not None:
                store.l1.delete(key)  # another process's write is in L2, not in our L1
            entry = store.get(key, tenant=tenant)
            if entry is None:
                return
            state = LearnedState.model_validate_json(entry.payload)
        except Exception as exc:  # a store fault or a foreign entry: learn on our own
            FLEET_FAULTS["read"] += 1
            log.debug("promptcache: shared layout decisions not read (%s)", type(exc).__name__)
            return
        with fam.lock:
            adopt_state(fam, state, self._learn_after)
            merged = export_state(fam)
        self._known[family] = _digest(merged)

    def after(self, fam: Family, family: str, contract: KeyContract, tenant: str) -> None:
        """Write ``family``'s decisions for the fleet when they changed (in the background)."""
        with fam.lock:
            state = export_state(fam)
        if not state.slots and not state.tools_canonical and not state.tool_order:
            return
        digest = _digest(state)
        with self._lock:
            if self._known.get(family) == digest:
                return
            failed = self._failed_at.get(family)
            if failed is not None and time.monotonic() - failed < REFRESH_S:
                return  # the store refused lately: no thread per request while it is down
            self._known[family] = digest
            if len(self._known) > 65536:
                self._known.pop(next(iter(self._known)))
        key = self.key(contract, family)
        threading.Thread(
            target=self._write, args=(family, key, tenant, state), name="promptcache-fleet", daemon=True
        ).start()

    def _write(self, family: str, key: str, tenant: str, state: LearnedState) -> None:
        try:
            store = self._store_of()
            if getattr(store, "l2", None) is not None:
                store.l1.delete(key)
            # Read, add ours, write: another process's decisions since our last read are kept.
            entry = store.get(key, tenant=tenant)
            if entry is not None:
                state = merge_states(LearnedState.model_validate_json(entry.payload), state)
            payload = state.model_dump_json().encode()
            store.put(key, payload, tenant=tenant, entry_type=ENTRY_TYPE, ttl_s=TTL_S)
            store.flush()
            with self._lock:
                self._failed_at.pop(family, None)
        except Exception as exc:
            FLEET_FAULTS["write"] += 1
            with self._lock:
                self._known.pop(family, None)  # a later request of the family writes again
                self._failed_at[family] = time.monotonic()
            log.debug("promptcache: shared layout decisions not written (%s)", type(exc).__name__)
