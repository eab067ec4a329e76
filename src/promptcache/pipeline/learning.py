"""Per-family learning: which parts of a family's prefix change from call to call.

A *family* is what should share a prefix: one format, model, tenant and tool set
(:func:`family_id`). Its state (:class:`Family`) is all the engine learns; each
decision drawn from it is a pure function here.

Today's rules (DESIGN.md step 2 and :mod:`promptcache.volatility`):

* a detected volatile value (a clock line, a request id) moves out of the prefix once
  the family has seen it change, and from then on on every call (:func:`system_slot`);
* a line no regex caught moves once it has changed ``learn_after`` times in place;
* a later system block that changes wholesale is moved whole, after the history;
* tools go out as the caller sent them until the family sees their bytes change (order,
  key order), then sorted and canonical for good (:func:`tools_canonical`).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import orjson

from promptcache.blocks import BlockKind
from promptcache.canonical import Fragment, digest, relocate_spans
from promptcache.explain import SlotPrint, Snapshot
from promptcache.pipeline.analyse import TextAnalysis, Tools
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
    tools_raw: bytes | None = None
    tools_unstable: bool = False
    #: Each conversation's last layout and what it was decided for (:func:`keep_layout`), the
    #: most recent :data:`LAYOUTS_PER_FAMILY`.
    layouts: OrderedDict[bytes, tuple[tuple[Any, ...], Learned]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Families:
    """The engine's families, at most ``max_families`` (the oldest created goes first)."""

    def __init__(self, max_families: int) -> None:
        self._d: dict[str, Family] = {}
        self._max = max_families
        self._lock = threading.Lock()

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


def tools_canonical(previous_raw: bytes | None, raw: bytes, unstable: bool) -> bool:
    """Whether tools go out sorted and canonical: from the first call whose tool bytes differ
    from the family's previous ones (a reorder or a new key order breaks the provider's prefix
    on every call; DESIGN.md step 2), and for good after that (no flip back)."""
    return unstable or (previous_raw is not None and previous_raw != raw)


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
) -> Learned:
    """Observe one request in ``fam`` and decide what it sends of its system texts and tools.

    An unchanged slot is not a new observation: a request equal to the last one teaches
    nothing (nor undoes anything learned).
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
            label = slot_label(kinds[i], i)
            stable, fs = system_slot(slot, i, t, label, relocates[i])
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
                )
            )
        canonical = tools_canonical(fam.tools_raw, tools.raw, fam.tools_unstable)
        fam.tools_raw, fam.tools_unstable = tools.raw, canonical
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


def conversation_id(messages: list[Any]) -> bytes | None:
    """Which conversation a request continues: a 16-byte digest of its first message, as sent
    (the first 256 bytes of its JSON; None for a request without messages). Two conversations
    that open alike share an id until they differ, which only makes explain compare them with
    each other.

    A digest, not the bytes themselves: orjson's output keeps its whole buffer (kilobytes for
    a short message), and a family remembers up to :data:`CONVERSATIONS_PER_FAMILY` of them.
    """
    if not messages:
        return None
    try:
        head = orjson.dumps(messages[0])[:256]
    except TypeError:
        return None
    return hashlib.blake2b(head, digest_size=16).digest()


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
