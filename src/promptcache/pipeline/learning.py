"""Per-family learning: which parts of a family's prefix change from call to call.

A *family* is what should share a prefix: one format, model, tenant and tool set
(:func:`family_id`). Its state (:class:`Family`) is all the engine learns; each
decision drawn from it is a pure function here.

Today's rules (DESIGN.md step 2 and :mod:`promptcache.volatility`):

* a detected volatile value (a clock line, a request id) moves out of the prefix once
  the family has seen it change, and from then on on every call (:func:`system_slot`); one
  that gives the request's own time to the minute moves from the first call (:func:`states_now`);
* a line no regex caught moves once it has changed ``learn_after`` times in place;
* a later system block that changes wholesale is moved whole, after the history;
* tools go out in the family's canonical order from its first call (:func:`canonical_tool_order`:
  by name, or the order of the tenant's previous tool set with the new tools appended), each as
  the caller wrote it, until the family sees a tool's bytes change (key order, content): then
  canonical JSON for good (:func:`tools_canonical`).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from itertools import islice
from typing import Any

import orjson

from promptcache.blocks import BlockKind
from promptcache.canonical import Fragment, digest, relocate_spans
from promptcache.explain import SlotPrint, Snapshot
from promptcache.pipeline.analyse import Message, TextAnalysis, Tools
from promptcache.pseudonym import tenant_label
from promptcache.volatility import SlotVolatility


def family_id(fmt: str, model: str, tenant: str, tool_names: list[str], n_system: int) -> str:
    """The family of a request: same tenant, model, tool set and number of system blocks.

    Content is left out on purpose, so an edited prompt stays in its family and the edit
    can be explained (DESIGN.md step 7).
    """
    # The tenant by its keyed label: the id is exported (spans, events) and names store entries,
    # and a plain hash of a guessable tenant with the model and tool names would give it away.
    return _family_id(fmt, model, tenant_label(tenant), tuple(tool_names), n_system)


# Memoized by value (every request of a family asks for the same id); bounded by entries.
@lru_cache(maxsize=1024)
def _family_id(fmt: str, model: str, label: str, tool_names: tuple[str, ...], n_system: int) -> str:
    return hashlib.sha256(orjson.dumps([fmt, model, label, sorted(tool_names), n_system])).hexdigest()[:16]


@dataclass(slots=True)
class Family:
    """What one prefix family has learned, and its last request's fingerprints (for explain)."""

    slots: dict[str, SlotVolatility] = field(default_factory=dict)
    last: Snapshot | None = None
    #: Each conversation's last request, by :func:`conversation_id` (the most recent
    #: :data:`CONVERSATIONS_PER_FAMILY`): explain compares a request with its own conversation.
    conversations: OrderedDict[bytes, Snapshot] = field(default_factory=OrderedDict)
    #: Each tool's bytes as last sent, in the family's tool order (:attr:`Tools.ordered_raw`).
    tools_raw: tuple[bytes, ...] | None = None
    tools_unstable: bool = False
    #: The family's tool order, by name, decided at its first request and kept
    #: (:func:`canonical_tool_order`); None until then, or when the caller pins the order.
    tool_order: tuple[str, ...] | None = None
    #: The fleet's order for this family (:func:`order_positions`), read before this process
    #: decided one: taken at the family's next request.
    pending_order: list[int] | None = None
    #: Each conversation's last layout and what it was decided for (:func:`keep_layout`), the
    #: most recent :data:`LAYOUTS_PER_FAMILY`.
    layouts: OrderedDict[bytes, tuple[tuple[Any, ...], Learned]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def order_positions(order: tuple[str, ...]) -> list[int]:
    """A tool order as positions in the sorted names (a permutation: shares no name).

    >>> order_positions(("b", "c", "a"))
    [1, 2, 0]
    """
    ranked = sorted(range(len(order)), key=lambda i: order[i])
    pos = [0] * len(order)
    for rank, i in enumerate(ranked):
        pos[i] = rank
    return pos


def order_from_positions(names: list[str], positions: list[int]) -> tuple[str, ...] | None:
    """The tool order ``positions`` gives for ``names`` (None: not an order of these names).

    >>> order_from_positions(["c", "a", "b"], [1, 2, 0])
    ('b', 'c', 'a')
    """
    if sorted(positions) != list(range(len(names))):
        return None
    ranked = sorted(names)
    return tuple(ranked[p] for p in positions)


#: Tool orders remembered per tenant, model and format for :func:`canonical_tool_order`.
ORDERS_PER_LINEAGE = 8


def lineage_id(fmt: str, model: str, tenant: str) -> str:
    """What a family's tool order is inherited within: one tenant's requests to one model."""
    return hashlib.sha256(orjson.dumps([fmt, model, tenant_label(tenant)])).hexdigest()[:16]


class Families:
    """The engine's families, at most ``max_families`` (the oldest created goes first), and
    the tool orders each tenant and model used last (:meth:`tool_order`)."""

    def __init__(self, max_families: int) -> None:
        self._d: dict[str, Family] = {}
        self._max = max_families
        self._lock = threading.Lock()
        self._orders: OrderedDict[str, list[tuple[str, ...]]] = OrderedDict()

    def tool_order(self, fam: Family, lineage: str, names: Sequence[str]) -> tuple[str, ...]:
        """``fam``'s tool order: decided at its first request from the lineage's recent orders
        (:func:`canonical_tool_order`), then kept; the lineage remembers it as its latest."""
        with self._lock:
            recent = self._orders.pop(lineage, [])
            order = fam.tool_order
            if order is None or len(order) != len(names):
                shared = fam.pending_order and order_from_positions(list(names), fam.pending_order)
                order = fam.tool_order = shared or canonical_tool_order(names, recent)
                fam.pending_order = None
            if not recent or recent[0] != order:
                recent = [order, *(o for o in recent if o != order)][:ORDERS_PER_LINEAGE]
            self._orders[lineage] = recent
            if len(self._orders) > self._max:
                self._orders.popitem(last=False)
            return order

    def get(self, fid: str) -> Family:
        """The family ``fid``, created on first use."""
        with self._lock:
            fam = self._d.get(fid)
            if fam is None:
                if len(self._d) >= self._max:
                    self._d.pop(next(iter(self._d)))
                fam = self._d[fid] = Family()
            return fam

    def __len__(self) -> int:
        return len(self._d)


def canonical_tool_order(names: Sequence[str], recent: Sequence[Sequence[str]] = ()) -> tuple[str, ...]:
    """The order a new family sends its tools in, whatever order they come in (issue 22,
    decision 4: canonical from the first call, so a list re-listed in another order, from a
    hash map of MCP servers for example, costs no miss).

    By name, unless the tenant's recent tool orders (``recent``, latest first) share tools with
    this set. Then the order of the latest one this set contains whole (the set grew: a tool or
    an MCP server added mid-session), else of the one sharing the most tools (the latest of
    equals), without the tools this set lacks; this set's other tools follow, by name. A set
    that grows or shrinks so keeps the order already sent, and the provider's cached prefix of
    the tools it kept still matches; sorting would insert a new tool mid-list and rewrite
    everything after it.

    >>> canonical_tool_order(["search", "book", "cancel"])
    ('book', 'cancel', 'search')
    >>> canonical_tool_order(["search", "book", "cancel", "alert"], [("book", "cancel", "search")])
    ('book', 'cancel', 'search', 'alert')
    >>> canonical_tool_order(["search", "cancel"], [("book", "cancel", "search")])
    ('cancel', 'search')
    """
    have = Counter(names)
    best: Sequence[str] = ()
    best_shared = 0
    for order in recent:
        counts = Counter(order)
        if counts <= have:  # the latest set this one grew from
            best = order
            break
        shared = sum((counts & have).values())
        if shared > best_shared:
            best, best_shared = order, shared
    kept: list[str] = []
    for n in best:
        if have[n] > 0:
            have[n] -= 1
            kept.append(n)
    return (*kept, *sorted(have.elements()))


def tools_canonical(previous_raw: tuple[bytes, ...] | None, raw: tuple[bytes, ...], unstable: bool) -> bool:
    """Whether tools go out as canonical JSON: from the first call where a tool's bytes, in the
    family's order, differ from the family's previous ones (a new key order or a changed schema,
    DESIGN.md step 2), and for good after that (no flip back). Until then each tool goes out as
    the caller wrote it: re-serializing an unchanged tool (sorted keys) changes its bytes, and
    its token count, against what the first call already cached."""
    return unstable or (previous_raw is not None and previous_raw != raw)


#: How far from the request's time a value may be and still give "now" (seconds): a clock an
#: agent renders when it builds a turn's prompt, to the minute, sent within a few minutes.
NOW_TOLERANCE_S = 600.0
#: How many of a text's detected values are checked for giving "now" (the first ones).
NOW_SPANS = 64
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:\s*(Z|[+-]\d{2}:?\d{2}))?"
)
_EPOCH = re.compile(r"\b(1[5-9]\d{8})(\d{3})?(?:\.\d+)?\b")


def states_now(value: str, now: float, tolerance: float = NOW_TOLERANCE_S) -> bool:
    """Whether ``value`` (a detected volatile value or clock line) gives the time ``now``
    (seconds since the epoch) to the minute or finer: a date and time within ``tolerance`` of
    it, or an epoch in seconds or milliseconds. A time without an offset is read both as UTC and
    as the process's local time (promptcache runs inside the agent's process).

    Such a value changes by the next minute, whatever the family has seen so far, so it moves
    from the family's first call (issue 22, decision 2) instead of costing a full miss at its
    first change. A date alone does not count (it changes once a day: moving it after the
    history costs more within a day than it saves), nor does a date that is not today's at this
    minute: a policy's "current time" fixed in the past, an example, a version date.

    >>> now = datetime(2026, 12, 7, 9, 58, 12, tzinfo=UTC).timestamp()
    >>> states_now("2026-12-07 09:58", now), states_now("Current date: 2026-12-07", now)
    (True, False)
    >>> states_now("The current time is 2024-05-15 15:00:00 EST.", now)
    False
    >>> states_now("now=1796637492", now), states_now("2026-12-07T10:58:00+01:00", now)
    (True, True)
    """
    head = value[:256]  # a clock line is short; a long line is not scanned past its start
    for m in _DATETIME.finditer(head):
        y, mo, d, h, mi, sec, off = m.groups()
        try:
            naive = datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec or 0))
        except ValueError:
            continue
        if off:
            sign = 1 if off[0] == "+" else -1
            off_s = 0 if off == "Z" else sign * (int(off[1:3]) * 3600 + int(off[-2:]) * 60)
            stamps = [naive.replace(tzinfo=UTC).timestamp() - off_s]
        else:
            stamps = [naive.replace(tzinfo=UTC).timestamp(), naive.timestamp()]
        if any(abs(t - now) <= tolerance for t in stamps):
            return True
    return any(abs(int(m.group(1)) - now) <= tolerance for m in _EPOCH.finditer(head))


def slot_label(kind: BlockKind, i: int) -> str:
    """The label of system slot ``i`` in explanations and fragments."""
    return kind.value if i == 0 else f"{kind.value}[{i}]"


def line_spans(lines: list[str], indices: list[int]) -> list[tuple[int, int, str]]:
    """Character spans, in ``"\\n".join(lines)``, of the lines at ``indices``."""
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    return [(offsets[j], offsets[j] + len(lines[j]), "learned") for j in indices]


def system_slot(
    slot: SlotVolatility, i: int, t: TextAnalysis, label: str, relocates: bool
) -> tuple[str, list[Fragment]]:
    """What to send for system slot ``i`` under what ``slot`` has learned: the text and what moved.

    Detected values move only once the family has seen them change
    (:meth:`SlotVolatility.changed_spans`: moving a value that never changes costs prefix
    for nothing); lines no regex caught move once learned; a later slot learned volatile as
    a whole moves whole (``""`` sent in its place).
    """
    if not relocates:
        return t.stable, t.fragments
    chosen = slot.changed_spans(t.canonical, t.spans, t.span_positions)
    if len(chosen) == len(t.spans):
        text, frags = t.stable, t.fragments
    elif not chosen:
        text, frags = t.canonical, []
    else:
        text, frags = relocate_spans(t.canonical, chosen, label)
    if i > 0 and slot.volatile_block and text:
        return "", [*frags, Fragment(source=label, kind="learned_block", line=1, text=text)]
    # Learned lines are anchored on the fully relocated text; while some detected
    # value is still kept in place they wait for the next request.
    idx = slot.volatile_lines(t.lines) if text == t.stable else []
    if not idx:
        return text, frags
    stable, fs = relocate_spans(t.stable, line_spans(t.lines, idx), label)
    return stable, [*t.fragments, *fs]


def sent_digest(t: TextAnalysis, sent: str) -> str:
    """Digest of the system text sent for ``t`` (one of its own two, or a new one)."""
    if sent == t.stable:
        return t.digest
    if sent == t.canonical:
        return t.canonical_digest
    return digest(t.block.kind.encode(), sent.encode())


@dataclass(slots=True, frozen=True)
class Learned:
    """What the family decided for one request's system texts and tools."""

    system_out: list[str]
    fragments: list[Fragment]
    prints: list[SlotPrint]
    canonical_tools: bool


def learn(
    fam: Family,
    texts: list[TextAnalysis],
    kinds: list[BlockKind],
    tools: Tools,
    *,
    learn_after: int,
    relocates: list[bool],
    now: float | None = None,
) -> Learned:
    """Observe one request in ``fam`` and decide what it sends of its system texts and tools.

    An unchanged slot is not a new observation: a request equal to the last one teaches
    nothing (nor undoes anything learned). ``now``: the request's time (seconds since the
    epoch); a detected value that gives it is learned changing at once (:func:`states_now`).
    """
    frags: list[Fragment] = []
    system_out: list[str] = []
    prints: list[SlotPrint] = []
    with fam.lock:
        for i, t in enumerate(texts):
            slot = fam.slots.get(f"s{i}")
            if slot is None:
                slot = fam.slots[f"s{i}"] = SlotVolatility(learn_after=learn_after)
            if slot.previous != t.lines:
                slot.observe(t.lines)
            if now is not None and t.spans and relocates[i] and slot.values is None:
                # The slot's first request in the family: later ones learn from change. The
                # first values only: a clock sits near the top, and a text with thousands of
                # values (a log) must not cost a date parse each.
                changing = slot.changing
                for key, (start, end, _) in islice(zip(t.span_positions, t.spans, strict=True), NOW_SPANS):
                    if key not in changing and states_now(t.canonical[start:end], now):
                        changing.add(key)
            label = slot_label(kinds[i], i)
            # A text above the relocation bound is sent in place, learned lines and all: its
            # analysis found no span to move (MAX_RELOCATED_VALUES).
            stable, fs = system_slot(slot, i, t, label, relocates[i] and not t.unrelocated)
            system_out.append(stable)
            frags.extend(fs)
            prints.append(
                SlotPrint(
                    t.block.label if i == 0 else f"{t.block.label}[{i}]",
                    t.raw_crc,
                    sent_digest(t, stable),
                    t.line_crcs,
                    t.line_numbers,
                    [(f.kind, f.line) for f in fs],
                    t.unrelocated,
                )
            )
        canonical = tools_canonical(fam.tools_raw, tools.ordered_raw, fam.tools_unstable)
        fam.tools_raw, fam.tools_unstable = tools.ordered_raw, canonical
    if canonical:
        frags.extend(tools.shared.fragments)
    return Learned(system_out, frags, prints, canonical)


#: Conversations per family whose layout :func:`keep_layout` holds (the oldest go first). Their
#: texts are mostly the analyser's own strings, shared; a value relocated from the middle of a
#: text makes one more copy of it per conversation.
LAYOUTS_PER_FAMILY = 64


def keep_layout(
    fam: Family, conversation: bytes | None, texts: list[TextAnalysis], tools: Tools, learned: Learned
) -> Learned:
    """What a conversation sends: its previous layout while what it sends of its own is unchanged,
    else ``learned``, the family's current decision (issue 22, decision 3).

    The family learns from every request, its conversations' included: a value constant within
    each conversation but different between two (an agent id, a session UUID) is learned volatile
    when the second one starts. Moving it then in the first conversation would change a prefix the
    provider holds, a full miss for nothing; so a new decision reaches a conversation when its own
    system texts or tools change (its prefix is rewritten anyway) or when it starts.

    Compared by canonical digest (SHA-256) and the tools' exact bytes: the kept layout was made
    from the same content.
    """
    if conversation is None:
        return learned
    inputs = (tuple(t.canonical_digest for t in texts), tools.raw)
    with fam.lock:
        kept = fam.layouts.pop(conversation, None)
        if kept is not None and kept[0] == inputs:
            learned = kept[1]
        fam.layouts[conversation] = (inputs, learned)
        if len(fam.layouts) > LAYOUTS_PER_FAMILY:
            fam.layouts.popitem(last=False)
    return learned


@dataclass(frozen=True, slots=True)
class ConversationChange:
    """How a request's messages relate to its conversation's previous request.

    ``resent``: leading messages sent unchanged from the previous request. ``stable``: leading
    messages the next request is predicted to resend unchanged, when the conversation rewrites
    part of what it sent before (None: it only appends, so all of them).
    """

    resent: int
    stable: int | None


def conversation_change(previous: Sequence[str], current: Sequence[str]) -> ConversationChange | None:
    """Where a conversation changes, learned from its behaviour (issue 22, decision 5).

    ``previous`` and ``current`` are the digests of the messages of the conversation's last
    request and of this one. Many agents rewrite part of what they sent before rather than only
    appending: a reminder taken off the newest user message, files re-sent after the history,
    observations older than the last few elided in place. The first changed message sits the same
    number of messages before the end on each call, so the next request is predicted to keep
    all but that many of this one's messages: a breakpoint there is read by the next call, while
    one on the tail would be written and never read (Anthropic caches the prefix up to a
    breakpoint, docs.anthropic.com "Prompt caching").

    None: no previous request to compare with.

    >>> conversation_change(["a", "b", "c"], ["a", "b", "c", "d", "e"])  # appends only
    ConversationChange(resent=3, stable=None)
    >>> conversation_change(["a", "b", "F", "u"], ["a", "b", "u", "x", "F2", "v"])  # rewrites the last 2
    ConversationChange(resent=2, stable=4)
    """
    if not previous or not current:
        return None
    n = min(len(previous), len(current))
    resent = next((i for i in range(n) if previous[i] != current[i]), n)
    if resent == len(previous):
        return ConversationChange(resent, None)
    rewritten = len(previous) - resent
    stable = len(current) - rewritten
    return ConversationChange(resent, stable if 0 < stable < len(current) else None)


#: Conversations whose last request each family keeps for :func:`remember` (the oldest go first).
CONVERSATIONS_PER_FAMILY = 256


def conversation_id(opening: Sequence[Message]) -> bytes | None:
    """Which conversation a request continues: 16 bytes of the history digest of its first
    message, ``opening`` (that message's analysis; none for a request without messages: None).

    The digest is the SHA-256 of the message's canonical form, which the analysis made already;
    its history form, because a conversation's first request sends its opening message as the
    current turn and the next ones send it as history. Two conversations that open with the
    same message share an id, which only makes explain compare them with each other.
    """
    return bytes.fromhex(opening[0].history_digest[:32]) if opening else None


def remember(fam: Family, snapshot: Snapshot, conversation: bytes | None = None) -> Snapshot | None:
    """Make ``snapshot`` the family's and its conversation's last request; returns the one to
    explain it against (issue 22, decision 8: like with like).

    That is the conversation's previous request. A conversation not seen before is compared with
    the family's last request for its prefix only: its history is new, not another
    conversation's history rewritten.
    """
    with fam.lock:
        previous: Snapshot | None
        if conversation is None:
            previous = fam.last
        else:
            previous = fam.conversations.pop(conversation, None)
            if previous is None and fam.last is not None:
                previous = replace(fam.last, history=[], messages=[])
            fam.conversations[conversation] = snapshot
            if len(fam.conversations) > CONVERSATIONS_PER_FAMILY:
                fam.conversations.popitem(last=False)
        fam.last = snapshot
    return previous
