"""Canonical form: equal meaning gives equal bytes.

Two requests that mean the same thing should produce the same bytes, or the
provider's prefix cache misses for nothing. This module fixes the usual
culprits:

* text: one newline style (``\\n``) and Unicode NFC;
* structured content: JSON with sorted keys, its strings normalized the same way;
* volatile values (clock lines, timestamps, epoch seconds, UUIDs, request and
  trace ids, hex nonces) inside otherwise static text are *relocated*: cut out
  of the stable text and returned as :class:`Fragment` objects, so the caller
  can place them after the cached prefix. Nothing is dropped: every relocated
  value is still sent to the model.

>>> text, frags = relocate_text("Be brief.\\nThe current time is 2024-05-15 15:00:00 EST.\\n", "system")
>>> text
'Be brief.\\n'
>>> frags[0].kind, frags[0].line, frags[0].text
('clock_line', 2, 'The current time is 2024-05-15 15:00:00 EST.')
"""

from __future__ import annotations

import hashlib
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from itertools import accumulate
from operator import add
from typing import Any

import orjson

from promptcache.scan import Scanner, Verify

#: Detections that stand for their whole line (the line announces the clock,
#: or was learned as volatile as a whole).
WHOLE_LINE_KINDS = frozenset({"clock_line", "learned"})

#: Lines up to this length are moved whole; a volatile value inside a longer
#: line is replaced by a marker, so a long paragraph keeps its place in the prefix.
LINE_MOVE_LIMIT = 240

#: kind -> pattern, in priority order. Patterns are RE2-compatible (see
#: :mod:`promptcache.scan`): no lookarounds; what a regex cannot express is
#: checked by ``VOLATILE_VERIFY``.
VOLATILE_PATTERNS: list[tuple[str, str]] = [
    # A line that announces the clock ("Current date: ...", "Today is ..."); the
    # whole line moves when it carries a digit (see find_volatile).
    (
        "clock_line",
        r"(?i:\bcurrent(?:ly)?\s+(?:date|time)\b|\btoday(?:'s\s+date)?\s+is\b|\bthe\s+(?:date|time)\s+is\b"
        r"|\b(?:date|time|timestamp|now)\s*:)",
    ),
    (
        "timestamp",
        r"\b\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?",
    ),
    # A bare time of day ("02:30:00") is not here on purpose: in real prompts it
    # is usually an example ("02:30:00 means 2:30 AM"); clock lines and learned
    # volatility catch the ones that do change.
    ("uuid", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    ("trace_id", r"\b[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\b"),
    (
        "request_id",
        r"\b(?i:request|req|trace|span|run|correlation|session)[ _-]?(?i:id)\s*[:=]\s*[\w.:-]{6,}"
        r"|\b(?:req|chatcmpl|resp|msg|run|trace)_[A-Za-z0-9]{8,}\b",
    ),
    ("epoch", r"\b1[5-9]\d{8}(?:\d{3})?(?:\.\d+)?\b"),
    ("hex_nonce", r"\b[0-9a-fA-F]{16,64}\b"),
]


def _mixed_hex(text: str, start: int, end: int) -> bool:
    # A nonce mixes digits and letters; a run of only digits or only letters is
    # a number or a word.
    s = text[start:end]
    return any(c.isdigit() for c in s) and any(c.isalpha() for c in s)


VOLATILE_VERIFY: dict[str, Verify] = {"hex_nonce": _mixed_hex}
_VOLATILE = Scanner(VOLATILE_PATTERNS, VOLATILE_VERIFY)


@dataclass(frozen=True, slots=True)
class Fragment:
    """A volatile value moved out of a stable block.

    ``source`` is the label of the block it came from (``system``, ``tool 'search'``);
    ``kind`` what was detected (``timestamp``, ``uuid``, ``learned`` ...); ``line`` is
    1-based within the block's canonical text; ``text`` the moved text, byte for byte.
    ``marker`` is set when only the value moved (long lines, structured content): the
    stable text then holds the marker where the value was. ``path`` is the JSON path of
    a value moved out of structured content.

    A frozen dataclass rather than a pydantic model: every field is made by promptcache
    itself, never parsed from outside, and a large text yields tens of thousands of them
    (validating each was a third of such a call). A :class:`~promptcache.plan.Plan` holds
    them as they are.
    """

    source: str
    kind: str
    line: int
    text: str = field(repr=False)
    marker: str | None = None
    path: str | None = None


def canonical_text(text: str) -> str:
    """Return ``text`` with one newline style and NFC normalization.

    >>> canonical_text("cafe\\u0301\\r\\nok")
    'café\\nok'
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return text


def _normalize_strings(value: Any) -> Any:
    if isinstance(value, str):
        return canonical_text(value)
    if isinstance(value, dict):
        return {canonical_text(str(k)): _normalize_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalize_strings(v) for v in value]
    return value


class CanonicalizationError(TypeError):
    """Content that cannot be put in canonical form (e.g. not JSON-serializable)."""


def json_text_is_canonical(raw: bytes) -> bool:
    """Whether every string in the JSON ``raw`` is already in canonical form: ASCII (so NFC)
    without an escaped CR. Then serializing needs no normalization walk first.

    >>> json_text_is_canonical(b'{"a":"x\\\\ny"}'), json_text_is_canonical(b'{"a":"x\\\\r\\\\ny"}')
    (True, False)
    """
    return raw.isascii() and b"\\r" not in raw


def canonical_json(value: Any, *, where: str = "content") -> bytes:
    """Serialize ``value`` as canonical JSON: sorted keys, normalized strings.

    >>> canonical_json({"b": 1, "a": "x\\r\\ny"})
    b'{"a":"x\\\\ny","b":1}'
    """
    try:
        raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise CanonicalizationError(
            f"{where} is not JSON-serializable ({exc}); pass plain dicts, lists, strings, "
            "numbers, booleans or None"
        ) from None
    if json_text_is_canonical(raw):
        return raw
    return orjson.dumps(_normalize_strings(value), option=orjson.OPT_SORT_KEYS)


def digest(*parts: bytes) -> str:
    """SHA-256 hex over length-prefixed parts (unambiguous concatenation).

    >>> digest(b"user", b"hello")[:16]
    'bb645f9105b80150'
    """
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()


def find_volatile(
    text: str, hits: Sequence[tuple[int, int, str]] | None = None
) -> list[tuple[int, int, str]]:
    """Spans ``(start, end, kind)`` of volatile values in ``text``.

    ``hits`` (:class:`~promptcache.scan.Hit` objects or plain ``(start, end, kind)``
    tuples) lets a caller that already scanned ``text`` with a combined scanner
    (volatile and sensitive patterns in one pass) reuse that pass; hits of other
    kinds are ignored.

    >>> find_volatile("id 123e4567-e89b-12d3-a456-426614174000 ok")
    [(3, 39, 'uuid')]
    """
    if hits is None:
        hits = _VOLATILE.spans(text)
    spans: list[tuple[int, int, str]] = []
    append = spans.append
    lines: Lines | None = None
    for hit in hits:
        kind = hit[2]
        if kind not in _VOLATILE_KINDS:
            continue
        if kind == "clock_line":
            # The keyword alone is not volatile: the line is, when it carries a value.
            lines = lines if lines is not None else Lines(text)
            ls, le = lines.bounds(hit[0], hit[1])
            if any(c.isdigit() for c in text[ls:le]):
                append((ls, le, "clock_line"))
        else:
            # A plain hit tuple is kept as it is: a large text has tens of thousands of them.
            append(hit if type(hit) is tuple else (hit[0], hit[1], kind))
    return spans


_VOLATILE_KINDS = frozenset(k for k, _ in VOLATILE_PATTERNS)


class Lines:
    """Where the lines of one text start and end, found in one pass.

    A span's line number and bounds are then a bisection, not a scan from the start of the
    text (or of a long line) per span, which made many spans in a large text quadratic
    (issue 19, item 7: a 1 MB prompt with 25k timestamps took 15 s).

    >>> lines = Lines("ab\\ncd\\nef")
    >>> lines.number(4), lines.bounds(3, 4)
    (2, (3, 5))
    """

    __slots__ = ("_size", "newlines")

    def __init__(self, text: str) -> None:
        """Index the newlines of ``text``."""
        self._size = len(text)
        # The i-th newline sits after the first i + 1 lines and i newlines: every step in C.
        ends = list(accumulate(map(len, text.split("\n"))))
        #: Offsets of the newlines, in order.
        self.newlines: list[int] = list(map(add, ends[:-1], range(len(ends) - 1)))

    def number(self, pos: int) -> int:
        """The 1-based line that ``pos`` is on."""
        return bisect_left(self.newlines, pos) + 1

    def bounds(self, start: int, end: int) -> tuple[int, int]:
        """The start of the line holding ``start`` and the end (its newline) of the one holding ``end``."""
        nl = self.newlines
        i = bisect_left(nl, start)
        j = bisect_left(nl, end, lo=i)
        return (nl[i - 1] + 1 if i else 0), (nl[j] if j < len(nl) else self._size)


#: One value :func:`cut_spans` took out of a text: ``(kind, line, text, marker)``, the fields
#: of its :class:`Fragment` but the source. A plain tuple: a large text yields tens of thousands.
Cut = tuple[str, int, str, str | None]


def _fragment_maker(source: str, path: str | None) -> Callable[[Cut], Fragment]:
    """What makes the fragment of one cut of the block ``source``: equal to
    ``Fragment(source, kind, line, text, marker, path)``, at half the price.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``; here
    each slot is set through its own descriptor, and a large text yields tens of thousands
    of fragments in one call (issue 19, item 7). ``tests/core/test_core_linear.py`` holds
    it to the constructor, field by field.
    """
    new = object.__new__
    set_source, set_kind, set_line, set_text, set_marker, set_path = _FRAGMENT_SLOTS

    def make(cut: Cut) -> Fragment:
        f: Fragment = new(Fragment)
        kind, line, text, marker = cut
        set_source(f, source)
        set_kind(f, kind)
        set_line(f, line)
        set_text(f, text)
        set_marker(f, marker)
        set_path(f, path)
        return f

    return make


#: The setters of Fragment's slots, in :func:`dataclasses.fields` order.
_FRAGMENT_SLOTS = tuple(getattr(Fragment, f.name).__set__ for f in fields(Fragment))


class Cuts:
    """What :func:`cut_spans` took out of one text, as :class:`Fragment` objects made when asked.

    An analysed text is cut speculatively (the family decides later what moves, and often nothing
    does); building an object per value up front was most of the time of a large text with many
    values. Nor are the fragments kept once made: an analysis lives in the memo, and tens of
    thousands of objects kept there per large text made every full collection of the garbage
    collector walk them again (issue 19, item 7); a text whose values move changes from call to
    call, so its analysis is seldom asked twice.
    """

    __slots__ = ("_path", "_source", "cuts")

    def __init__(self, cuts: list[Cut], source: str, path: str | None = None) -> None:
        """Hold ``cuts`` of the block labelled ``source`` (``path``: their JSON path, if any)."""
        self.cuts = cuts
        self._source = source
        self._path = path

    def fragments(self) -> list[Fragment]:
        """The cuts as fragments, in text order (a new list each time)."""
        return list(map(_fragment_maker(self._source, self._path), self.cuts))

    def __len__(self) -> int:
        return len(self.cuts)


def cut_spans(
    text: str,
    spans: list[tuple[int, int, str]],
    *,
    marker_start: int = 1,
    whole_lines: bool = True,
    lines: Lines | None = None,
) -> tuple[str, list[Cut]]:
    """Cut ``spans`` out of ``text``: whole short lines, or the value behind a marker.

    Returns the stable text and the cuts in text order. Lines are moved with their
    newline so the remaining text stays well formed. Linear in the text and the spans:
    line numbers and bounds come from one index of the newlines (:class:`Lines`; pass
    ``lines`` when the caller has it).
    """
    if not spans:
        return text, []
    out: list[str] = []
    cuts: list[Cut] = []
    out_append, cut_append = out.append, cuts.append
    limit, whole_kinds = LINE_MOVE_LIMIT, WHOLE_LINE_KINDS
    pos = 0
    n_marker = marker_start
    size = len(text)
    # Spans come in text order, so the newline index is walked once with two cursors
    # (one per span end): line numbers and bounds in linear time overall. The end of the
    # text stands as a last newline, so that a cursor never runs off the index.
    newlines = [*(lines if lines is not None else Lines(text)).newlines, size]
    k = 0  # newlines[:k] lie before the span's start: it is on line k + 1
    for start, end, kind in sorted(spans):
        if start < pos:  # overlaps a region already moved
            continue
        while newlines[k] < start:
            k += 1
        j = k
        while newlines[j] < end:
            j += 1
        ls = newlines[k - 1] + 1 if k else 0
        le = newlines[j]
        # A whole line moves when it *is* the volatile thing (a clock line, or a
        # value filling most of it, like "Request-ID: ..."); otherwise only the
        # value moves, so instructions around it stay in the cached prefix. Only a
        # short line is looked at: slicing a long one for every span is quadratic.
        if (
            whole_lines
            and le - ls <= limit
            and ls >= pos
            and (kind in whole_kinds or 3 * (end - start) >= 2 * len(text[ls:le].strip()))
        ):
            out_append(text[pos:ls])
            cut_append((kind, k + 1, text[ls:le], None))
            pos = le + 1 if le < size else le
        else:
            marker = f"[volatile:{n_marker}]"
            n_marker += 1
            out_append(text[pos:start])
            out_append(marker)
            cut_append((kind, k + 1, text[start:end], marker))
            pos = end
    out.append(text[pos:])
    stable = "".join(out)
    # Moving the final line of a text with no trailing newline leaves the newline
    # that separated it; drop it so stable text + fragments rebuild the original.
    if cuts and cuts[-1][3] is None and pos == len(text) and not text.endswith("\n"):
        stable = stable.removesuffix("\n")
    return stable, cuts


def relocate_spans(
    text: str,
    spans: list[tuple[int, int, str]],
    source: str,
    *,
    marker_start: int = 1,
    path: str | None = None,
    whole_lines: bool = True,
) -> tuple[str, list[Fragment]]:
    """Cut ``spans`` out of ``text`` (:func:`cut_spans`) and return the stable text and the fragments."""
    stable, cuts = cut_spans(text, spans, marker_start=marker_start, whole_lines=whole_lines)
    return stable, Cuts(cuts, source, path).fragments()


def relocate_text(text: str, source: str, *, marker_start: int = 1) -> tuple[str, list[Fragment]]:
    """Canonicalize ``text`` and move its detected volatile values out.

    See the module docstring for an example.
    """
    text = canonical_text(text)
    return relocate_spans(text, find_volatile(text), source, marker_start=marker_start)


def count_volatile_json(value: Any) -> int:
    """How many volatile values :func:`relocate_json` would move out of ``value``'s string leaves
    (keys are left alone), without cutting them.

    >>> count_volatile_json({"a": "at 2024-05-15 10:00", "b": ["x", "req_ABCDEFGH1234 ok"], "c": 1})
    2
    """
    if isinstance(value, str):
        return len(find_volatile(value))
    if isinstance(value, dict):
        return sum(map(count_volatile_json, value.values()))
    if isinstance(value, list):
        return sum(map(count_volatile_json, value))
    return 0


def relocate_json(value: Any, source: str, *, marker_start: int = 1) -> tuple[Any, list[Fragment]]:
    """Move volatile values out of the string leaves of structured content.

    Values are replaced by markers (a JSON schema has no lines to move); keys
    are left alone. Returns the new value and the fragments.
    """
    frags: list[Fragment] = []

    def walk(v: Any, path: str) -> Any:
        if isinstance(v, str):
            spans = find_volatile(v)
            if not spans:
                return v
            new, fs = relocate_spans(
                v,
                spans,
                source,
                marker_start=marker_start + len(frags),
                path=path,
                whole_lines=False,
            )
            frags.extend(fs)
            return new
        if isinstance(v, dict):
            return {k: walk(x, f"{path}.{k}") for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, f"{path}[{i}]") for i, x in enumerate(v)]
        return v

    return walk(value, "$"), frags
