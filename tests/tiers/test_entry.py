"""The entry envelope: round trip, and every unreadable form decodes to a miss."""

from __future__ import annotations

import struct

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptcache.tiers.entry import (
    MAGIC,
    SCHEMA_VERSION,
    Entry,
    decode_entry,
    encode_entry,
)


def _entry(**kw: object) -> Entry:
    base: dict[str, object] = {
        "tenant": "acme",
        "entry_type": "tool_output",
        "created_at": 100.0,
        "ttl_s": 60.0,
        "tags": {"tool:search:v3": 2, "index:docs@42": 0},
    }
    base.update(kw)
    return Entry.new("a" * 64, b"\x00payload\xff" * 10, **base)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field() -> None:
    e = _entry()
    data = encode_entry(e)
    assert data[:3] == MAGIC and data[3] == SCHEMA_VERSION
    assert decode_entry(data) == e
    assert e.verify()
    assert e.expires_at == 160.0


def test_payload_is_not_in_repr() -> None:
    assert "payload" not in repr(_entry()).split("tags")[1].split("blob")[0]
    assert "\\x00payload" not in repr(_entry())


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d[: len(d) - 1],  # truncated payload
        lambda d: d[:10],  # truncated header
        lambda d: d + b"x",  # trailing garbage
        lambda d: b"XYZ" + d[3:],  # foreign magic
        lambda d: d[:3] + bytes([SCHEMA_VERSION + 1]) + d[4:],  # other schema version
        lambda d: d[:3] + bytes([0]) + d[4:],  # old schema version
        lambda d: d[:4] + struct.pack(">I", 1 << 30) + d[8:],  # absurd header length
        lambda d: b"",
        lambda d: orjson.dumps({"key": "x"}),  # someone else's JSON
    ],
)
def test_unreadable_forms_decode_to_none(mangle: object) -> None:
    data = encode_entry(_entry())
    assert decode_entry(mangle(data)) is None  # type: ignore[operator]


def test_meta_that_fails_validation_is_a_miss() -> None:
    data = encode_entry(_entry())
    head_len = struct.unpack(">I", data[4:8])[0]
    meta = orjson.loads(data[8 : 8 + head_len])
    meta["tags"] = {"bad\ntag": 1}
    head = orjson.dumps(meta)
    bad = data[:4] + struct.pack(">I", len(head)) + head + data[8 + head_len :]
    assert decode_entry(bad) is None


def test_tags_refuse_newline_and_negative_generation() -> None:
    with pytest.raises(ValueError):
        _entry(tags={"a\nb": 0})
    with pytest.raises(ValueError):
        _entry(tags={"a": -1})


def test_stale_window_and_expiry() -> None:
    e = _entry().model_copy(update={"stale_until": 200.0})
    assert e.fresh_at(159.9) and not e.fresh_at(160.0)
    assert not e.dead_at(199.0) and e.dead_at(200.0)
    assert e.retain_until() == 200.0


@given(st.binary(max_size=300))
def test_decoding_arbitrary_bytes_never_raises(data: bytes) -> None:
    decode_entry(data)
    decode_entry(MAGIC + bytes([SCHEMA_VERSION]) + data)


@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=2000))
def test_any_truncation_is_a_miss(payload: bytes, cut: int) -> None:
    data = encode_entry(Entry.new("k" * 64, payload, tenant="t", entry_type="x", created_at=1.0))
    if cut < len(data):
        assert decode_entry(data[:cut]) is None
    else:
        assert decode_entry(data) is not None
