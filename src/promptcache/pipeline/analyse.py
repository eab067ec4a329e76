"""Analyse one block: canonical form, scans, digest; through one content-keyed memo.

Every analysis here is a pure function of the block's content (and of the few policy
switches named in its memo key), so :class:`Memo` can serve an unchanged block, whoever
sends it and however often, for the price of one lookup. Keys are values (text, or the
block's JSON bytes), never object identities: a caller that edits a message in place
between calls gets a miss, not a stale entry.

DESIGN.md, "Shape of the code": *analyse each block (canonical form, scans, digests;
one content-keyed memo)*.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson

from promptcache.blocks import Block, BlockKind, Stability, Trust, trusted_block
from promptcache.canonical import (
    VOLATILE_PATTERNS,
    VOLATILE_VERIFY,
    Cuts,
    Fragment,
    Lines,
    canonical_json,
    canonical_text,
    count_volatile_json,
    cut_spans,
    digest,
    find_volatile,
    json_text_is_canonical,
    relocate_json,
)
from promptcache.detect import (
    SECRET,
    SENSITIVE_PATTERNS,
    SENSITIVE_SCANNER,
    VERIFY,
    classes_of,
    classes_of_kinds,
)
from promptcache.formats import WireFormat
from promptcache.layout import section_of, tool_order
from promptcache.scan import Scanner, visible_text
from promptcache.volatility import span_positions
from promptcache.wire import WireAdapter, WireFormatError, normalize_message_text

#: Volatile values and secrets/PII in one RE2 pass: static text is scanned for both.
STATIC_SCANNER = Scanner(
    [*VOLATILE_PATTERNS, *((k, p) for k, _, p in SENSITIVE_PATTERNS)],
    {**VOLATILE_VERIFY, **VERIFY},
    unwrap={k for k, cls, _ in SENSITIVE_PATTERNS if cls == SECRET},
)

MAX_RELOCATED_VALUES = 1_000
"""Most detected volatile values one system text or tool schema may have relocated, by default.

A text or schema holding more is not relocated at all: it is sent in place, as the app sent it
(canonical form only), and the request is counted as ``too_many_volatile``
(:meth:`promptcache.PromptCache.degradations`). Real prompts hold a handful: the most in any
one text, schema or string of the traces and corpora bundled with promptcache (agents' system
prompts and tools, recorded provider traffic) is 2, and 107 in a whole recorded exchange taken
as one text. Thousands mean a log or a data dump pasted into the prompt, where moving every value
after the history would cost more (a fragment and a volatile-block line per value, issue 19
item 7) than it could save. ``PromptCache(max_relocated_values=...)`` changes it."""


class Memo:
    """A thread-safe LRU memo bounded by entries and by the characters its values hold.

    ``max_entries`` entries and ``max_chars`` characters (as each ``put`` declares them)
    at most; the least recently used entries go first.
    """

    def __init__(self, max_entries: int, max_chars: int) -> None:
        self._d: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._max = max_entries
        self._max_chars = max_chars
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """The value stored under ``key``, or None."""
        # No lock: each OrderedDict call is atomic under the GIL; the lock only keeps a
        # put's eviction and character count together.
        hit = self._d.get(key)
        if hit is None:
            return None
        # try/except rather than contextlib.suppress: this runs for every block of every
        # request, and the context manager costs more than the lookup.
        try:
            self._d.move_to_end(key)
        except KeyError:
            return hit[0]  # evicted by a put in another thread meanwhile: still a valid value
        return hit[0]

    def put(self, key: Hashable, value: Any, chars: int = 0) -> None:
        """Store ``value`` (holding ``chars`` characters) under ``key``, evicting as needed."""
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._chars -= old[1]
            while self._d and (len(self._d) >= self._max or self._chars + chars > self._max_chars):
                self._chars -= self._d.popitem(last=False)[1][1]
            self._d[key] = (value, chars)
            self._chars += chars

    @property
    def chars(self) -> int:
        """Characters held by the entries now stored."""
        return self._chars

    def __len__(self) -> int:
        return len(self._d)


@dataclass(slots=True, frozen=True)
class TextAnalysis:
    """A system/developer text after canonical form and relocation of detected values."""

    canonical: str  # before any relocation
    spans: list[tuple[int, int, str]]  # detected volatile spans of ``canonical``
    span_positions: list[tuple[int, int, int, int]]  # where each span sits (volatility.span_positions)
    stable: str  # ``canonical`` with every detected span moved out
    cuts: Cuts  # what moved, for ``stable`` (fragments made only when sent: see ``fragments``)
    lines: list[str]  # of ``stable``
    line_crcs: list[int]
    line_numbers: list[int]  # the caller's (canonical) line number of each stable line
    data_classes: tuple[str, ...]
    raw_crc: int
    digest: str  # of ``stable``
    canonical_digest: str  # of ``canonical``
    block: Block  # of ``stable``
    canonical_block: Block  # of ``canonical``: what a family sends while its values stay put
    #: Detected volatile values left in place because there were more than the bound
    #: (:data:`MAX_RELOCATED_VALUES`; then ``spans`` is empty and nothing moves); 0 otherwise.
    unrelocated: int = 0

    @property
    def fragments(self) -> list[Fragment]:
        """What moved out of ``stable``, as fragments (made on each use: see :class:`Cuts`)."""
        return self.cuts.fragments()


_MARKER = itemgetter(3)  # of a cut: its marker, None when its whole line moved
_KIND = itemgetter(2)  # of a hit: its kind
#: Kinds of hits that :func:`~promptcache.canonical.find_volatile` keeps one for one.
_PLAIN_VOLATILE = frozenset(k for k, _ in VOLATILE_PATTERNS) - {"clock_line"}


def analyse_text(
    text: str, kind: BlockKind, label: str, relocate: bool, max_values: int = MAX_RELOCATED_VALUES
) -> TextAnalysis:
    """Canonical form (DESIGN.md step 2: one newline style, NFC), secret/PII classes and the
    detected volatile values of a system text, moved out (``relocate``) as fragments.

    A text with more than ``max_values`` detected values is not relocated (see
    :data:`MAX_RELOCATED_VALUES`): no span, no cut, their count in ``unrelocated``."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Not valid Unicode: no provider client can send it. Say where, instead
        # of failing later inside a hash or the SDK's JSON encoder.
        raise WireFormatError(
            f"{label}: the text holds an unpaired surrogate at character {exc.start}; "
            "decode the source with errors='replace' or fix the string"
        ) from None
    canon = canonical_text(text)
    # One encoding of a large text, not one per use: the check above, the scan, the digests.
    canon_bytes = data if canon is text else canon.encode("utf-8")
    hits = STATIC_SCANNER.spans(canon, canon_bytes)
    kinds = set(map(_KIND, hits))  # in C: a large text has thousands of hits, mostly of one kind
    classes = classes_of_kinds(kinds)
    spans: list[tuple[int, int, str]] = []
    unrelocated = 0
    if relocate and hits:
        found: list[tuple[int, int, str]] | None = None
        if kinds <= _PLAIN_VOLATILE:
            # Every hit a value find_volatile keeps as it is (no clock line to widen, no secret or
            # PII to skip): as many values as hits, counted without a Python step per hit.
            n = len(hits)
        else:
            found = find_volatile(canon, hits)
            n = len(found)
        if n > max_values:
            # Bounded before any per-value work (positions, cuts, fragments): MAX_RELOCATED_VALUES.
            unrelocated = n
        else:
            spans = found if found is not None else find_volatile(canon, hits)
    index = Lines(canon) if spans else None  # one newline index for the cut and the positions
    stable, cuts = cut_spans(canon, spans, lines=index)
    canonical_digest = digest(kind.encode(), canon_bytes)
    lines = stable.split("\n")
    # Whole-line moves shift every later line up; explanations must speak in
    # the caller's numbering, so map each stable line back to its source line.
    # A whole line moved leaves no marker (checked in C first: most texts move none).
    moved = {line for _, line, _, marker in cuts if marker is None} if None in map(_MARKER, cuts) else None
    if moved:
        numbers = [n for n in range(1, len(lines) + len(moved) + 1) if n not in moved][: len(lines)]
    else:  # values replaced in place by markers (or nothing cut): the numbering is the caller's
        numbers = list(range(1, len(lines) + 1))
    return TextAnalysis(
        canonical=canon,
        spans=spans,
        span_positions=span_positions(canon, spans, index),
        stable=stable,
        cuts=Cuts(cuts, label),
        lines=lines,
        line_crcs=list(map(zlib.crc32, map(str.encode, lines))),
        line_numbers=numbers,
        data_classes=classes,
        raw_crc=zlib.crc32(data),  # valid UTF-8: the bytes surrogatepass would give
        # Nothing cut (the usual case): the two digests are of the same bytes, hashed once.
        digest=canonical_digest if stable is canon else digest(kind.encode(), stable.encode()),
        canonical_digest=canonical_digest,
        block=trusted_block(
            kind, stable, trust=Trust.TRUSTED, stability=Stability.STATIC, data_classes=classes
        ),
        canonical_block=trusted_block(
            kind, canon, trust=Trust.TRUSTED, stability=Stability.STATIC, data_classes=classes
        ),
        unrelocated=unrelocated,
    )


@dataclass(slots=True, frozen=True)
class ToolSet:
    """The canonical part of a tool list laid out in order (by name unless pinned): a caller
    that reshuffles the same tools shares it."""

    canonical: list[bytes]  # each tool's canonical JSON, in layout order (relocated)
    values: list[Any]  # the same, parsed: what is sent once a family sends canonical tools
    blocks: list[Block]
    digests: list[str]
    canonical_by_name: dict[str, str]
    fragments: list[Fragment]
    data_classes: list[tuple[str, ...]]
    chars: int
    #: Tools left as they are, by name, with the count of their detected volatile values: more
    #: than the bound (:data:`MAX_RELOCATED_VALUES`).
    unrelocated: dict[str, int]
    #: Each block's layout section (:func:`promptcache.layout.section_of`), worked out once here
    #: rather than on every request that sends these tools.
    sections: list[str]


@dataclass(slots=True, frozen=True)
class Tools:
    """A tool list as the caller sent it, with its canonical part."""

    shared: ToolSet
    raw_order: list[str]
    raw_crc: dict[str, int]
    raw: bytes  # the list as the caller sent it (orjson, key order kept)
    #: Layout order: index into the caller's list of each tool as laid out (the order of ``shared``).
    order: list[int]
    #: Each tool's bytes as the caller sent it (key order kept), in layout order: equal for a
    #: reshuffled list, different when a tool's keys or content change.
    ordered_raw: tuple[bytes, ...]
    layout: tuple[str, ...]  # the names in layout order
    in_caller_order: bool  # the layout order is the caller's

    def as_sent_in_order(self, tools: list[Any]) -> list[Any]:
        """The caller's ``tools`` (these, as sent) in layout order: the caller's own list when
        it is already in that order."""
        return tools if self.in_caller_order else [tools[i] for i in self.order]


def indices_of(names: Sequence[str], layout: Sequence[str]) -> list[int]:
    """Where each name of ``layout`` sits in ``names`` (a repeated name: its occurrences in turn).

    >>> indices_of(["b", "a", "b"], ["a", "b", "b"])
    [1, 0, 2]
    """
    at: dict[str, list[int]] = {}
    for i in range(len(names) - 1, -1, -1):
        at.setdefault(names[i], []).append(i)
    try:
        return [at[n].pop() for n in layout]
    except (KeyError, IndexError):
        raise ValueError(f"tool layout {list(layout)} is not an order of {list(names)}") from None


def analyse_tool_set(
    tools: list[Any],
    names: list[str],
    order: list[int],
    relocate: bool,
    max_values: int = MAX_RELOCATED_VALUES,
) -> ToolSet:
    """Canonicalize, scan and digest ``tools`` laid out in ``order``.

    Volatile values inside a schema are replaced by markers (a schema has no lines to
    move; :func:`promptcache.canonical.relocate_json`), unless it holds more than
    ``max_values`` of them: then it is left as it is (:data:`MAX_RELOCATED_VALUES`).
    """
    out: list[bytes] = []
    blocks: list[Block] = []
    digests: list[str] = []
    frags: list[Fragment] = []
    classes_list: list[tuple[str, ...]] = []
    canon_by_name: dict[str, str] = {}
    unrelocated: dict[str, int] = {}
    chars = 0
    for i in order:
        cj = canonical_json(tools[i], where=f"tools[{i}]")
        text = cj.decode()
        hits = STATIC_SCANNER.spans(text)
        chars += len(cj)
        classes = classes_of(hits)
        if relocate and hits and find_volatile(text, hits):
            value = orjson.loads(cj)
            # Counted in the strings themselves: in the JSON text an escape (\n) hides a value
            # at the start of a line from the patterns' word boundary.
            n = count_volatile_json(value)
            if n > max_values:
                unrelocated[names[i]] = n
            else:
                value, fs = relocate_json(value, f"tool {names[i]!r}", marker_start=len(frags) + 1)
                frags.extend(fs)
                cj = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        dg = digest(b"tool_schema", cj)
        out.append(cj)
        digests.append(dg)
        canon_by_name[names[i]] = dg
        classes_list.append(classes)
        # The canonical JSON text as content: exact and immutable.
        blocks.append(
            trusted_block(
                BlockKind.TOOL_SCHEMA,
                cj.decode(),
                trust=Trust.TRUSTED,
                stability=Stability.STATIC,
                name=names[i],
                data_classes=classes,
            )
        )
    values = [orjson.loads(c) for c in out]
    sections = [section_of(b, is_current=False) for b in blocks]
    return ToolSet(
        out, values, blocks, digests, canon_by_name, frags, classes_list, chars, unrelocated, sections
    )


@dataclass(slots=True, frozen=True)
class Message:
    """A conversation message with its block and digest."""

    message: Any  # our normalized copy, sent in place of the caller's (only when ``normalized``)
    block: Block
    digest: str
    data_classes: tuple[str, ...]
    chars: int
    normalized: bool  # ``message`` is our normalized copy
    #: The digest this message has once it is part of the history (a current turn's own
    #: differs by its kind): what the next request of the conversation is compared by.
    history_digest: str


def not_json(fmt: WireFormat, exc: TypeError) -> WireFormatError:
    """A message that JSON cannot hold is a malformed body, like any other."""
    return WireFormatError(f"{fmt.value}: a message is not JSON-serializable ({exc})")


def message_key(fmt: WireFormat, msg: Any) -> Hashable:
    """The memo key of a message, by value: its items when every value is a string (most
    chat messages: the strings' own cached hashes, no serialization), else its JSON as sent
    (key order kept; ``1``, ``1.0`` and ``true`` differ)."""
    if type(msg) is dict:
        # A plain loop: this runs for every message of every request, and a generator
        # expression costs a frame per message.
        for v in msg.values():
            if type(v) is not str:
                break
        else:
            return tuple(msg.items())
    try:
        return orjson.dumps(msg)
    except TypeError as exc:
        raise not_json(fmt, exc) from None


#: Where each format keeps a message's content, and the JSON types that content may have.
_CONTENT: dict[WireFormat, tuple[str, tuple[type, ...]]] = {
    WireFormat.OPENAI_CHAT: ("content", (str, list, type(None))),  # None: an assistant's tool calls
    WireFormat.OPENAI_RESPONSES: ("content", (str, list)),
    WireFormat.ANTHROPIC_MESSAGES: ("content", (str, list)),
    WireFormat.BEDROCK_CONVERSE: ("content", (list,)),
    WireFormat.GEMINI: ("parts", (list,)),
}
_TYPE_NAMES = {str: "a string", list: "a list", type(None): "null"}


def check_message(fmt: WireFormat, msg: Any) -> None:
    """Refuse a message whose ``role`` or content has a type the format does not allow, naming the
    field (issue 19: an int was accepted in some formats and failed deep inside in others).
    Only messages not analysed before pay for it: an analysed message was checked then."""
    if type(msg) is not dict:
        return  # the adapters name a message that is not an object
    role = msg.get("role")
    if role is not None and type(role) is not str:
        raise WireFormatError(f"{fmt.value}: a message's 'role' must be a string, not {type(role).__name__}")
    field, types = _CONTENT[fmt]
    if field in msg and not isinstance(msg[field], types):
        allowed = " or ".join(_TYPE_NAMES[t] for t in types)
        raise WireFormatError(
            f"{fmt.value}: a message's '{field}' must be {allowed}, not {type(msg[field]).__name__}"
        )


def analyse_message(fmt: WireFormat, adapter: WireAdapter, msg: Any, current: bool) -> Message:
    """Canonical JSON, secret/PII classes and digest of one conversation message.

    Its kind is the adapter's, except that a plain message of the current turn is the
    user's (``USER``), and a tool result is untrusted (DESIGN.md, Trust).
    """
    check_message(fmt, msg)
    try:
        raw = orjson.dumps(msg, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise not_json(fmt, exc) from None
    # A sorted dump already canonical means the text needs no normalizing either.
    if json_text_is_canonical(raw):
        normalized, cj = msg, raw
    else:
        normalized = normalize_message_text(msg)
        cj = canonical_json(normalized, where="message")
    text = cj.decode()
    # The text the model sees, not the JSON: an escaped quote (\") or newline (\n) would hide
    # ``password = "..."`` and a PEM header from the patterns.
    classes = classes_of(SENSITIVE_SCANNER.scan(visible_text(normalized)))
    kind = as_history_kind = adapter.message_kind(normalized)
    if current and kind is BlockKind.HISTORY:
        kind = BlockKind.USER
    role = normalized.get("role") if type(normalized) is dict else None
    if normalized is not msg:
        # Our own copy, deep: the caller may edit the parts it shares with its message.
        normalized = orjson.loads(orjson.dumps(normalized))
    block = trusted_block(
        kind,
        # A private copy: a memo entry must not change when the caller edits its message.
        orjson.loads(cj),
        role=role if role is None or type(role) is str else str(role),
        stability=Stability.VOLATILE if current else Stability.SESSION,
        data_classes=classes,
        trust=Trust.UNTRUSTED if kind is BlockKind.TOOL_RESULT else Trust.TRUSTED,
    )
    changed = normalized is not msg
    dg = digest(kind.encode(), cj)
    as_history = dg if kind is as_history_kind else digest(as_history_kind.encode(), cj)
    # Unchanged, the caller's own object is sent (not kept here: a memo must not pin it).
    return Message(normalized if changed else None, block, dg, classes, len(text), changed, as_history)


def history_form(current: Message) -> Message:
    """The analysis of a current-turn message once it is part of the history, from its own.

    ``analyse_message(fmt, adapter, msg, False)`` for the ``msg`` that ``current`` analysed with
    ``current=True``: the adapter's kind (a plain message is ``HISTORY`` again, not ``USER``),
    ``SESSION`` stability, and the history digest already computed. An agent's next call sends
    its last turn as history: this spares analysing it a second time.
    """
    block = current.block
    kind = BlockKind.HISTORY if block.kind is BlockKind.USER else block.kind
    return Message(
        current.message,
        trusted_block(
            kind,
            block.content,  # a private copy already, never edited
            role=block.role,
            stability=Stability.SESSION,
            data_classes=current.data_classes,
            trust=Trust.UNTRUSTED if kind is BlockKind.TOOL_RESULT else Trust.TRUSTED,
        ),
        current.history_digest,
        current.data_classes,
        current.chars,
        current.normalized,
        current.history_digest,
    )


@dataclass(slots=True, frozen=True)
class History:
    """The analysed messages of a conversation before its current turn, with the per-message
    figures the layout and the hints read, gathered once per history rather than per request."""

    messages: list[Message]
    blocks: list[Block]
    digests: list[str]
    chars: list[int]
    data_classes: dict[int, list[str]]  # by index in the history
    normalized: bool  # some message is sent as our normalized copy
    sections: list[str]  # each block's layout section (promptcache.layout.section_of), once per message

    def extended(self, more: list[Message]) -> History:
        """This history with ``more`` messages appended (a new value; this one is shared)."""
        n = len(self.messages)
        classes = dict(self.data_classes)
        classes.update({n + i: list(m.data_classes) for i, m in enumerate(more) if m.data_classes})
        return History(
            messages=self.messages + more,
            blocks=self.blocks + [m.block for m in more],
            digests=self.digests + [m.digest for m in more],
            chars=self.chars + [m.chars for m in more],
            data_classes=classes,
            normalized=self.normalized or any(m.normalized for m in more),
            sections=self.sections + [section_of(m.block, is_current=False) for m in more],
        )


EMPTY_HISTORY = History([], [], [], [], {}, False, [])

_LIST_CONTINUES = frozenset(b",]")  # what may follow a JSON list's items: another item, or its end


class Analyser:
    """The analyses of :mod:`promptcache.pipeline.analyse` through one bounded memo.

    Memory: at most ``memo_entries`` entries holding ``memo_chars`` characters.
    """

    def __init__(self, memo_entries: int, memo_chars: int, max_values: int = MAX_RELOCATED_VALUES) -> None:
        self.memo = Memo(memo_entries, memo_chars)
        #: The relocation bound of every analysis made here (:data:`MAX_RELOCATED_VALUES`); one per
        #: analyser, so the memo's keys need not name it.
        self.max_values = max_values

    def text(self, text: str, kind: BlockKind, label: str, relocate: bool) -> TextAnalysis:
        """:func:`analyse_text` under this analyser's bound, memoized by (kind, label, relocate, text)."""
        key = ("text", kind, label, relocate, text)
        hit: TextAnalysis | None = self.memo.get(key)
        if hit is None:
            hit = analyse_text(text, kind, label, relocate, self.max_values)
            self.memo.put(key, hit, 3 * len(text))  # the text, its canonical form and its lines
        return hit

    def tools(
        self,
        fmt: WireFormat,
        adapter: WireAdapter,
        tools: list[Any],
        pin: bool,
        relocate: bool,
        layout: Sequence[str] | None = None,
    ) -> Tools:
        """The tool list analysed, memoized by its bytes; its canonical part by the tools
        in layout order, so reshuffled lists share one entry.

        The layout order is :func:`~promptcache.layout.tool_order`'s (by name unless pinned), or
        ``layout``: the tools' names in the order a family decided for them
        (:func:`~promptcache.pipeline.learning.canonical_tool_order`), the same names as sent.
        """
        try:
            raw = orjson.dumps(tools)
        except TypeError as exc:
            raise WireFormatError(f"{fmt.value}: tools are not JSON-serializable ({exc})") from None
        key = ("tools", fmt, pin, relocate, raw, None if layout is None else tuple(layout))
        hit: Tools | None = self.memo.get(key)
        if hit is not None:
            return hit
        names = [adapter.tool_name(t) for t in tools]
        raws = [orjson.dumps(t) for t in tools]
        order = tool_order(names, pin) if layout is None else indices_of(names, layout)
        ordered = tuple(raws[i] for i in order)
        set_key = ("toolset", fmt, relocate, ordered)
        shared: ToolSet | None = self.memo.get(set_key)
        if shared is None:
            shared = analyse_tool_set(tools, names, order, relocate, self.max_values)
            self.memo.put(set_key, shared, len(raw) + shared.chars)
        crcs = {names[i]: zlib.crc32(raws[i]) for i in range(len(tools))}
        layout_names = tuple(names[i] for i in order)
        res = Tools(shared, names, crcs, raw, order, ordered, layout_names, order == sorted(order))
        self.memo.put(key, res, 2 * len(raw))
        return res

    def history(self, fmt: WireFormat, adapter: WireAdapter, msgs: list[Any]) -> History:
        """The :class:`History` of a conversation's messages before the current turn, paying per
        message only for those the last request with the same opening did not already send.

        An agent resends its history with a turn or two appended on every call. The history's
        compact JSON is the previous one's with those messages added (orjson writes a list as
        ``[`` + the items joined by ``,`` + ``]``), so one serialization and a byte-prefix
        comparison find the unchanged messages; they are exactly equal, types and key order
        included. Anything else (an edit, another conversation) falls back to the memo per message.
        """
        if not msgs:
            return EMPTY_HISTORY
        try:
            raw = orjson.dumps(msgs)
        except TypeError as exc:
            raise not_json(fmt, exc) from None
        # Keyed by the opening bytes: conversations of one agent interleave, and each keeps its own.
        key = ("history", fmt, raw[:256])
        last: tuple[bytes, History] | None = self.memo.get(key)
        known = EMPTY_HISTORY
        if last is not None:
            head, analysed = last  # head: the last history's JSON without its closing bracket
            if raw.startswith(head) and raw[len(head)] in _LIST_CONTINUES:
                if len(analysed.messages) == len(msgs):
                    return analysed
                known = analysed
        out = known.extended([self.message(fmt, adapter, m, False) for m in msgs[len(known.messages) :]])
        self.memo.put(key, (raw[:-1], out), len(raw))
        return out

    def message(self, fmt: WireFormat, adapter: WireAdapter, msg: Any, current: bool) -> Message:
        """:func:`analyse_message`, memoized by (format, current turn or not, the message's JSON)."""
        value = message_key(fmt, msg)
        key = ("message", fmt, current, value)
        hit: Message | None = self.memo.get(key)
        if hit is None:
            if not current:
                # The last call's current turn, now in the history: derived, not analysed again.
                was_current: Message | None = self.memo.get(("message", fmt, True, value))
                if was_current is not None:
                    hit = history_form(was_current)
            if hit is None:
                hit = analyse_message(fmt, adapter, msg, current)
            self.memo.put(key, hit, hit.chars)
        return hit
