"""Learned volatility: which lines of a block change on every call of a family.

Regexes catch the volatile values people anticipate (clock lines, UUIDs, ...).
This map catches the rest: for each slot of a prefix family (say, the first
system block of one agent) it compares consecutive versions line by line.
A line that keeps changing while the lines around it stay put is learned as
volatile after ``learn_after`` changes, and from then on relocated like a
regex hit. A slot whose content changes wholesale on every call (per-call
memory spliced in as a system message) is learned as a volatile *block* and
moved after the history.

Lines are identified by an anchor: a checksum of the nearest stable line
above and the distance to it, so a learned line is found again when the
prompt grows or shrinks elsewhere.

>>> m = SlotVolatility(learn_after=2)
>>> for n in range(3):
...     m.observe(["Policy", f"nonce tango-{n}-foxtrot", "Be nice"])
>>> m.volatile_lines(["Policy", "nonce tango-9-foxtrot", "Be nice"])
[1]
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, compress, islice, repeat
from operator import gt, itemgetter, lt, sub

from promptcache.canonical import Lines

#: How many consecutive lines a local edit may span and still count as volatile.
MAX_LOCAL_LINES = 3
#: Share of lines that must be unchanged for an edit to count as local.
MIN_UNCHANGED_SHARE = 0.5
_TOP = -1  # anchor of a line with no stable line above it


def _crc(line: str) -> int:
    return zlib.crc32(line.encode("utf-8", "surrogatepass"))


def span_positions(
    text: str, spans: Sequence[tuple[int, int, str]], lines: Lines | None = None
) -> list[tuple[int, int, int, int]]:
    """Where each of ``spans`` (sorted by start) sits, as a key that is unique within ``text``:
    (checksum of the nearest non-blank line above that holds no span, distance to it in lines,
    order among the spans of its line, occurrence of that same key before it).

    Blank lines are skipped as anchors: they separate most prompts' paragraphs, and two values
    each under a blank line would otherwise share a position. Linear in the text: the lines
    between two consecutive spans are looked at once. ``lines``: the newline index of ``text``,
    when the caller has it.

    >>> text = "intro\\n\\nRequest ID: r1\\n\\nTime: 10:00"
    >>> [p[1:] for p in span_positions(text, [(19, 21, "id"), (29, 34, "clock")])]
    [(2, 0, 0), (4, 0, 0)]
    """
    if not spans:
        return []
    starts = list(map(itemgetter(0), spans))
    if any(map(gt, starts, islice(starts, 1, None))):
        return _positions_unsorted(text, spans)
    newlines = (lines if lines is not None else Lines(text)).newlines
    n = len(starts)
    # Each span's line (0-based): the newlines between consecutive starts, counted in C.
    at = list(accumulate(map(text.count, repeat("\n"), [0, *starts[:-1]], starts))) if newlines else [0] * n
    if at[0] == at[-1]:  # all on one line (a long paragraph, a JSON blob): one anchor, in order
        anchor, anchor_line = _anchor_above(text, newlines, at[0], -1, _TOP, -1)
        return list(zip(repeat(anchor), repeat(at[0] - anchor_line), range(n), repeat(0)))
    previous = [-1, *at[:-1]]
    # Where lines lie between a span and the previous span's line, the anchor is looked for
    # again; elsewhere it carries over. With no two spans on a line (a value per line, as in a
    # log), the keys between two such places are one subtraction each, done in C.
    walks = list(compress(range(n), map(gt, map(sub, at, previous), repeat(1))))
    out: list[tuple[int, int, int, int]] = []
    anchor, anchor_line = _TOP, -1
    if 8 * len(walks) <= n and all(map(lt, previous, at)):
        # Keys under one anchor line differ by their distance; they can only collide under two
        # anchor lines with the same checksum (equal lines), which the occurrence pass settles.
        lines_of: dict[int, int] = {anchor: anchor_line}
        unique = True
        done = 0
        for w in [*walks, n]:
            out += zip(
                repeat(anchor), map(sub, islice(at, done, w), repeat(anchor_line)), repeat(0), repeat(0)
            )
            if w < n:
                anchor, anchor_line = _anchor_above(
                    text, newlines, at[w], at[w - 1] if w else -1, anchor, anchor_line
                )
                unique = unique and lines_of.setdefault(anchor, anchor_line) == anchor_line
            done = w
        if unique:
            return out
    else:
        append = out.append
        prev_line, order = -1, 0
        for line_no in at:
            if line_no != prev_line:
                order = 0
                if line_no - 1 > prev_line:
                    anchor, anchor_line = _anchor_above(
                        text, newlines, line_no, prev_line, anchor, anchor_line
                    )
                prev_line = line_no
            else:
                order += 1
            append((anchor, line_no - anchor_line, order, 0))
    if len(set(out)) == n:
        return out  # every key is new: each is its first occurrence
    seen: dict[tuple[int, int, int], int] = {}
    for i, (a, d, o, _) in enumerate(out):
        k = seen.get((a, d, o), 0)
        seen[a, d, o] = k + 1
        out[i] = (a, d, o, k)
    return out


def _anchor_above(
    text: str, newlines: list[int], line_no: int, prev_line: int, anchor: int, anchor_line: int
) -> tuple[int, int]:
    """The anchor of a span on ``line_no`` whose previous span is on ``prev_line``: the checksum
    and number of the first non-blank line above it and below ``prev_line`` (none holds a span),
    or ``(anchor, anchor_line)``, the previous span's, when all of them are blank."""
    for k in range(line_no - 1, prev_line, -1):
        line = text[newlines[k - 1] + 1 if k else 0 : newlines[k]]
        if line.strip():
            return _crc(line), k
    return anchor, anchor_line


def _positions_unsorted(text: str, spans: Sequence[tuple[int, int, str]]) -> list[tuple[int, int, int, int]]:
    """:func:`span_positions` of spans given out of order (a clock line widened to the start of a
    line that holds an earlier value): the walk as it always was, newlines counted between
    consecutive spans, so that the keys a family learned stay the same."""
    out: list[tuple[int, int, int, int]] = []
    seen: dict[tuple[int, int, int], int] = {}
    line_no, pos = 0, 0
    prev_line, order = -1, 0
    anchor, anchor_line = _TOP, -1
    for start, _, _ in spans:
        line_no += text.count("\n", pos, start)
        pos = start
        if line_no != prev_line:
            order = 0
            end = text.rfind("\n", 0, start)
            for k in range(line_no - 1, prev_line, -1):
                begin = text.rfind("\n", 0, end) + 1
                line = text[begin:end]
                if line.strip():
                    anchor, anchor_line = _crc(line), k
                    break
                end = begin - 1
        else:
            order += 1
        prev_line = line_no
        key = (anchor, line_no - anchor_line, order)
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append((*key, n))
    return out


@dataclass(slots=True)
class SlotVolatility:
    """Change history of one slot (e.g. ``system[0]``) in one prefix family."""

    learn_after: int = 2
    previous: list[str] | None = None
    counts: dict[tuple[int, int], int] = field(default_factory=dict)
    learned: set[tuple[int, int]] = field(default_factory=set)
    wholesale_streak: int = 0
    observations: int = 0
    #: The previous request's detected values, by position (:func:`span_positions`).
    values: dict[tuple[int, int, int, int], str] | None = None
    #: The positions of the values seen changing (moved from then on).
    changing: set[tuple[int, int, int, int]] = field(default_factory=set)

    def changed_spans(
        self,
        text: str,
        spans: list[tuple[int, int, str]],
        positions: list[tuple[int, int, int, int]] | None = None,
    ) -> list[tuple[int, int, str]]:
        """The detected volatile spans of ``text`` that should move out of the prefix.

        A detection is a guess until the family shows the value changing: a
        value equal to the previous request's stays where it is (moving a value
        that never changes would cost prefix for nothing). From its first change
        on, a value is moved on every request, so the prefix does not flip-flop.

        Values are matched by position, not by what they look like (issue 22, decision 2):
        the stable line above them (its checksum, as for learned lines), the distance to it,
        and their order on their line (:func:`span_positions`; pass ``positions`` when they are
        known already, as the engine's memoized analysis does). A clock that is an ISO stamp on
        one call and an epoch on the next is the same changing value.

        >>> m = SlotVolatility()
        >>> text = "Policy\\n[{}] clock\\nBe nice"
        >>> a, b = text.format("2026-12-07T10:00:00Z"), text.format("1765101660")
        >>> m.changed_spans(a, [(8, 28, "iso_datetime")])
        []
        >>> m.changed_spans(b, [(8, 18, "epoch")])
        [(8, 18, 'epoch')]
        """
        if positions is None:
            positions = span_positions(text, spans)
        changing = self.changing
        if changing and len(positions) == len(spans) and changing.issuperset(positions):
            # Every value moves already, and from then on for good: what they hold now can
            # teach nothing (a value is compared only while it is not known to change, and a
            # new position is not compared at all), so none is read or kept.
            self.values = {}
            return list(spans)
        values = {key: text[start:end] for key, (start, end, _) in zip(positions, spans, strict=True)}
        previous, changing = self.values, self.changing
        if previous is not None and previous != values:  # one comparison when nothing changed
            changing.update(k for k, v in values.items() if previous.get(k, v) != v)
        self.values = values
        if not changing:
            return []
        if values.keys() <= changing:  # every value moves (one set comparison, not one test per span)
            return list(spans)
        return [span for key, span in zip(positions, spans, strict=True) if key in changing]

    @property
    def volatile_block(self) -> bool:
        """True once the whole slot has changed on ``learn_after`` consecutive calls."""
        return self.wholesale_streak >= self.learn_after

    def observe(self, lines: list[str]) -> None:
        """Record this call's version of the slot."""
        self.observations += 1
        prev = self.previous
        self.previous = lines
        if prev is None or prev == lines:
            if prev is not None:
                self.wholesale_streak = 0
            return
        n_prev, n_new = len(prev), len(lines)
        p = 0
        limit = min(n_prev, n_new)
        while p < limit and prev[p] == lines[p]:
            p += 1
        s = 0
        while s < limit - p and prev[n_prev - 1 - s] == lines[n_new - 1 - s]:
            s += 1
        changed = n_new - p - s
        if (
            n_new - p - s == n_prev - p - s
            and 1 <= changed <= MAX_LOCAL_LINES
            and (p + s >= MIN_UNCHANGED_SHARE * n_new)
        ):
            self.wholesale_streak = 0
            anchor = _crc(lines[p - 1]) if p > 0 else _TOP
            for k in range(1, changed + 1):
                key = (anchor, k)
                c = self.counts.get(key, 0) + 1
                self.counts[key] = c
                if c >= self.learn_after:
                    self.learned.add(key)
        elif p + s < MIN_UNCHANGED_SHARE * max(n_new, 1):
            self.wholesale_streak += 1
        else:
            self.wholesale_streak = 0

    def volatile_lines(self, lines: list[str]) -> list[int]:
        """Indices of ``lines`` that this slot has learned to be volatile."""
        if not self.learned:
            return []
        out: list[int] = []
        anchor, dist = _TOP, 0
        for i, line in enumerate(lines):
            dist += 1
            if (anchor, dist) in self.learned:
                out.append(i)
                continue  # a volatile line never anchors the lines below it
            anchor, dist = _crc(line), 0
        return out
