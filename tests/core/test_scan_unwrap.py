"""The scanner's base64 pass: a credential inside an encoded run is reported over that run only."""

from __future__ import annotations

import base64

from promptcache.detect import DATA_CLASS, SECRET, SENSITIVE_SCANNER, scan_sensitive
from promptcache.scan import visible_text

KEY = "sk-proj-" + "Hb7Kq2Lm9Np4Rs6Tv8Wx1Yz3Ab5Cd7Ef9Gh2Jk4Lm6Np8Q"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_only_the_run_holding_the_secret_is_reported_and_offsets_survive_non_ascii() -> None:
    runs = [_b64(f"an ordinary line of text number {i}") for i in range(5)]
    runs[3] = _b64(f"OPENAI_API_KEY={KEY}")
    text = "café ünïcode → " + " ".join(runs) + " end"
    hits = [h for h in SENSITIVE_SCANNER.scan(text) if DATA_CLASS.get(h.kind) == SECRET]
    assert len(hits) == 1 and text[hits[0].start : hits[0].end] == runs[3]


def test_wrapped_and_nested_base64_are_unwrapped() -> None:
    creds = f"[default]\naws_access_key_id = AKIAQ7RT2XKL9MZP4WN3\naws_secret_access_key = {'w' * 40}\n"
    wrapped = "\n  ".join(_b64(creds)[i : i + 76] for i in range(0, len(_b64(creds)), 76))
    assert any(f.data_class == SECRET for f in scan_sensitive(f"credentials: |\n  {wrapped}\n"))
    twice = _b64(_b64(f"token: {KEY}"))  # a base64 file inside a base64 field (a Secret's data)
    assert any(f.data_class == SECRET for f in scan_sensitive(twice))


def test_binary_and_plain_text_runs_are_not_secrets() -> None:
    binary = base64.b64encode(bytes(range(256)) * 40).decode()
    prose = _b64("The quick brown fox jumps over the lazy dog, again and again.")
    assert not any(f.data_class == SECRET for f in scan_sensitive(f"{binary}\n{prose}"))


def test_visible_text_keeps_quotes_and_newlines() -> None:
    msg = {"content": [{"type": "text", "text": 'secret_key = "Zq8#mT2vLp9!Xw4"\n-----BEGIN'}]}
    assert '"Zq8#mT2vLp9!Xw4"\n-----BEGIN' in visible_text(msg)
