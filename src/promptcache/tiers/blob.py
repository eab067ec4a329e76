"""L3: large payloads stored once, by content hash, outside L2.

L2 keeps only the entry's metadata and a pointer (the SHA-256 of the stored
bytes); the bytes live here. :class:`FileBlobStore` writes into a directory
(temp file in the same directory, fsync, ``os.replace``: a reader sees a whole
blob or none). :class:`FsspecBlobStore` does the same over any fsspec URL
(``s3://``, ``gs://``, ``memory://`` ...) when the optional ``fsspec`` package
is installed. Reads re-hash the bytes, so a damaged blob is a counted miss.
Blobs are immutable and shared by every entry with the same bytes; they are
reclaimed by :meth:`FileBlobStore.prune` (age based), never on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from promptcache.tiers.base import StatsCounter, TierError, TierStats, location_unusable

__all__ = ["BlobStore", "FileBlobStore", "FsspecBlobStore", "open_blob_store"]

log = logging.getLogger("promptcache.tiers")

#: The errors that say the directory itself cannot hold blobs (as opposed to one failed write).
_LOCATION_ERRNOS = frozenset(
    {errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.ENOENT}
)


def _is_hash(h: str) -> bool:
    return len(h) == 64 and all(c in "0123456789abcdef" for c in h)


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed bytes."""

    name: str

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its SHA-256 hex."""
        ...

    def get_blob(self, digest: str) -> bytes | None:
        """The bytes whose SHA-256 is ``digest``, or ``None`` if absent or damaged."""
        ...

    def delete_blob(self, digest: str) -> None:
        """Remove a blob if present."""
        ...

    def stats(self) -> TierStats:
        """Counters."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


class FileBlobStore:
    """Blobs as files ``root/ab/cd/<sha256>`` in a local directory."""

    name = "blob"

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        """Use (creating) directory ``root``; ``fsync`` makes each write durable before rename.

        A ``root`` that cannot be created (a file in the way, a read-only mount) is not an error
        here: each write then raises :class:`~promptcache.tiers.base.LocationUnusable`, which the
        breaker above turns into a skipped tier.
        """
        self.root = Path(root)
        with contextlib.suppress(OSError):
            self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._stats = StatsCounter()

    def _path(self, digest: str) -> Path:
        if not _is_hash(digest):
            raise ValueError("not a sha256 hex digest")
        return self.root / digest[:2] / digest[2:4] / digest

    def put_blob(self, data: bytes) -> str:
        """Write ``data`` atomically unless a blob with the same hash exists."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            return digest
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    if self.fsync:
                        fh.flush()
                        os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            self._stats.add("errors")
            if exc.errno in _LOCATION_ERRNOS:
                raise location_unusable(self.root, exc) from exc
            raise TierError(f"blob write failed: {type(exc).__name__}") from exc
        self._stats.add("bytes_written", len(data))
        return digest

    def get_blob(self, digest: str) -> bytes | None:
        """Read and verify a blob; a missing or damaged one is a counted miss."""
        try:
            data = self._path(digest).read_bytes()
        except FileNotFoundError:
            self._stats.add("misses")
            return None
        except ValueError:
            self._stats.add("corrupt")
            return None
        except OSError as exc:
            self._stats.add("errors")
            raise TierError(f"blob read failed: {type(exc).__name__}") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            self._stats.add("corrupt")
            log.warning("blob %s failed its hash check (%d bytes)", digest[:12], len(data))
            return None
        self._stats.add("hits")
        self._stats.add("bytes_read", len(data))
        return data

    def delete_blob(self, digest: str) -> None:
        """Remove a blob if present."""
        self._path(digest).unlink(missing_ok=True)

    def prune(self, max_age_s: float) -> int:
        """Delete blobs not modified for ``max_age_s`` seconds; returns how many."""
        cutoff = time.time() - max_age_s
        n = 0
        for p in self.root.glob("*/*/*"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    n += 1
            except OSError:
                continue
        return n

    def stats(self) -> TierStats:
        """Counters."""
        return self._stats.snapshot()

    def close(self) -> None:
        """Nothing to release."""

    async def aput_blob(self, data: bytes) -> str:
        """See :meth:`put_blob` (runs on the default executor)."""
        return await asyncio.to_thread(self.put_blob, data)

    async def aget_blob(self, digest: str) -> bytes | None:
        """See :meth:`get_blob` (runs on the default executor)."""
        return await asyncio.to_thread(self.get_blob, digest)


class FsspecBlobStore:
    """Blobs under any fsspec URL (optional dependency ``fsspec``)."""

    name = "blob"

    def __init__(self, url: str, **storage_options: Any) -> None:
        """Open ``url`` with fsspec; raises ``TierError`` if fsspec is not installed."""
        try:
            import fsspec
        except ImportError as exc:
            raise TierError("fsspec URLs need the optional 'fsspec' package") from exc
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
        self._fs: Any = fs
        self.root = str(root).rstrip("/")
        self._stats = StatsCounter()

    def _path(self, digest: str) -> str:
        if not _is_hash(digest):
            raise ValueError("not a sha256 hex digest")
        return f"{self.root}/{digest[:2]}/{digest[2:4]}/{digest}"

    def put_blob(self, data: bytes) -> str:
        """Write to a temporary name, then move into place (object stores: one PUT)."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        try:
            if self._fs.exists(path):
                return digest
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self._fs.pipe_file(tmp, data)
            self._fs.mv(tmp, path)
        except Exception as exc:
            self._stats.add("errors")
            raise TierError(f"blob write failed: {type(exc).__name__}") from exc
        self._stats.add("bytes_written", len(data))
        return digest

    def get_blob(self, digest: str) -> bytes | None:
        """Read and verify a blob; a missing or damaged one is a counted miss."""
        try:
            data = bytes(self._fs.cat_file(self._path(digest)))
        except FileNotFoundError:
            self._stats.add("misses")
            return None
        except ValueError:
            self._stats.add("corrupt")
            return None
        except Exception as exc:
            self._stats.add("errors")
            raise TierError(f"blob read failed: {type(exc).__name__}") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            self._stats.add("corrupt")
            return None
        self._stats.add("hits")
        self._stats.add("bytes_read", len(data))
        return data

    def delete_blob(self, digest: str) -> None:
        """Remove a blob if present."""
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(self._path(digest))

    def stats(self) -> TierStats:
        """Counters."""
        return self._stats.snapshot()

    def close(self) -> None:
        """Nothing to release."""


def open_blob_store(location: str | os.PathLike[str]) -> FileBlobStore | FsspecBlobStore:
    """A blob store for a directory path, ``file://`` URL or (with fsspec) any other URL."""
    text = os.fspath(location)
    if "://" not in text:
        return FileBlobStore(text)
    if text.startswith("file://"):
        return FileBlobStore(text[len("file://") :])
    return FsspecBlobStore(text)
