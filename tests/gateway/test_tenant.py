"""Issue 24, "Tenant": two API keys never share anything; the key is forwarded, never logged or stored."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import openai
import pytest
from conftest import clock_system, start_gateway

from promptcache import PromptCache
from promptcache.gateway.tenant import key_tenant
from promptcache.lab.emulate import Emulator
from promptcache.pseudonym import tenant_label

KEYS = ("sk-tenant-alpha-0123456789", "sk-tenant-beta-9876543210")


def _stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_two_keys_never_share_and_no_key_is_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = tmp_path / "store"
    with Emulator() as emu:
        gw = start_gateway(emu.base_url, cache=PromptCache(store=str(store)))
        try:
            for i in range(3):
                for key in KEYS:
                    o = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
                    o.chat.completions.create(
                        model="gpt-4o",
                        messages=[
                            {"role": "system", "content": clock_system(i)},
                            {"role": "user", "content": "hi"},
                        ],
                    )
            cache = gw.app.state.gateway.cache
            # Each key is its own tenant, with its own figures.
            for key in KEYS:
                assert cache.stats().for_tenant(key_tenant(key)).calls == 3
            # The provider-side routing keys (OpenAI prompt_cache_key) differ per key: the same
            # prompt from two callers is never routed as one.
            routing = [body.get("prompt_cache_key") for body in emu.requests]
            assert None not in routing
            assert not set(routing[0::2]) & set(routing[1::2])
            # The learned layouts are written per tenant (in the background): wait for both.
            labels = [tenant_label(key_tenant(k)).encode() for k in KEYS]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                cache.store.flush()
                blobs = [b for b in _entries_in(store) if any(label in b for label in labels)]
                if all(any(label in b for b in blobs) for label in labels):
                    break
                time.sleep(0.1)
            blobs = [b for b in _entries_in(store) if any(label in b for label in labels)]
            assert all(any(label in b for b in blobs) for label in labels)
            assert not [b for b in blobs if all(label in b for label in labels)]  # no entry holds both
        finally:
            gw.stop()
    # The key itself is nowhere: not in the store's files, not in any log record.
    for key in KEYS:
        secret = key.encode()
        assert [p for p in _stored_files(tmp_path) if secret in p.read_bytes()] == []
        assert [r for r in caplog.records if key in r.getMessage()] == []
    assert any(r.name == "promptcache.gateway" for r in caplog.records)  # the gateway did log


def _entries_in(store: Path) -> list[bytes]:
    out: list[bytes] = []
    for db_file in store.rglob("*.sqlite3"):
        with sqlite3.connect(db_file) as db:
            out += [bytes(row[0]) for row in db.execute("SELECT data FROM pc_entries")]
    return out


def test_the_header_names_the_tenant_and_a_key_alone_is_hashed() -> None:
    cache = PromptCache(record_stats=False)
    from promptcache.gateway.tenant import TenantError, resolve_request_tenant

    assert resolve_request_tenant(cache, {"x-promptcache-tenant": " acme "}) == "acme"
    assert resolve_request_tenant(cache, {"authorization": "Bearer sk-1"}) == key_tenant("sk-1")
    assert resolve_request_tenant(cache, {"x-api-key": "sk-1"}) == key_tenant("sk-1")
    assert resolve_request_tenant(cache, {"api-key": "sk-2"}) == key_tenant("sk-2") != key_tenant("sk-1")
    assert resolve_request_tenant(cache, {}) == cache.policy.default_tenant
    strict = PromptCache({"require_tenant": True}, record_stats=False)
    with pytest.raises(TenantError, match=r"X-PromptCache-Tenant: this gateway's policy requires a tenant"):
        resolve_request_tenant(strict, {})
    with pytest.raises(TenantError, match=r"X-PromptCache-Tenant: .* unpaired surrogate"):
        resolve_request_tenant(cache, {"x-promptcache-tenant": "a\ud800"})
