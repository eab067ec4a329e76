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

A scanner can also look *inside* base64: with ``unwrap`` kinds, every base64 run that
decodes to text (an encoded credentials file, a Kubernetes Secret's data) is scanned again,
and a hit of one of those kinds in it is reported over the whole run. This is a second RE2
pass of its own, so a run that turns out not to be text never hides a hit of the first.

What to scan is the text a model sees: :func:`visible_text` renders a JSON-like value with
its strings as they are, never JSON-escaped (an escaped quote or newline would hide
``password = "..."`` and a PEM header from the patterns).
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from itertools import accumulate
from typing import Any, NamedTuple

import re2

# RE2's DFA is built lazily, state by state, within ``max_mem``. At RE2's default (8 MiB) the
# combined secrets table (about 30 patterns, several case-insensitive) overflows it on ordinary
# text: the DFA is flushed and rebuilt over and over, and the scan runs ~8x slower (measured in
# benchmarks/reliability_secrets.py). 64 MiB is a ceiling, not an allocation.
_OPTIONS = re2.Options()
_OPTIONS.max_mem = 64 << 20


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
        unwrap: Collection[str] = (),
    ) -> None:
        if not patterns:
            raise ValueError("Scanner needs at least one (kind, pattern) pair")
        self.kinds = [k for k, _ in patterns]
        self._combined = re2.compile("|".join(f"(?:{p})" for _, p in patterns), _OPTIONS)
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
        # By group number: the kind and check of a kind's own (outer) group, None for the
        # groups inside a pattern. A list, not a dict: it is read once per hit.
        self._by_group: list[tuple[str, Verify | None] | None] = [None] * (self._first.groups + 1)
        group = 1
        for kind, p in patterns:
            self._by_group[group] = (kind, self._verify.get(kind))
            group += 1 + re.compile(p).groups
        self._prefilter = prefilter
        self._unwrap = frozenset(unwrap)
        # Every pattern on its own, for one pass that names the kinds present anywhere in a text
        # with many hits: when only one is, no hit needs attributing (see _one_kind). Compiled
        # when first needed (some ms at import for a table, and most processes never need it).
        self._patterns = [p for _, p in patterns]
        self._set: re2.Set | None = None

    def scan(self, text: str) -> list[Hit]:
        """All hits in ``text``, left to right (with those found inside base64 runs, see ``unwrap``)."""
        return list(map(Hit._make, self.spans(text)))

    def spans(
        self, text: str, data: bytes | None = None, *, depth: int | None = None
    ) -> list[tuple[int, int, str]]:
        """All hits in ``text``, left to right, as plain ``(start, end, kind)`` tuples.

        ``data``: ``text`` already encoded as UTF-8 (with ``surrogatepass``), when the caller has it.
        ``depth``: layers of base64 still to unwrap (default :data:`_UNWRAP_DEPTH`).

        What :meth:`scan` returns as :class:`Hit` objects, for a caller that keeps many: the
        garbage collector stops tracking a plain tuple of atoms, not a named tuple, and a large
        text's tens of thousands of tracked hits made full collections run on every call.
        """
        if depth is None:
            depth = _UNWRAP_DEPTH
        if self._prefilter is not None and not self._prefilter(text):
            return []
        # google-re2 re-encodes a str argument on every call; one UTF-8 encode up
        # front and byte offsets make the scan ~2.5x faster. Offsets are mapped
        # back to characters only for hits, and only when the text is not ASCII.
        if data is None:
            data = text.encode("utf-8", "surrogatepass")
        ascii_only = len(data) == len(text)
        hits: list[tuple[int, int, str]] = []
        append = hits.append
        pos = 0
        n = len(data)
        search = self._combined.search
        raw_match, anchor = self._raw_match, self._anchor
        attributes = self._attributes
        first, by_group = self._first.match, self._by_group
        # A byte offset and its character offset, moved forward as hits pass non-ASCII text;
        # up to the next non-ASCII byte, offsets differ by the same number of bytes.
        b_at = c_at = 0
        next_wide = n if ascii_only else _first_wide(data, 0, n)
        # Past _ONE_KIND_AFTER hits, whether one kind can be told for all that follow (_one_kind)
        seen = 0
        one: tuple[str, Verify | None, int] | None = None
        one_from = n + 1  # the byte offset from which hits take the one-kind path
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
            # The next search starts after this hit (or one byte on, after an empty one).
            pos = bend if bend > bstart else bstart + 1
            if ascii_only:
                start, end = bstart, bend
            elif bend <= next_wide:  # ASCII since the last known offset: a subtraction
                start, end = bstart - b_at + c_at, bend - b_at + c_at
            else:
                # Only the bytes since the last known offset are decoded: decoding the whole
                # prefix for every hit made a long non-ASCII text with many hits quadratic.
                start = c_at + len(data[b_at:bstart].decode("utf-8", "surrogatepass"))
                end = start + len(data[bstart:bend].decode("utf-8", "surrogatepass"))
                b_at, c_at = bend, end
                next_wide = _first_wide(data, bend, n)
            if bstart >= one_from:
                if one is None:  # asked once, at the _ONE_KIND_AFTER-th hit
                    one = self._one_kind(data)
                    one_from = n + 1 if one is None else max(bstart, one[2])
                if bstart >= one_from and one is not None and raw_match is not None:
                    _one_kind_hits(text, data, pos, (start, end), bstart, raw_match, anchor, one, append)
                    break
            seen += 1
            if seen == _ONE_KIND_AFTER and raw_match is not None and one is None:
                one_from = bstart  # from the next hit on
            # Attribution, inline (a text can hold tens of thousands of hits): the combined
            # match is the leftmost one; find which kind produced it (first in table order,
            # as RE2's leftmost-first alternation does).
            m2 = first(text, start)
            if m2 is not None and m2.end() == end:
                entry = by_group[m2.lastindex or 0]
                if entry is not None and (entry[1] is None or entry[1](text, start, end)):
                    append((start, end, entry[0]))
                    continue
            for kind, match, check in attributes:
                m2 = match(text, start)
                if m2 is None or m2.end() != end or (check is not None and not check(text, start, end)):
                    continue
                append((start, end, kind))
                break
        if self._unwrap and depth > 0:
            hits = self._unwrapped(text, data, ascii_only, hits, depth)
        return hits

    def _one_kind(self, data: bytes) -> tuple[str, Verify | None, int] | None:
        """The kind and check of every hit from byte ``start`` on in ``data``, when one kind can
        be told without matching each hit again: ``(kind, check, start)``, else None.

        When a single pattern of the table matches anywhere in the text (one RE2 pass of them
        all, apart), each hit of the combined pattern is one of that pattern's. Attribution
        also matches with Python's ``re`` (on ``str``), which reads a few characters otherwise
        than RE2 does: any non-ASCII one (``\\d``, ``\\w`` and ``\\b`` are Unicode-aware there),
        and ``\\v`` and ``\\x1c``-``\\x1f`` (in Python's ``\\s``, not RE2's). A match starting
        past the last of those, one character after it at least (a ``\\b`` reads the character
        before), reads none of them and is the same in both: from there on, a hit is the one
        kind's when its check passes, and dropped when it does not, as attribution decides.
        """
        if self._set is None:  # two threads may both compile it: the same set either way
            one = re2.Set.SearchSet(_OPTIONS)
            for p in self._patterns:
                one.Add(p)
            one.Compile()
            self._set = one
        found = self._set.Match(data)
        if found is None or len(found) != 1:  # None too when RE2 ran out of memory: attribute
            return None
        kind = self.kinds[found[0]]
        # len(data.rstrip(_AGREEING)), at a fifth of the price: each byte one table lookup
        # (0 where the two engines agree) and one search from the end, both in C.
        agreeing = data.translate(_DISAGREEING).rfind(1) + 1
        return kind, self._verify.get(kind), agreeing + 1 if agreeing else 0

    def _unwrapped(
        self, text: str, data: bytes, ascii_only: bool, hits: list[tuple[int, int, str]], depth: int
    ) -> list[tuple[int, int, str]]:
        """``hits`` plus one hit per base64 run of ``text`` whose decoded text holds an ``unwrap`` kind."""
        spans: list[tuple[int, int]] = []
        texts: list[str] = []
        for bstart, bend in _runs(data):
            if bend - bstart <= _MAX_UNWRAP:
                decoded = _decoded_text(data[bstart:bend])
                if decoded is not None:
                    spans.append((bstart, bend))
                    texts.append(decoded)
        if not texts:
            return hits
        # One scan of every decoded run, joined by a line no pattern crosses (a value stops at
        # ';' and a quoted one at a newline): one RE2 pass, not one per run.
        offsets = list(accumulate(len(t) + len(_JOIN) for t in texts))
        found: dict[int, set[str]] = {}
        for h_start, _, h_kind in self.spans(_JOIN.join(texts), depth=depth - 1):
            if h_kind in self._unwrap:
                found.setdefault(bisect_right(offsets, h_start), set()).add(h_kind)
        extra: list[tuple[int, int, str]] = []
        for i, kinds in sorted(found.items()):
            bstart, bend = spans[i]
            if ascii_only:
                start, end = bstart, bend
            else:
                start = len(data[:bstart].decode("utf-8", "surrogatepass"))
                end = start + len(data[bstart:bend].decode("utf-8", "surrogatepass"))
            if any(h[0] < end and start < h[1] for h in hits):
                continue  # already reported (a key body the first pass knows)
            extra.append((start, end, min(kinds)))
        return sorted([*hits, *extra], key=lambda h: h[0]) if extra else hits


#: Hits attributed one by one before :meth:`Scanner._one_kind` is asked (a short text never pays
#: for its pass).
_ONE_KIND_AFTER = 64
#: The bytes Python's ``re`` and RE2 read alike (:meth:`Scanner._one_kind`).
_AGREEING = bytes(sorted(set(range(128)) - {0x0B, 0x1C, 0x1D, 0x1E, 0x1F}))
#: A ``bytes.translate`` table: 1 for each byte not in :data:`_AGREEING`, 0 for the others.
_DISAGREEING = bytes(0 if b in _AGREEING else 1 for b in range(256))


def _one_kind_hits(
    text: str,
    data: bytes,
    pos: int,
    span: tuple[int, int],
    bstart: int,
    raw_match: Callable[..., Any],
    anchor: Any,
    one: tuple[str, Verify | None, int],
    append: Callable[[tuple[int, int, str]], None],
) -> None:
    """The hits of ``data`` from the one at ``span`` (characters; ``bstart`` in bytes) on, where
    every hit is of one kind (:meth:`Scanner._one_kind`): appended as ``(start, end, kind)``
    when the kind's check passes. Past that hit the text is ASCII, so a character offset is
    the byte offset plus one difference."""
    kind, check, _ = one
    start, end = span
    delta = start - bstart
    n = len(data)
    while True:
        if check is None or check(text, start, end):
            append((start, end, kind))
        if pos >= n:
            return
        bstart, bend = raw_match(anchor, data, pos, n)[0]
        if bstart < 0:
            return
        pos = bend if bend > bstart else bstart + 1
        start, end = bstart + delta, bend + delta


_WIDE = re.compile(rb"[\x80-\xff]")


def _first_wide(data: bytes, pos: int, n: int) -> int:
    """The offset of the first byte of ``data[pos:]`` outside ASCII, or ``n`` (its length)."""
    m = _WIDE.search(data, pos)
    return n if m is None else m.start()


#: How many layers of base64 are unwrapped (a base64 credentials file in a base64 Secret: two).
_UNWRAP_DEPTH = 2
#: Runs longer than this are not decoded (an image or a file attachment, not a credential).
_MAX_UNWRAP = 256 * 1024
# A base64 run of at least 24 characters (18 bytes), with the line breaks and indentation of
# wrapped output (``base64`` wraps at 76 columns, YAML indents continuation lines).
_BASE64_RUN = re2.compile(rb"[A-Za-z0-9+/]{24,}={0,2}(?:\r?\n[ \t]*[A-Za-z0-9+/]{4,}={0,2})*")
_JOIN = "\n;\n"
_CONTROL_BYTES = re.compile(b"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]")
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


def _runs(data: bytes) -> Iterator[tuple[int, int]]:
    """The spans of the base64 runs of ``data`` (through the RE2 object's own Match when the
    binding has it: finditer's generator and match objects cost more than the search)."""
    raw = getattr(_BASE64_RUN, "_regexp", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if raw is None or anchor is None:
        yield from (m.span() for m in _BASE64_RUN.finditer(data))
        return
    pos, n = 0, len(data)
    while pos < n:
        start, end = raw.Match(anchor, data, pos, n)[0]
        if start < 0:
            return
        yield start, end
        pos = end


def _decoded_text(run: bytes) -> str | None:
    """The text a base64 ``run`` encodes, or None when it is not (mostly printable) text."""
    # Cheap rejection first: six bytes decoded from the first eight characters.
    if _CONTROL_BYTES.search(base64.b64decode(run[:8])):
        return None
    decoded = _b64_text(b"".join(run.split()))
    if decoded is None and b"\n" in run:
        # A line of prose after a wrapped run can be taken for its last line: the first alone.
        decoded = _b64_text(run.split(b"\n", 1)[0].strip())
    if decoded is None:
        return None
    bad = len(_UNPRINTABLE.findall(decoded))
    return decoded if bad * 20 <= len(decoded) else None


def _b64_text(compact: bytes) -> str | None:
    if b"=" not in compact:
        compact = compact[: len(compact) - len(compact) % 4]
    try:
        return base64.b64decode(compact).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def visible_text(value: Any) -> str:
    """``value`` (JSON-like: dicts, lists, strings, numbers) as one text, strings as written.

    Keys and values keep their JSON shape (``"key": "value"``) so that a credential named
    in one field and given in the next is seen together, but nothing inside a string is
    escaped: a quote stays a quote and a newline a newline, as the model reads them.

    >>> visible_text({"env": {"name": "DB_PASSWORD", "value": 'say "hi"'}})
    '{"env": {"name": "DB_PASSWORD", "value": "say "hi""}}'
    """
    parts: list[str] = []
    _render(value, parts)
    return "".join(parts)


def _render(value: Any, out: list[str]) -> None:
    # ``type(...) is dict`` before the Mapping ABC: an ABC check is a Python-level call, and
    # parsed JSON is plain dicts (this runs on every new message).
    if isinstance(value, str):
        out.append(value)
    elif type(value) is dict or isinstance(value, Mapping):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            out.append(f'{", " if i else ""}"{k}": ')
            _quoted(v, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(", ")
            _quoted(v, out)
        out.append("]")
    elif value is not None:
        out.append(str(value))


def _quoted(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(f'"{value}"')
    else:
        _render(value, out)
