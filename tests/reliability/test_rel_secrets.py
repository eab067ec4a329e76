"""Secrets embedded in tool outputs, documents and responses are never written to any tier."""

from __future__ import annotations

from benchmarks import reliability_corpus as corpus
from benchmarks.reliability_infra import files_raw, l1_raw, needle_forms, sqlite_raw
from promptcache import PromptCache
from promptcache.artifacts import RetrieverSpec, ToolSpec, open_store
from promptcache.detect import SECRET, scan_sensitive

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
