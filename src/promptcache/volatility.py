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
from dataclasses import dataclass, field

#: How many consecutive lines a local edit may span and still count as volatile.
MAX_LOCAL_LINES = 3
#: Share of lines that must be unchanged for an edit to count as local.
MIN_UNCHANGED_SHARE = 0.5
_TOP = -1  # anchor of a line with no stable line above it


def _crc(line: str) -> int:
    return zlib.crc32(line.encode("utf-8", "surrogatepass"))


@dataclass(slots=True)
class SlotVolatility:
    """Change history of one slot (e.g. ``system[0]``) in one prefix family."""

    learn_after: int = 2
    previous: list[str] | None = None
    counts: dict[tuple[int, int], int] = field(default_factory=dict)
    learned: set[tuple[int, int]] = field(default_factory=set)
    wholesale_streak: int = 0
    observations: int = 0
    #: The previous request's detected values, per kind in order of appearance.
    values: dict[str, list[str]] | None = None
    #: Per kind, the positions of the values seen changing (moved from then on).
    changing: dict[str, set[int]] = field(default_factory=dict)

    def changed_spans(self, text: str, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
        """The detected volatile spans of ``text`` that should move out of the prefix.

        A detection is a guess until the family shows the value changing: a
        value equal to the previous request's stays where it is (moving a value
        that never changes would cost prefix for nothing). From its first change
        on, a value is moved on every request, so the prefix does not flip-flop.
        Values are matched by kind and order of appearance.
        """
        # Per kind, the values in order: no key object per value (a text may hold tens of thousands).
        values: dict[str, list[str]] = {}
        previous = self.values
        changing = self.changing
        chosen: list[tuple[int, int, str]] = []
        for span in spans:
            start, end, kind = span
            seen = values.get(kind)
            if seen is None:
                seen = values[kind] = []
            n = len(seen)
            value = text[start:end]
            seen.append(value)
            moving = changing.get(kind)
            if previous is not None:
                before = previous.get(kind)
                if before is not None and n < len(before) and before[n] != value:
                    if moving is None:
                        moving = changing[kind] = set()
                    moving.add(n)
            if moving is not None and n in moving:
                chosen.append(span)
        self.values = values
        return chosen

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
