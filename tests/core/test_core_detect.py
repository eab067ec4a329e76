"""Secret and PII detection: realistic secrets are found, real agent traffic raises no false secret."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptcache.detect import SECRET, luhn_valid, scan_sensitive
from promptcache.lab.bundled import AGENTS

# Shaped like the real thing; none of them is a live credential.
SECRETS = {
    "anthropic_api_key": "sk-ant-api03-" + "Ab3dEf5hIj7lMn9pQr1tUv3xYz" * 3,
    "openai_api_key": "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0" * 2,
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "google_api_key": "AIzaSyD-" + "9tSrke72PouQMnMX-a7eZSW0jkFMBWY"[:31],
    "github_token": "ghp_" + "1a2B3c4D5e6F7g8H9i0J" * 2,
    "slack_token": "xoxb-123456789012-abcdefghijkl",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "pem_private_key": "-----BEGIN RSA PRIVATE KEY-----",
    "url_password": "postgres://app:s3cr3t-pw@db.internal:5432/prod",
    "card_number": "4111 1111 1111 1111",
    "huggingface_token": "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345",
    "azure_storage_key": "AccountKey=" + "q83vEXAMPLEkeyq83vEXAMPLEkeyq83vEXAMPLEkey0123456789==",
    "bearer_token": "Authorization: Bearer " + "eyJraWQiOiJ0ZXN0In0" + "AbCdEf0123456789",
}


@pytest.mark.parametrize(("kind", "secret"), sorted(SECRETS.items()))
def test_realistic_secret_is_found_in_prose_and_json(kind: str, secret: str) -> None:
    for text in (f"Please use {secret} for the call.", json.dumps({"config": {"value": secret}})):
        found = scan_sensitive(text)
        assert any(f.kind == kind and f.data_class == SECRET for f in found), (kind, text, found)


def test_numbers_that_are_not_cards() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    for text in (
        "similarity 0.337099931231621",  # decimals of a float, even when Luhn passes
        "0000 0000 0000 0000",  # one repeated digit
        "order 4111111111111112",  # Luhn fails
        "ratio 12.4111111111111111",
    ):
        assert not [f for f in scan_sensitive(text) if f.kind == "card_number"], text


def _real_texts() -> list[str]:
    texts = [p.read_text() for p in sorted(AGENTS.glob("*.md"))]
    texts += [p.read_text() for p in sorted(AGENTS.glob("*.json"))]
    for traj in json.loads((AGENTS / "tau_bench_airline_gpt4o_trajectories_sample.json").read_text()):
        texts += [json.dumps(m) for m in traj["traj"]]
    return texts


def test_no_false_secret_in_real_agent_traffic() -> None:
    texts = _real_texts()
    assert len(texts) > 150
    secrets = [(f.kind, t[f.start : f.end]) for t in texts for f in scan_sensitive(t) if f.is_secret]
    assert secrets == []
    # The tau-bench user records hold real-looking emails: PII, not secrets.
    emails = sum(1 for t in texts for f in scan_sensitive(t) if f.kind == "email")
    assert emails > 0


_PIECES = [
    "ops@example.com",
    "AKIAIOSFODNN7EXAMPLE",
    "2024-05-01T10:00:00Z",
    "request_id: abc123def456",
    "4111 1111 1111 1111",
    "postgres://u:hunter2@db",
    "plain words",
    " ",
    "\n",
    "{",
    "}",
    '"',
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*_PIECES, "é", "日本", "\U0001f600"]), max_size=12).map("".join))
def test_the_direct_re2_call_finds_what_search_finds(text: str) -> None:
    # Scanner calls the compiled RE2 object's Match directly when the binding has it;
    # the public search() loop it replaces must give the same hits (non-ASCII offsets too).
    import copy

    from promptcache.pipeline.analyse import STATIC_SCANNER as _STATIC_SCANNER

    assert _STATIC_SCANNER._raw_match is not None, "this google-re2 lacks _regexp.Match"
    slow = copy.copy(_STATIC_SCANNER)
    slow._raw_match = None
    assert _STATIC_SCANNER.scan(text) == slow.scan(text)
