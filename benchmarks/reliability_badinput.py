"""Bad-input cases for the reliability report and tests: each must end in a clear error or a counted miss.

A case returns ``{"name", "outcome", "ok", "detail"}``; ``outcome`` is one of
``clear_error`` (an exception of a documented type whose message names the
field), ``counted_miss`` (the call returned the user's value and a counter moved),
``stored_intact`` (a value handled on purpose: stored, and served back equal, of its type),
``crash`` (anything else escaped) or ``data_loss`` (the user's value came back altered).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

Case = dict[str, Any]


def _err(name: str, fn: Callable[[], Any], types: tuple[type[BaseException], ...], field: str) -> Case:
    try:
        fn()
    except types as exc:
        msg = str(exc)
        ok = field.lower() in msg.lower()
        return {
            "name": name,
            "outcome": "clear_error" if ok else "unclear_error",
            "ok": ok,
            "detail": type(exc).__name__ + ("" if ok else f": message does not name {field!r}"),
        }
    except BaseException as exc:
        return {"name": name, "outcome": "crash", "ok": False, "detail": type(exc).__name__}
    return {"name": name, "outcome": "accepted", "ok": False, "detail": "no error raised"}


def _miss(name: str, fn: Callable[[], tuple[Any, Any, int]]) -> Case:
    """``fn`` returns (value returned, value expected, counter delta)."""
    try:
        got, expected, delta = fn()
    except BaseException as exc:
        return {"name": name, "outcome": "crash", "ok": False, "detail": type(exc).__name__}
    if got == "NOT_OVERWRITTEN":
        return {
            "name": name,
            "outcome": "not_overwritten",
            "ok": False,
            "detail": "counted miss, value intact, but the unreadable entry is never overwritten: every "
            "later "
            "call recomputes until its TTL (design: overwrite on the next write)",
        }
    if got != expected:
        return {"name": name, "outcome": "data_loss", "ok": False, "detail": "value altered"}
    if delta <= 0:
        return {"name": name, "outcome": "uncounted", "ok": False, "detail": "no counter moved"}
    return {"name": name, "outcome": "counted_miss", "ok": True, "detail": f"counted {delta}"}


def _nested(depth: int) -> Any:
    v: Any = "leaf"
    for _ in range(depth):
        v = {"a": [v]}
    return v


def run_cases(root: Path) -> list[Case]:
    """Run every case against a fresh SQLite-backed store under ``root``."""
    from benchmarks.reliability_corpus import agent_body
    from promptcache import PromptCache
    from promptcache.artifacts import RetrieverSpec, ToolSpec, open_store
    from promptcache.canonical import CanonicalizationError
    from promptcache.policy import Policy, PolicyError
    from promptcache.tiers.entry import encode_entry
    from promptcache.wire import WireFormatError

    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    pol_file = root / "bad.yaml"

    def load_text(text: str, suffix: str = ".yaml") -> Any:
        p = root / f"p{suffix}"
        p.write_text(text)
        return Policy.load(p)

    cases += [
        _err(
            "policy_ttl_min_gt_default",
            lambda: Policy.load({"entries": {"tool_output": {"ttl": {"min": 10, "default": 5}}}}),
            (PolicyError,),
            "tool_output",
        ),
        _err("policy_unknown_field", lambda: Policy.load({"versoin": "2"}), (PolicyError,), "versoin"),
        _err(
            "policy_secret_allowed",
            lambda: Policy.load({"data_classes": {"secret": {"action": "allow"}}}),
            (PolicyError,),
            "secret",
        ),
        _err(
            "policy_bad_duration",
            lambda: Policy.load({"entries": {"tool_output": {"ttl": {"default": "5 parsecs"}}}}),
            (PolicyError,),
            "default",
        ),
        _err("policy_not_mapping_yaml", lambda: load_text("- a\n- b\n"), (PolicyError,), "mapping"),
        _err("policy_invalid_yaml", lambda: load_text("version: [1\n"), (PolicyError,), "yaml"),
        _err(
            "policy_wrong_type",
            lambda: Policy.load({"allow_public": "sometimes"}),
            (PolicyError,),
            "allow_public",
        ),
        _err(
            "policy_unknown_entry_type",
            lambda: Policy.load({"entries": {"tool_outputs": {}}}),
            (PolicyError,),
            "entries",
        ),
    ]
    del pol_file

    store = open_store(str(root / "store"))
    cache = PromptCache(store=store)
    read = ToolSpec(name="lookup", side_effect="read_only", ttl=3600)

    def tool_counter(name: str) -> int:
        return int(getattr(cache.tools.stats(), name))

    def unkeyable(args: dict[str, Any]) -> Callable[[], tuple[Any, Any, int]]:
        def go() -> tuple[Any, Any, int]:
            before = tool_counter("unkeyable")
            out = cache.tools.call(read, args, lambda **kw: {"ok": 1}, tenant="acme")
            return out.value, {"ok": 1}, tool_counter("unkeyable") - before

        return go

    def unserializable(value: Any, name: str) -> Case:
        def go() -> tuple[Any, Any, int]:
            before = tool_counter("unserializable")
            out = cache.tools.call(read, {"case": name}, lambda case: value, tenant="acme")
            return out.value, value, tool_counter("unserializable") - before

        return _miss(f"tool_output_{name}", go)

    def stored_intact(value: Any, name: str) -> Case:
        # Bytes have a stored form since issue 19 (base64 in the envelope, scanned as text):
        # handled on purpose, they must come back from the cache equal and still bytes.
        case = f"tool_output_{name}"
        try:
            first = cache.tools.call(read, {"case": name}, lambda case: value, tenant="acme")
            again = cache.tools.call(read, {"case": name}, lambda case: None, tenant="acme")
        except BaseException as exc:
            return {"name": case, "outcome": "crash", "ok": False, "detail": type(exc).__name__}
        intact = type(again.value) is type(value) and again.value == value
        ok = first.lookup.stored and again.lookup.hit and intact
        return {
            "name": case,
            "outcome": "stored_intact" if ok else "data_loss",
            "ok": ok,
            "detail": "stored and served back with its type" if ok else "not served back intact",
        }

    cases += [
        _miss("tool_args_object", unkeyable({"obj": object()})),
        _miss("tool_args_set", unkeyable({"ids": {1, 2}})),
        _miss("tool_args_bytes_non_utf8", unkeyable({"raw": b"\xff\xfe"})),
        _miss("tool_args_lone_surrogate", unkeyable({"s": "x\udcff"})),
        _miss("tool_args_nested_1000", unkeyable({"deep": _nested(1000)})),
        stored_intact(b"\xff\xfe\x00", "bytes_non_utf8"),
        unserializable({"s": "bad \udcff"}, "lone_surrogate"),
        unserializable({"deep": _nested(2000)}, "nested_2000"),
        unserializable({"x": {1, 2}}, "set"),
    ]

    # oversized: 24 MiB output must come back intact (stored or not)
    big = {"blob": "x" * (24 * 1024 * 1024)}

    def oversized() -> tuple[Any, Any, int]:
        out = cache.tools.call(read, {"case": "big"}, lambda case: big, tenant="acme")
        again = cache.tools.call(read, {"case": "big"}, lambda case: big, tenant="acme")
        return again.value, big, 1 if out.value == big else 0

    cases.append(_miss("tool_output_oversized_24mib", oversized))

    # corrupted and foreign-version entries in L2: a counted miss, recomputed, then overwritten
    def corrupt_entry(kind: str) -> Callable[[], tuple[Any, Any, int]]:
        def go() -> tuple[Any, Any, int]:
            args = {"case": kind}
            cache.tools.call(read, args, lambda case: {"v": 1}, tenant="acme")
            store.flush(5)
            db = sqlite3.connect(root / "store" / "promptcache.sqlite3")
            rows = db.execute("SELECT key, data FROM pc_entries").fetchall()
            key = next(k for k, d in rows if b'"case"' not in d and k == _key_of(cache, read, args))
            data = dict(rows)[key]
            if kind == "garbage":
                new = b"\x00garbage" + data[5:40]
            elif kind == "truncated":
                new = data[: len(data) // 2]
            elif kind == "foreign_version":
                new = data[:4] + bytes([data[4] + 1]) + data[5:]
            elif kind == "flipped_payload_byte":
                new = data[:-3] + bytes([data[-3] ^ 0x01]) + data[-2:]
            else:  # a valid entry envelope around a payload that is not ours
                from promptcache.tiers.entry import decode_entry

                e = decode_entry(data)
                assert e is not None
                e2 = type(e).new(
                    key,
                    b'{"not":"an envelope"}',
                    tenant=e.tenant,
                    entry_type=e.entry_type,
                    created_at=e.created_at,
                    ttl_s=3600,
                    tags=e.tags,
                )
                new = encode_entry(e2)
            db.execute("UPDATE pc_entries SET data=? WHERE key=?", (new, key))
            db.commit()
            db.close()
            store.l1.clear()
            s0 = store.stats()
            c0 = cache.tools.stats()
            out = cache.tools.call(read, args, lambda case: {"v": 2}, tenant="acme")
            s1 = store.stats()
            c1 = cache.tools.stats()
            delta = (s1.tiers["l2"].corrupt - s0.tiers["l2"].corrupt) + (c1.corrupt - c0.corrupt)
            delta += (s1.tiers["l2"].errors - s0.tiers["l2"].errors) + (
                s1.tiers["l2"].misses - s0.tiers["l2"].misses
            )
            store.flush(5)
            store.l1.clear()
            again = cache.tools.call(read, args, lambda case: {"v": 3}, tenant="acme")
            # recomputed {"v": 2} must have overwritten the bad entry and be served now
            if out.value == {"v": 2} and again.value == {"v": 3}:
                return "NOT_OVERWRITTEN", {"v": 2}, delta
            ok = out.value == {"v": 2} and again.value == {"v": 2}
            return ({"v": 2} if ok else (out.value, again.value)), {"v": 2}, delta

        return go

    for kind in ("garbage", "truncated", "foreign_version", "flipped_payload_byte", "foreign_envelope"):
        cases.append(_miss(f"l2_entry_{kind}", corrupt_entry(kind)))

    # wire formats
    oc = agent_body("openai-chat", "t", "d")
    cases += [
        _err(
            "wire_openai_body_as_anthropic",
            lambda: cache.prepare_request(oc, format="anthropic-messages"),
            (WireFormatError, ValueError),
            "anthropic",
        ),
        _err(
            "wire_anthropic_body_as_gemini",
            lambda: cache.prepare_request(agent_body("anthropic-messages", "t", "d"), format="gemini"),
            (WireFormatError,),
            "contents",
        ),
        _err(
            "wire_openai_chat_body_as_responses",
            lambda: cache.prepare_request(oc, format="openai-responses"),
            (WireFormatError,),
            "input",
        ),
        _err(
            "wire_responses_input_item_not_object",
            lambda: cache.prepare_request(
                {"model": "gpt-4o", "input": [{"role": "user", "content": "hi"}, "stray"]},
                format="openai-responses",
            ),
            (WireFormatError,),
            "input[1]",
        ),
        _err(
            "wire_messages_not_list",
            lambda: cache.prepare_request({"model": "gpt-4o", "messages": "hi"}, format="openai-chat"),
            (WireFormatError, ValueError),
            "messages",
        ),
        _err(
            "wire_unknown_format",
            lambda: cache.prepare_request(oc, format="cohere-chat"),
            (ValueError,),
            "format",
        ),
        _err(
            "wire_no_model",
            lambda: cache.prepare_request({"messages": []}, format="openai-chat"),
            (WireFormatError, ValueError),
            "model",
        ),
        _err(
            "wire_body_not_object",
            lambda: cache.prepare_request([1, 2], format="openai-chat"),  # type: ignore[arg-type]
            (WireFormatError, ValueError),
            "object",
        ),
        _err(
            "wire_message_not_serializable",
            lambda: cache.prepare_request(
                {"model": "gpt-4o", "messages": [{"role": "user", "content": object()}]}, format="openai-chat"
            ),
            (WireFormatError, ValueError),
            "json",
        ),
        _err(
            "wire_nested_5000_content",
            lambda: cache.prepare_request(
                {"model": "gpt-4o", "messages": [{"role": "user", "content": [_nested(5000)]}]},
                format="openai-chat",
            ),
            (WireFormatError, ValueError),
            "openai-chat",
        ),
        _err(
            "wire_lone_surrogate_system",
            lambda: _surrogate(cache),
            (WireFormatError, CanonicalizationError),
            "system",
        ),
    ]

    kb = RetrieverSpec(name="kb", index_version="1")

    def bad_docs() -> tuple[Any, Any, int]:
        before = cache.retrieval.stats().unserializable
        docs = [{"id": "", "text": 5}]
        out = cache.retrieval.retrieve("q", lambda q: docs, tenant="acme", retriever=kb)
        return out.value, docs, cache.retrieval.stats().unserializable - before

    cases.append(_miss("retrieval_docs_wrong_shape", bad_docs))
    cases += _issue19_config_and_input(cache)
    store.close()
    return cases


def _issue19_config_and_input(cache: Any) -> list[Case]:
    """Issue 19, item 8: the configurations and inputs an operator found accepted or crashing."""
    from promptcache.lab.report import chart_bars
    from promptcache.policy import Policy, PolicyError
    from promptcache.wire import WireFormatError

    def ttl(value: Any) -> Any:
        return Policy.load({"entries": {"tool_output": {"ttl": {"max": value}}}})

    def tenant(value: Any) -> Any:
        return cache.prepare_request(
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            format="openai-chat",
            tenant=value,
        )

    def dollar_chart() -> Case:
        try:
            chart_bars({"$x^$": 0.5}, "tenant $x^$", percent=True, ylabel="cached share")
        except BaseException as exc:
            return {
                "name": "report_tenant_with_dollars",
                "outcome": "crash",
                "ok": False,
                "detail": type(exc).__name__,
            }
        return {
            "name": "report_tenant_with_dollars",
            "outcome": "handled",
            "ok": True,
            "detail": "drawn as written",
        }

    wrong_types = [
        ("openai-chat", {"model": "m", "messages": [{"role": 5, "content": "hi"}]}, "role"),
        ("openai-responses", {"model": "m", "input": [{"role": "user", "content": 5}]}, "content"),
        (
            "anthropic-messages",
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]},
            "content",
        ),
        ("bedrock-converse", {"modelId": "m", "messages": [{"role": "user", "content": 5}]}, "content"),
        ("gemini", {"model": "m", "contents": [{"role": "user", "parts": 5}]}, "parts"),
    ]
    return [
        _err("policy_ttl_true", lambda: ttl(True), (PolicyError,), "ttl.max"),
        _err("policy_ttl_beyond_any_store", lambda: ttl(10**19), (PolicyError,), "ttl.max"),
        _err(
            "policy_default_tenant_empty",
            lambda: Policy.load({"default_tenant": ""}),
            (PolicyError,),
            "default_tenant",
        ),
        _err("tenant_as_list", lambda: tenant(["acme"]), (TypeError,), "tenant"),
        _err("tenant_lone_surrogate", lambda: tenant("ac\udc80me"), (ValueError,), "tenant"),
        *(
            _err(
                f"wire_{fmt}_{field}_int",
                lambda b=body, f=fmt: cache.prepare_request(b, format=f, tenant="t"),
                (WireFormatError,),
                field,
            )
            for fmt, body, field in wrong_types
        ),
        dollar_chart(),
    ]


def _surrogate(cache: Any) -> Any:
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "sys \udcff"}, {"role": "user", "content": "u"}],
    }
    return cache.prepare_request(body, format="openai-chat")


def _key_of(cache: Any, spec: Any, args: dict[str, Any]) -> str:
    from promptcache.artifacts._common import contract_for, key_for
    from promptcache.tiers.entry import EntryType

    contract = contract_for(cache.policy, "acme", "tenant", "tool", tool_schema_version=spec.schema_version)
    return key_for(contract, EntryType.TOOL_OUTPUT, {"tool": spec.name, "args": dict(args)}, where="args")
