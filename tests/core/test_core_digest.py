"""Block digests: ``canonical.digest`` is SHA-256 over length-prefixed parts.

Keys must be stable across processes, machines and Python versions, and two different splits of
the same bytes into parts must never give the same digest (the length prefix is what ensures it).
"""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from promptcache import canonical


def reference(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()


@given(st.lists(st.binary(max_size=3000), max_size=4))
@settings(max_examples=200, deadline=None)
def test_digest_is_the_framed_sha256(parts: list[bytes]) -> None:
    assert canonical.digest(*parts) == reference(*parts)


def test_digest_frames_its_parts() -> None:
    assert canonical.digest(b"ab", b"c") != canonical.digest(b"a", b"bc")
    assert canonical.digest(b"user", b"hello")[:16] == "bb645f9105b80150"
