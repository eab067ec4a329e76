"""The secrets/PII prefilter never hides a finding.

``sensitive_clue`` lets the sensitive scanner skip texts that cannot hold any of its patterns.
It is a hand-derived necessary condition, so it is checked three ways: generated matches of
every pattern (a pattern added without a clue fails here), scans with and without it on
generated and real texts (the same findings), and each clue on its own.
"""

from __future__ import annotations

import json
import re

import pytest
import re2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from promptcache.detect import (
    SENSITIVE_PATTERNS,
    SENSITIVE_SCANNER,
    VERIFY,
    sensitive_clue,
)
from promptcache.lab.bundled import AGENTS
from promptcache.scan import Scanner

UNFILTERED = Scanner([(k, p) for k, _, p in SENSITIVE_PATTERNS], VERIFY)

# Text that comes close to the patterns: capitals, digits, the clue characters and the ones
# that are not clues (':', '/', '.', '_', '~', '(', quotes), whitespace RE2 knows and some
# it does not, and non-ASCII letters and digits (RE2's \d and classes are ASCII).
ALPHABET = st.sampled_from(
    list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    + list("abcdefghijkyz0123456789")
    + list("@+=-:/._~()\"' \n\t")
    + ["é", "ſ", "\u212a", "٣", "\u2003", "١"]
)


@pytest.mark.parametrize(("kind", "pattern"), [(k, p) for k, _, p in SENSITIVE_PATTERNS])
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_match_of_every_pattern_has_a_clue(kind: str, pattern: str, data: st.DataObject) -> None:
    # re.ASCII: the classes RE2 gives \d, \s, \b; the match is then checked with RE2 itself.
    text = data.draw(st.from_regex(re.compile(pattern, re.ASCII), fullmatch=True))
    assume(re2.search(pattern, text) is not None)
    assert sensitive_clue(text), (kind, text)


@settings(max_examples=600)
@given(st.text(ALPHABET, max_size=80))
def test_the_prefilter_changes_no_scan_of_generated_text(text: str) -> None:
    found = UNFILTERED.scan(text)
    assert SENSITIVE_SCANNER.scan(text) == found
    if found:
        assert sensitive_clue(text), text


def test_the_prefilter_changes_no_scan_of_real_agent_traffic() -> None:
    texts = [p.read_text() for p in sorted(AGENTS.glob("*.md"))]
    for traj in json.loads((AGENTS / "tau_bench_airline_gpt4o_trajectories_sample.json").read_text()):
        for m in traj["traj"]:
            texts.append(json.dumps(m))
            if isinstance(m.get("content"), str):
                texts.append(m["content"])
    skipped = 0
    for text in texts:
        assert SENSITIVE_SCANNER.scan(text) == UNFILTERED.scan(text)
        skipped += not sensitive_clue(text)
    # The point of it: real conversational turns are mostly ruled out without a scan.
    assert skipped > len(texts) // 4, (skipped, len(texts))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ok, go on (turn 12)", False),
        ('{"content":"Please cancel my booking.","role":"user"}', False),
        ("x" * 19, False),
        ("x" * 20, True),  # a run of 20: an AWS key id's length
        ("1 2 3 4 5 6 7 8 9 0 1 2", False),
        ("1 2 3 4 5 6 7 8 9 0 1 2 3", True),  # 13 digits, however spread: a card number
        ("zDE8 9", False),
        ("DE89 3704", True),  # capitals then digits: an IBAN
        ("ABC12", True),
        ("A1B2", False),
        ("an e-mail", True),
        ("é" * 30, False),  # not an ASCII run
    ],
)
def test_each_clue(text: str, expected: bool) -> None:
    assert sensitive_clue(text) is expected


@settings(max_examples=600)
@given(st.text(ALPHABET, max_size=80))
def test_short_and_long_texts_get_the_same_clue(text: str) -> None:
    # Short texts are prefiltered with Python's re, long ones with RE2: padding a text past
    # SHORT_TEXT with a character that is no clue must not change the answer.
    from promptcache.detect import SHORT_TEXT

    padded = text + " " * (SHORT_TEXT + 1 - len(text))
    assert len(padded) > SHORT_TEXT
    assert sensitive_clue(padded) == sensitive_clue(text), text
