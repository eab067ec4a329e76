"""Relocation is linear (issue 19, item 7) and cuts exactly what the per-span scan did.

Time is measured in ``make reliability`` (section ``linear``: the 1 MB prompt with 25k
timestamps against ``json.dumps``, as a ratio); here the linear cutter is held to the
definition it replaced, which counted newlines from the start of the text for every span.
"""

from __future__ import annotations

import random

from promptcache.canonical import LINE_MOVE_LIMIT, WHOLE_LINE_KINDS, Lines, cut_spans, find_volatile

Span = tuple[int, int, str]


def _by_definition(text: str, spans: list[Span], whole_lines: bool) -> tuple[str, list[tuple[object, ...]]]:
    """The cut as it was defined before: quadratic, obviously right."""
    out: list[str] = []
    cuts: list[tuple[object, ...]] = []
    pos, n = 0, 1
    for start, end, kind in sorted(spans):
        if start < pos:
            continue
        ls = text.rfind("\n", 0, start) + 1
        found = text.find("\n", end)
        le = len(text) if found == -1 else found
        line_no = text.count("\n", 0, start) + 1
        mostly = kind in WHOLE_LINE_KINDS or 3 * (end - start) >= 2 * len(text[ls:le].strip())
        if whole_lines and mostly and le - ls <= LINE_MOVE_LIMIT and ls >= pos:
            out.append(text[pos:ls])
            cuts.append((kind, line_no, text[ls:le], None))
            pos = le + 1 if le < len(text) else le
        else:
            marker = f"[volatile:{n}]"
            n += 1
            out += [text[pos:start], marker]
            cuts.append((kind, line_no, text[start:end], marker))
            pos = end
    out.append(text[pos:])
    stable = "".join(out)
    if cuts and cuts[-1][3] is None and pos == len(text) and not text.endswith("\n"):
        stable = stable.removesuffix("\n")
    return stable, cuts


PIECES = [
    "Current date: 2024-05-15",
    "trace 123e4567-e89b-12d3-a456-426614174000 here",
    "req_ABCDEFGH12345",
    "Policy text that stays.",
    "x" * 300,
    "",
    "at 2024-01-01T10:00:00Z and 2024-01-02 11:00",
]


def test_cuts_equal_the_definition_on_random_texts() -> None:
    rng = random.Random(19)
    for _ in range(2000):
        text = "\n".join(rng.choice(PIECES) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.3:
            text = text.replace("\n", rng.choice([" ", "\n\n"]))  # one long line, or blank lines
        spans: list[Span] = list(find_volatile(text))
        if text and rng.random() < 0.3:  # a learned span, possibly over several lines and overlapping
            a = rng.randrange(len(text))
            spans.append((a, min(len(text), a + rng.randint(0, 80)), "learned"))
        for whole_lines in (True, False):
            stable, cuts = cut_spans(text, spans, whole_lines=whole_lines)
            assert (stable, [tuple(c) for c in cuts]) == _by_definition(text, spans, whole_lines)


def test_a_megabyte_on_one_line_with_25k_values() -> None:
    # The shape that was quadratic twice over: every span's line is the whole text.
    stamps = [f"2024-05-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00" for i in range(25_000)]
    text = " ".join(f"event {s} ok...................." for s in stamps)
    stable, cuts = cut_spans(text, list(find_volatile(text)))
    assert len(cuts) == 25_000 and all(c[1] == 1 for c in cuts)
    assert [c[2] for c in cuts] == stamps
    assert "2024-" not in stable and stable.count("[volatile:") == 25_000


def test_lines_index() -> None:
    lines = Lines("a\nbb\n\nccc")
    assert [lines.number(i) for i in (0, 1, 2, 4, 5, 6)] == [1, 1, 2, 2, 3, 4]
    assert lines.bounds(2, 3) == (2, 4) and lines.bounds(6, 8) == (6, 9) and lines.bounds(0, 6) == (0, 9)


def test_scan_offsets_are_characters_in_a_long_non_ascii_text() -> None:
    # Byte offsets are mapped to characters incrementally (the whole prefix was decoded per hit).
    from promptcache.pipeline.analyse import STATIC_SCANNER

    rng = random.Random(7)
    parts, expected, at = [], [], 0
    for i in range(3000):
        filler = rng.choice(["é", "日本", "🙂", "a", "Ω "]) * rng.randint(0, 5) + " at "
        stamp = f"2024-05-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00"
        parts += [filler, stamp, "\n"]
        expected.append((at + len(filler), at + len(filler) + len(stamp)))
        at += len(filler) + len(stamp) + 1
    text = "".join(parts)
    hits = STATIC_SCANNER.scan(text)
    assert [(h.start, h.end) for h in hits if h.kind == "timestamp"] == expected


def _positions_by_walking(text: str, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, int, int]]:
    """The definition of volatility.span_positions, walking up from each span (quadratic)."""
    import bisect
    import zlib

    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    at = [bisect.bisect_right(starts, s[0]) - 1 for s in spans]
    with_spans, out, last, order = set(at), [], -1, 0
    seen: dict[tuple[int, int, int], int] = {}
    for line_no in at:
        j = line_no - 1
        while j >= 0 and (j in with_spans or not lines[j].strip()):
            j -= 1
        anchor = zlib.crc32(lines[j].encode("utf-8", "surrogatepass")) if j >= 0 else -1
        order = order + 1 if line_no == last else 0
        last = line_no
        key = (anchor, line_no - j, order)
        out.append((*key, seen.get(key, 0)))
        seen[key] = seen.get(key, 0) + 1
    return out


def test_span_positions_equal_their_walking_definition() -> None:
    # One pass over the lines (a value on every line of a 1 MB prompt was quadratic), same result.
    import random

    from promptcache.volatility import span_positions

    rng = random.Random(7)
    for _ in range(2000):
        lines = [
            rng.choice(["a", "bb", "x1", "", " ", f"v{rng.randint(0, 9)}"]) for _ in range(rng.randint(1, 9))
        ]
        text = "\n".join(lines)
        picks = sorted(rng.sample(range(len(text)), min(len(text), rng.randint(0, 5)))) if text else []
        spans = [(c, c + 1, "k") for c in picks]
        assert span_positions(text, spans) == _positions_by_walking(text, spans), (text, spans)
    # Every line holding a value: each anchored on the top, at its own distance.
    text = "\n".join(f"[2026-12-07T10:00:{i % 60:02d}Z] event" for i in range(500))
    spans = [(i * 29 + 1, i * 29 + 21, "timestamp") for i in range(500)]
    assert span_positions(text, spans) == [(-1, i + 1, 0, 0) for i in range(500)]


def test_positions_of_every_layout_equal_their_walking_definition() -> None:
    # span_positions takes one of three paths (all values on one line; a value per line with
    # few gaps, keys made in C; anything else, span by span): each is held to the definition,
    # on texts made to reach it, with repeated anchor lines so that occurrences count.
    from promptcache.volatility import span_positions

    rng = random.Random(11)
    for _ in range(600):
        n = rng.randint(1, 60)
        lines = [rng.choice(["----", "", "x1 ok", "same", "same", f"v{rng.randint(0, 3)}"]) for _ in range(n)]
        text = "\n".join(lines)
        offsets = [0]
        for line in lines[:-1]:
            offsets.append(offsets[-1] + len(line) + 1)
        layout = rng.choice(["one_line", "per_line", "mixed"])
        picks: list[int]
        if layout == "one_line":
            i = rng.randrange(n)
            picks = sorted(rng.sample(range(len(lines[i]) + 1), min(len(lines[i]) + 1, rng.randint(1, 4))))
            spans = [(offsets[i] + c, offsets[i] + c, "k") for c in picks]
        else:
            rows = sorted(rng.sample(range(n), rng.randint(1, n)))
            if layout == "mixed":
                rows = sorted(rows + rng.sample(rows, min(len(rows), 3)))
            spans = [(offsets[r], offsets[r] + len(lines[r]), "k") for r in rows]
        assert span_positions(text, spans) == _positions_by_walking(text, spans), (text, spans)


def test_fragments_made_from_cuts_equal_the_constructor() -> None:
    from dataclasses import fields

    from promptcache.canonical import Cuts, Fragment

    cuts = [("timestamp", 3, "2024-05-15 10:00", None), ("uuid", 4, "x", "[volatile:1]")]
    made = Cuts(cuts, "system", "$.a").fragments()
    expected = [Fragment("system", k, line, text, marker, "$.a") for k, line, text, marker in cuts]
    assert made == expected and [hash(f) for f in made] == [hash(f) for f in expected]
    for f, e in zip(made, expected, strict=True):
        assert all(getattr(f, x.name) == getattr(e, x.name) for x in fields(Fragment))
        assert repr(f) == repr(e)


def test_changed_spans_equal_their_definition_over_many_calls() -> None:
    # The definition: every call's values kept by position, compared with the last call's.
    # changed_spans skips that work once every value moves; decisions must stay the same,
    # including when positions come and go afterwards.
    from promptcache.volatility import SlotVolatility

    rng = random.Random(5)
    for _ in range(300):
        slot = SlotVolatility()
        previous: dict[tuple[int, int, int, int], str] | None = None
        changing: set[tuple[int, int, int, int]] = set()
        keys = [(-1, d, 0, 0) for d in range(1, 9)]
        for _ in range(rng.randint(1, 8)):
            present = sorted(rng.sample(keys, rng.randint(0, len(keys))), key=lambda k: k[1])
            texts = [rng.choice("ab") for _ in present]
            text = "".join(texts)
            spans = [(i, i + 1, "k") for i in range(len(present))]
            values = dict(zip(present, texts, strict=True))
            if previous is not None and previous != values:
                changing.update(k for k, v in values.items() if previous.get(k, v) != v)
            previous = values
            expected = [s for k, s in zip(present, spans, strict=True) if k in changing]
            assert slot.changed_spans(text, spans, present) == expected


def test_scan_offsets_after_a_few_wide_characters() -> None:
    # Offsets past the last non-ASCII character are a subtraction; a lone surrogate (which the
    # message scan passes through) counts as one character, as decoding with surrogatepass does.
    from promptcache.detect import SENSITIVE_SCANNER
    from promptcache.pipeline.analyse import STATIC_SCANNER

    for head in ("Café log\n", "\ud800 x ", "日本🙂\n", ""):
        stamps = [f"2024-05-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00" for i in range(500)]
        middle = 250
        text = head + "".join(f"ev {s} ok\n" + ("é\n" if i == middle else "") for i, s in enumerate(stamps))
        if "\ud800" in head:  # not valid Unicode: only the message scan sees such text
            text += " ops@example.com"
            assert [text[h.start : h.end] for h in SENSITIVE_SCANNER.scan(text)] == ["ops@example.com"]
        else:
            hits = STATIC_SCANNER.scan(text)
            assert [text[h.start : h.end] for h in hits if h.kind == "timestamp"] == stamps


def test_hits_of_one_kind_equal_their_attribution_one_by_one(monkeypatch: object) -> None:
    # Past 64 hits, a text where one pattern alone matches takes its hits without matching each
    # again in Python's re; hits must be those that attribution hit by hit gives, including where
    # Python's re and RE2 read characters otherwise (Unicode digits and letters, \v, \x1c).
    import pytest

    import promptcache.scan as scan
    from promptcache.detect import SENSITIVE_SCANNER
    from promptcache.pipeline.analyse import STATIC_SCANNER

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    pieces = [
        "2024-05-15 10:00:00", "deadbeefdeadbeef1234", "1111111111111111", "ops@example.com", "x",
        "é", "٣", "\v", "\x1c", " ", "\n", "2024-05-1٣ 10:00", "4111 1111 1111 1111", "日本", "_",
    ]  # fmt: skip
    rng = random.Random(23)
    texts = []
    for _ in range(600):
        base = rng.sample(pieces, rng.randint(1, 3))
        texts.append("".join(rng.choice(base) for _ in range(rng.randint(80, 400))))
    fast = [[s.spans(t) for s in (STATIC_SCANNER, SENSITIVE_SCANNER)] for t in texts]
    monkeypatch.setattr(scan, "_ONE_KIND_AFTER", 10**9)
    slow = [[s.spans(t) for s in (STATIC_SCANNER, SENSITIVE_SCANNER)] for t in texts]
    assert fast == slow
    assert sum(len(h) for pair in fast for h in pair) > 20_000


def test_the_relocation_bound_counts_what_find_volatile_finds() -> None:
    # The count that decides the bound takes a shortcut when every hit is a plain volatile value;
    # it must equal the values find_volatile keeps (clock lines widened, secrets and PII skipped).
    from promptcache.blocks import BlockKind
    from promptcache.pipeline.analyse import STATIC_SCANNER, analyse_text

    rng = random.Random(29)
    pieces = [*PIECES, "ops@example.com", "sk-proj-" + "a1B2" * 12, "Time: 10:00 and 2024-05-15 10:00"]
    for _ in range(400):
        text = "\n".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        found = find_volatile(text, STATIC_SCANNER.spans(text))  # the one scan analyse_text makes
        n = len(found)
        if n == 0:
            continue
        over = analyse_text(text, BlockKind.SYSTEM, "system", True, max_values=n - 1)
        assert over.unrelocated == n and over.spans == [] and len(over.cuts) == 0
        assert over.stable == over.canonical and over.digest == over.canonical_digest
        at = analyse_text(text, BlockKind.SYSTEM, "system", True, max_values=n)
        assert at.unrelocated == 0 and at.spans == found
