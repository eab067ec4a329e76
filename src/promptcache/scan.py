"""One linear-time pass over text for every pattern promptcache looks for.

Volatile values (canonical form) and secrets/PII (policy) are found by a single
RE2 scan per block. RE2 matters here for two reasons: a combined DFA visits each
byte once however many patterns there are, and its running time is linear in
the input, so adversarial tool output or retrieved documents cannot stall the
canonicalizer the way a backtracking regex can.

A :class:`Scanner` is built from ``(kind, pattern)`` pairs. The combined
pattern finds the next hit; the hit is then attributed to its kind by matching
the (short) hit against each kind's own pattern. Optional ``verify`` callbacks
reject hits a regex cannot rule out (a Luhn check, a hex run without digits).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import re2


class Hit(NamedTuple):
    """A span of ``text[start:end]`` matched by pattern ``kind``.

    A named tuple, not a frozen dataclass: a large text yields tens of thousands of hits,
    and a frozen dataclass costs several times as much to build.
    """

    start: int
    end: int
    kind: str


#: ``verify(text, start, end)``: keep the hit ``text[start:end]``? The whole text is
#: passed so a verifier can look at the context (e.g. a decimal point before it).
Verify = Callable[[str, int, int], bool]


class Scanner:
    """Find every non-overlapping hit of a set of named patterns.

    >>> s = Scanner([("year", r"\\b\\d{4}\\b"), ("word", r"\\bcache\\b")])
    >>> s.scan("cache since 2024")
    [Hit(start=0, end=5, kind='word'), Hit(start=12, end=16, kind='year')]

    ``prefilter(text)``, when given, is a cheap necessary condition of any hit: a text it
    rejects is not scanned (see :data:`promptcache.detect.sensitive_clue`).
    """

    def __init__(
        self,
        patterns: Sequence[tuple[str, str]],
        verify: Mapping[str, Verify] | None = None,
        *,
        prefilter: Callable[[str], bool] | None = None,
    ) -> None:
        if not patterns:
            raise ValueError("Scanner needs at least one (kind, pattern) pair")
        self.kinds = [k for k, _ in patterns]
        self._combined = re2.compile("|".join(f"(?:{p})" for _, p in patterns))
        # google-re2's search() wraps the compiled RE2 in a generator and a match object
        # per call; the RE2 object's own Match gives the spans directly. Used when this
        # version of the binding has it, else search() (checked once, here).
        raw = getattr(self._combined, "_regexp", None)
        anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
        self._raw_match = None if raw is None or anchor is None else raw.Match
        self._anchor = anchor
        # Attribution runs on the short hit only, so Python's re is fine here.
        self._each = [(k, re.compile(p)) for k, p in patterns]
        self._verify: Mapping[str, Verify] = verify or {}
        # What attribution runs per hit, bound once: a text can hold tens of thousands of hits.
        self._attributes = [(k, rx.match, self._verify.get(k)) for k, rx in self._each]
        # The kinds as one Python pattern, a named group each: matched at a hit, ``lastindex``
        # names the first kind (in table order) that matches there, in one call instead of
        # one per kind. Only a candidate: it is kept when it ends where RE2's hit ends and
        # passes its check; otherwise the kinds are tried one by one, as always.
        self._first = re.compile("|".join(f"({p})" for _, p in patterns))
        self._group_kind: dict[int | None, int] = {}
        group = 1
        for i, (_, p) in enumerate(patterns):
            self._group_kind[group] = i
            group += 1 + re.compile(p).groups
        self._prefilter = prefilter

    def scan(self, text: str) -> list[Hit]:
        """All hits in ``text``, left to right."""
        return list(map(Hit._make, self.spans(text)))

    def spans(self, text: str, data: bytes | None = None) -> list[tuple[int, int, str]]:
        """All hits in ``text``, left to right, as plain ``(start, end, kind)`` tuples.

        ``data``: ``text`` already encoded as UTF-8 (with ``surrogatepass``), when the caller has it.

        What :meth:`scan` returns as :class:`Hit` objects, for a caller that keeps many: the
        garbage collector stops tracking a plain tuple of atoms, not a named tuple, and a large
        text's tens of thousands of tracked hits made full collections run on every call.
        """
        if self._prefilter is not None and not self._prefilter(text):
            return []
        # google-re2 re-encodes a str argument on every call; one UTF-8 encode up
        # front and byte offsets make the scan ~2.5x faster. Offsets are mapped
        # back to characters only for hits, and only when the text is not ASCII.
        if data is None:
            data = text.encode("utf-8", "surrogatepass")
        ascii_only = len(data) == len(text)
        hits: list[tuple[int, int, str]] = []
        pos = 0
        n = len(data)
        search = self._combined.search
        raw_match, anchor = self._raw_match, self._anchor
        attributes = self._attributes
        first, group_kind = self._first.match, self._group_kind
        b_at = c_at = 0  # a byte offset and its character offset, moved forward hit by hit
        while pos < n:
            if raw_match is not None:
                bstart, bend = raw_match(anchor, data, pos, n)[0]
                if bstart < 0:
                    break
            else:
                m = search(data, pos)
                if m is None:
                    break
                bstart, bend = m.span()
            if ascii_only:
                start, end = bstart, bend
            else:
                # Only the bytes since the previous hit are decoded: decoding the whole prefix
                # for every hit made a long non-ASCII text with many hits quadratic.
                c_at += len(data[b_at:bstart].decode("utf-8", "surrogatepass"))
                b_at = bstart
                start = c_at
                end = start + len(data[bstart:bend].decode("utf-8", "surrogatepass"))
            # Attribution, inline (a text can hold tens of thousands of hits): the combined
            # match is the leftmost one; find which kind produced it (first in table order,
            # as RE2's leftmost-first alternation does).
            m2 = first(text, start)
            k = group_kind.get(m2.lastindex) if m2 is not None and m2.end() == end else None
            if k is not None:
                kind, _, check = attributes[k]
                if check is None or check(text, start, end):
                    hits.append((start, end, kind))
                    pos = bend if bend > bstart else bstart + 1
                    continue
            for kind, match, check in attributes:
                m2 = match(text, start)
                if m2 is None or m2.end() != end or (check is not None and not check(text, start, end)):
                    continue
                hits.append((start, end, kind))
                break
            pos = bend if bend > bstart else bstart + 1
        return hits
