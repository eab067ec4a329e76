"""Secret and PII detectors used by policy.

Secrets and credentials are never cached by promptcache, whatever the policy
says; PII classes shorten or deny TTLs as the policy says. Findings carry the
kind, the data class and the position — never the matched text — so they can
be logged and reported safely.

>>> [f.kind for f in scan_sensitive("key AKIAIOSFODNN7EXAMPLE in a prompt")]
['aws_access_key_id']
>>> luhn_valid("4111 1111 1111 1111")
True
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from operator import itemgetter

import re2
from pydantic import BaseModel, ConfigDict

from promptcache.credentials import CREDENTIAL_PATTERNS, CREDENTIAL_VERIFY
from promptcache.scan import Hit, Scanner

SECRET = "secret"

#: kind -> (data class, RE2/Python-compatible pattern). Order matters: the more
#: specific pattern comes first (an Anthropic key also looks like ``sk-...``). The
#: credential kinds are :data:`promptcache.credentials.CREDENTIAL_PATTERNS`.
SENSITIVE_PATTERNS: list[tuple[str, str, str]] = [
    *((kind, SECRET, pattern) for kind, pattern in CREDENTIAL_PATTERNS),
    ("card_number", SECRET, r"\b\d(?:[ -]?\d){12,18}\b"),
    # Unbounded parts, not RFC 5321's {1,64} and {1,253}: bounded repeats multiply the states of
    # the combined DFA, which then overflows on a long base64 run (1 MB: 0.8 s instead of 10 ms).
    ("email", "pii.email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,24}\b"),
    ("us_ssn", "pii.national_id", r"\b\d{3}-\d{2}-\d{4}\b"),
    (
        "phone",
        "pii.phone",
        r"\+\d{1,3}[ .-]?\(?\d{1,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}\b|\(\d{3}\) ?\d{3}-\d{4}\b",
    ),
    ("iban", "pii.financial", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b"),
]

DATA_CLASS = {kind: cls for kind, cls, _ in SENSITIVE_PATTERNS}


def luhn_valid(number: str) -> bool:
    """True when the digits of ``number`` pass the Luhn checksum (card numbers)."""
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_plausible(text: str, start: int, end: int) -> bool:
    # The decimals of a float (a similarity score 0.337099931231621) are not a
    # card, whatever Luhn says; nor is a run of one repeated digit.
    if start > 0 and text[start - 1] in ".,":
        return False
    if end + 1 < len(text) and text[end] in ".," and text[end + 1].isdigit():
        return False
    number = text[start:end]
    digits = {c for c in number if c.isdigit()}
    return len(digits) > 1 and luhn_valid(number)


VERIFY = {**CREDENTIAL_VERIFY, "card_number": _card_plausible}


class Finding(BaseModel):
    """A detected secret or PII span. It holds no matched text, so it is safe to log."""

    model_config = ConfigDict(frozen=True)

    kind: str
    data_class: str
    start: int
    end: int

    @property
    def is_secret(self) -> bool:
        """Secrets are never cached, whatever the policy says."""
        return self.data_class == SECRET


# A text can match one of SENSITIVE_PATTERNS only if it has one of four clues. Per pattern:
#
# - a character of "@+=-": the PEM header, every ``sk-``/``xox?-`` key, Azure's ``Key=``, the
#   e-mail and URL-password ``@``, the SSN's and the bracketed phone form's ``-``, the ``+`` of
#   the international phone form;
# - a run of 20 characters of [A-Za-z0-9_./~]: the shortest of them is an AWS key id (20); a
#   bearer token, a JWT, a Google, GitHub, Hugging Face or Stripe key, an AWS secret key or a
#   GCP key id either has a character of "+=-" in its run or is such a run of 20 to 40;
# - 13 ASCII digits (RE2's \d is ASCII): a card number;
# - two capitals then two digits: an IBAN's country code and check digits;
# - a word that names a credential (pass, pwd, secret, key, token, credential): an assignment
#   such as ``password: ...`` or ``secret_key = "..."``, a name/value pair, a Kubernetes Secret.
#
# Base64-wrapped credentials are in a run of 24 characters of the base64 alphabet: the second
# clue, or a "+" (the first).
#
# A pattern added to SENSITIVE_PATTERNS must have one of these clues, or a new one here:
# tests/core/test_detect_prefilter.py generates matches of every pattern and
# fails on one without a clue.
_CLUE_PATTERN = r"[@+=-]|[A-Za-z0-9_./~]{20}|[A-Z]{2}[0-9]{2}|(?i:pass|pwd|secret|key|token|credential)"
# RE2 for long texts: with the case-insensitive words, Python's re costs more there than the
# scan it saves. Python's re for short ones (a user turn, a tool result): google-re2's Python
# binding costs more per call than the whole match, and it runs on every new message. The
# pattern has no nested repetition, so re's time stays linear (at most 20 steps a character).
_CLUE = re2.compile(_CLUE_PATTERN)
_SHORT_CLUE = re.compile(_CLUE_PATTERN)
#: Texts up to this many characters are prefiltered with Python's re (see ``_SHORT_CLUE``).
SHORT_TEXT = 2048


def sensitive_clue(text: str, /) -> bool:
    """Whether ``text`` may hold a secret or PII: False rules out every pattern, without a scan.

    >>> sensitive_clue("ok, go on (turn 12)"), sensitive_clue("mail ops@example.com")
    (False, True)
    """
    if len(text) <= SHORT_TEXT:
        clue = _SHORT_CLUE.search(text) is not None
    else:
        try:
            clue = _CLUE.search(text) is not None
        except UnicodeEncodeError:  # a lone surrogate: let the scanner (which passes them) decide
            return True
    return clue or sum(map(text.count, "0123456789")) >= 13


#: The secrets and PII patterns as one scanner (one RE2 pass per text with a clue of them).
SENSITIVE_SCANNER = Scanner(
    [(k, p) for k, _, p in SENSITIVE_PATTERNS],
    VERIFY,
    prefilter=sensitive_clue,
    unwrap={k for k, cls, _ in SENSITIVE_PATTERNS if cls == SECRET},
)


def classes_of(hits: Sequence[Hit] | Sequence[tuple[int, int, str]]) -> tuple[str, ...]:
    """The sorted data classes of the secret/PII ``hits`` (hits of other kinds, such as
    volatile values from a combined scanner, are ignored).

    >>> classes_of(SENSITIVE_SCANNER.scan("mail ops@example.com"))
    ('pii.email',)
    """
    # h[2] is the kind, of a Hit or of a plain (start, end, kind) tuple (Scanner.spans)
    return classes_of_kinds(set(map(itemgetter(2), hits))) if hits else ()


def classes_of_kinds(kinds: Collection[str]) -> tuple[str, ...]:
    """The sorted data classes of the hit ``kinds`` (a set of kinds, made once in C: a large
    text has tens of thousands of hits, mostly of one kind).

    >>> classes_of_kinds({"email", "timestamp"})
    ('pii.email',)
    """
    return tuple(sorted({DATA_CLASS[k] for k in kinds if k in DATA_CLASS}))


def scan_sensitive(text: str) -> list[Finding]:
    """Secrets and PII in ``text`` (one linear RE2 pass, and one over its base64 runs)."""
    return [
        Finding(kind=h.kind, data_class=DATA_CLASS[h.kind], start=h.start, end=h.end)
        for h in SENSITIVE_SCANNER.scan(text)
    ]
