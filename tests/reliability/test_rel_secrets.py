"""Secrets embedded in tool outputs, documents and responses are never written to any tier."""

from __future__ import annotations

import json

import pytest

from benchmarks import reliability_corpus as corpus
from benchmarks.reliability_infra import files_raw, l1_raw, needle_forms, sqlite_raw
from benchmarks.reliability_secrets import FORMS
from promptcache import PromptCache
from promptcache.artifacts import RetrieverSpec, ToolSpec, open_store
from promptcache.detect import SECRET, scan_sensitive
from promptcache.lab.bundled import REAL

from . import _path

SECRETS = [s for s in corpus.secrets_corpus() if s.listed]
RF = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}


def _leaks(tmp_path, secrets, write) -> list[str]:  # type: ignore[no-untyped-def]
    store = open_store(str(tmp_path), blob_threshold=512)
    cache = PromptCache(store=store)
    for i, s in enumerate(secrets):
        write(cache, i, s)
    store.flush(10)
    raw = l1_raw(store) + sqlite_raw(tmp_path / "promptcache.sqlite3") + files_raw(tmp_path / "blobs")
    store.close()
    return [s.kind for s in secrets if any(f in b for b in raw for f in needle_forms(s.needle))]


def _tool_and_docs(cache: PromptCache, i: int, s: corpus.Secret) -> None:
    read = ToolSpec(name="lookup", side_effect="read_only", ttl=3600)
    kb = RetrieverSpec(name="kb", index_version="1", ttl=3600)
    out = {"out": f"config:\n{s.text}\n"}
    assert cache.tools.call(read, {"i": i}, lambda i: out, tenant="acme").value == out
    assert cache.tools.call(read, {"q": s.text}, lambda q: {"ok": i}, tenant="acme").value == {"ok": i}
    docs = [{"id": "d", "text": f"See {s.text}", "metadata": {"k": s.text}}]
    got = cache.retrieval.retrieve(f"q{i}", lambda q: docs, tenant="acme", retriever=kb).value
    assert got[0]["text"] == docs[0]["text"]
    req = {
        "model": "gpt-4o",
        "temperature": 0,
        "messages": [{"role": "user", "content": f"r{i}"}],
        "response_format": RF,
    }
    assert cache.responses.call(req, lambda r: {"a": s.text}, tenant="acme").value == {"a": s.text}


def test_detector_flags_every_listed_family() -> None:
    missed = [s.kind for s in SECRETS if not any(f.data_class == SECRET for f in scan_sensitive(s.text))]
    assert missed == []


def test_secrets_never_written(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert _leaks(tmp_path, SECRETS, _tool_and_docs) == []


def test_redis_url_without_user_is_not_cached(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = next(x for x in corpus.secrets_corpus() if x.kind == "url_password_redis_no_user")
    assert _leaks(tmp_path, [s], _tool_and_docs) == []


def test_secret_argument_in_tag_is_not_written(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tagged = ToolSpec(name="account", side_effect="read_only", ttl=3600, tags=["acct:{key}"])

    def write(cache: PromptCache, i: int, s: corpus.Secret) -> None:
        cache.tools.call(tagged, {"key": s.text}, lambda key: {"ok": i}, tenant="acme")

    assert _leaks(tmp_path, SECRETS[:3], write) == []


def test_false_positive_rate_on_repo_docs() -> None:
    paras = list(corpus.paragraphs(corpus.file_texts([_path.Path(_path.ROOT) / "docs"], (".md",))))
    flagged = [p for p in paras if any(f.data_class == SECRET for f in scan_sensitive(p))]
    assert len(flagged) <= max(1, len(paras) // 100)


# issue 19, item 1: the message scan reads the text the model sees, not its JSON escapes

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzX9aB4c5Dq"
QUOTED = {
    "quoted_aws_config": f'[default]\naws_secret_access_key = "{AWS_SECRET}"\n',
    "aws_credentials_json": json.dumps(
        {"Credentials": {"AccessKeyId": "ASIAQ3EXAMPLEZ7K2P4M", "SecretAccessKey": AWS_SECRET}}, indent=2
    ),
    "gcp_credentials_json": json.dumps(
        {"type": "service_account", "private_key_id": "0" * 8 + "3f9a1c2b7d" * 3 + "ab", "client_id": "1"}
    ),
    "terraform_secret_key": f'provider "aws" {{\n  secret_key = "{AWS_SECRET[::-1]}"\n}}',
    "split_name_value": json.dumps({"env": [{"name": "DB_PASSWORD", "value": "Zq8#mT2vLp9!"}]}),
}


@pytest.mark.parametrize("fmt", corpus.FORMATS)
@pytest.mark.parametrize("case", list(QUOTED))
def test_quoted_secret_in_a_message_is_found_and_no_breakpoint_follows(fmt: str, case: str) -> None:
    body = corpus.agent_body(fmt, QUOTED[case], "Baggage policy: one free bag.")
    p = PromptCache().prepare_request(body, format=fmt, tenant="acme")
    assert any(SECRET in classes for classes in p.plan.data_classes.values()), (fmt, case)
    # the tool result is history: nothing at or after it may carry a cache marker
    after = json.dumps(p.body.get("messages", p.body.get("input", p.body.get("contents", []))))
    assert "cache_control" not in after and "cachePoint" not in after
    assert not [h for h in p.plan.hints if "messages" in h.where or "contents" in h.where]


# issue 19, item 1: every kind, in each form promptcache scans, and the false-positive target


@pytest.mark.parametrize("form", list(FORMS))
def test_every_generated_kind_is_found_in_every_scanned_form(form: str) -> None:
    found = FORMS[form]
    missed = sorted({s.kind for s in corpus.secrets_corpus() if not found(s.text)})
    assert missed == []


def test_false_positives_stay_under_a_tenth_of_a_percent_of_documents() -> None:
    texts = [
        *corpus.file_texts([_path.Path(_path.ROOT) / "docs", _path.Path(_path.ROOT) / "README.md"], (".md",)),
        *corpus.file_texts([REAL]),
        *corpus.stdlib_docstrings(300_000),
    ]
    paras = list(corpus.paragraphs(iter(texts)))
    flagged = [p for p in paras if any(f.data_class == SECRET for f in scan_sensitive(p))]
    assert len(paras) > 2000 and len(flagged) <= len(paras) // 1000
