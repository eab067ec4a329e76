"""SHA-256 for digests and keys: native where ``promptcache._speedups`` was built, else hashlib.

Keys and digests are plain SHA-256 (stable across processes, machines and Python versions);
only the code computing them differs. hashlib goes through OpenSSL, whose per-hash set-up
is most of the cost for the short inputs the warm path hashes (a new turn, a key) and costs
~20 us on a cold CPU cache, which is where an agent's next model call finds it. The native
code (the CPU's SHA extensions) has no such set-up. Without them, or without the extension,
hashlib is used: the portable C code is only worth it for :func:`framed_sha256`'s small inputs.

>>> sha256(b"abc").hexdigest()[:16]
'ba7816bf8f01cfea'
>>> h = sha256(b"a")
>>> h2 = h.copy()
>>> h2.update(b"bc")
>>> h.hexdigest() == sha256(b"a").hexdigest(), h2.hexdigest()[:8]
(True, 'ba7816bf')
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol

__all__ = ["NATIVE_SHA", "HashState", "framed_sha256", "sha256"]


class HashState(Protocol):
    """What the engine uses of a hash object (hashlib's and the native one have it)."""

    def update(self, data: bytes, /) -> None:
        """Hash ``data`` after what came before."""

    def copy(self) -> HashState:
        """An independent copy of this state."""

    def hexdigest(self) -> str:
        """The digest so far, as 64 hex digits (the state can still be extended)."""


try:
    from promptcache._speedups import Sha256 as _NativeSha256
    from promptcache._speedups import framed_sha256 as _framed
    from promptcache._speedups import sha_extensions as _sha_extensions
except ImportError:  # built without a C compiler
    _NativeSha256 = None  # type: ignore[assignment,misc]
    _framed = None  # type: ignore[assignment]
    _sha_extensions = None  # type: ignore[assignment]

#: Whether :func:`sha256` gives native hash objects (the extension, on a CPU with SHA extensions).
NATIVE_SHA: bool = _sha_extensions is not None and _sha_extensions()

#: ``framed_sha256(*parts)``: SHA-256 hex of the parts, each preceded by its length as 8
#: big-endian bytes, or None when the native code does not take them (too large, not all
#: bytes); None itself when the extension was not built. See ``canonical.digest``.
framed_sha256: Callable[..., str | None] | None = _framed

#: ``sha256(data=b"", /)``: a new SHA-256 :class:`HashState`, native when :data:`NATIVE_SHA`.
sha256: Callable[..., HashState] = _NativeSha256 if NATIVE_SHA else hashlib.sha256
