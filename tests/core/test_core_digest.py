"""Block digests: ``canonical.digest`` is SHA-256 over length-prefixed parts, whichever code runs.

Keys must be stable across processes, machines and Python versions, so the native digest
(``promptcache._speedups.framed_sha256``: the CPU's SHA extensions, else portable C for small
inputs) must give hashlib's answer byte for byte, at every padding boundary, and hand
anything it does not take back to hashlib.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptcache import canonical, fingerprint, hashing


def reference(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()


# Every length around the 64-byte block and the 56-byte padding edge, with one or two parts.
EDGES = [n for base in (0, 64, 128, 192, 256, 8192) for n in range(max(base - 20, 0), base + 20)]


@given(st.lists(st.binary(max_size=3000), max_size=4))
@settings(max_examples=400, deadline=None)
def test_digest_is_the_framed_sha256(parts: list[bytes]) -> None:
    assert canonical.digest(*parts) == reference(*parts)


@pytest.mark.parametrize("native", [True, False], ids=["native", "hashlib-only"])
@pytest.mark.parametrize("n", EDGES)
def test_digest_at_block_and_padding_edges(n: int, native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not native:  # an install built without a C compiler
        monkeypatch.setattr(canonical, "_framed_sha256", None)
    data = bytes(range(256)) * (n // 256 + 1)
    assert canonical.digest(data[:n]) == reference(data[:n])
    assert canonical.digest(b"history", data[:n]) == reference(b"history", data[:n])


@pytest.mark.skipif(not fingerprint.NATIVE, reason="promptcache._speedups not built")
def test_native_digest_takes_small_bytes_and_hands_the_rest_back() -> None:
    from promptcache import _speedups

    limit = 8192 if _speedups.sha_extensions() else 256
    small = b"x" * (limit - 8)  # one part: 8 bytes of length, then the data
    assert _speedups.framed_sha256(small) == reference(small)
    assert _speedups.framed_sha256(small + b"x") is None
    assert _speedups.framed_sha256() == reference()
    for not_bytes in ("text", bytearray(b"x"), memoryview(b"x"), None):
        assert _speedups.framed_sha256(b"ok", not_bytes) is None
    # What the native code hands back is still digested, by hashlib.
    big = os.urandom(limit * 2)
    assert canonical.digest(b"retrieval", big) == reference(b"retrieval", big)


_CHECK = """
import hashlib, os, random, sys
from promptcache import _speedups as S
want = sys.argv[1] == "1"
assert S.sha_extensions() == want, (S.sha_extensions(), want)
rng = random.Random(3)
for n in [0, 1, 55, 56, 63, 64, 65, 127, 128, 1000, 20000]:
    d = os.urandom(n)
    a, b = S.Sha256(d), hashlib.sha256(d)
    c, e = a.copy(), b.copy()
    c.update(d[: n // 2])
    e.update(d[: n // 2])
    assert (a.hexdigest(), c.hexdigest()) == (b.hexdigest(), e.hexdigest()), n
for n in [*range(0, 300), 1000, 4000, 8000]:
    parts = [os.urandom(rng.randrange(0, n + 1)), os.urandom(n)][: rng.randrange(1, 3)]
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big") + p)
    got = S.framed_sha256(*parts)
    if got is not None:
        assert got == h.hexdigest(), (n, len(parts))
    else:
        assert sum(8 + len(p) for p in parts) > (8192 if want else 256), n
print("ok")
"""


def _cpu_has_sha_extensions() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return " sha_ni " in f.read().replace("\n", " ")
    except OSError:
        return False


@pytest.mark.skipif(not fingerprint.NATIVE, reason="promptcache._speedups not built")
@pytest.mark.parametrize("sha_ni", [True, False], ids=["sha-extensions", "portable"])
def test_both_native_code_paths_give_hashlibs_digest(sha_ni: bool) -> None:
    # The code path is chosen once, at import: each runs in its own interpreter.
    if sha_ni and not _cpu_has_sha_extensions():
        pytest.skip("this CPU has no SHA extensions")
    env = {**os.environ, "PROMPTCACHE_NO_SHA_NI": "0" if sha_ni else "1"}
    run = subprocess.run(
        [sys.executable, "-c", _CHECK, "1" if sha_ni else "0"], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == "ok"


@given(st.binary(max_size=200), st.lists(st.binary(max_size=300), max_size=6), st.integers(0, 6))
@settings(max_examples=300, deadline=None)
def test_hash_states_extend_and_copy_as_hashlibs(first: bytes, more: list[bytes], fork: int) -> None:
    # The engine keeps a prefix's hash state and extends copies of it on every call.
    ours, ref = hashing.sha256(first), hashlib.sha256(first)
    for i, chunk in enumerate(more):
        if i == fork:
            ours_copy, ref_copy = ours.copy(), ref.copy()
            ours_copy.update(b"fork")
            ref_copy.update(b"fork")
            assert ours_copy.hexdigest() == ref_copy.hexdigest()
        ours.update(chunk)
        ref.update(chunk)
        assert ours.hexdigest() == ref.hexdigest()  # and it can still be extended after
    assert ours.hexdigest() == ref.hexdigest()


@pytest.mark.skipif(not fingerprint.NATIVE, reason="promptcache._speedups not built")
def test_native_hash_state_refuses_what_hashlib_would_not_take_silently() -> None:
    from promptcache import _speedups

    with pytest.raises(TypeError, match="bytes, not str"):
        _speedups.Sha256("text")  # type: ignore[arg-type]
    h = _speedups.Sha256()
    with pytest.raises(TypeError, match="bytes, not str"):
        h.update("text")  # type: ignore[arg-type]
    assert h.hexdigest() == hashlib.sha256().hexdigest()  # a refused update changed nothing
