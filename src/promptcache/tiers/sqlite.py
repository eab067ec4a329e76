"""L2 embedded default: one SQLite file in WAL mode, shared by the processes of one machine.

Location: ``$PROMPTCACHE_CACHE_DIR/promptcache.sqlite3`` if that variable is set,
else the platform's user cache directory: ``$XDG_CACHE_HOME/promptcache`` or
``~/.cache/promptcache`` on Linux, ``~/Library/Caches/promptcache`` on macOS,
``%LOCALAPPDATA%\\promptcache\\Cache`` on Windows (see :func:`default_cache_dir`).

Concurrency: every thread gets its own connection; WAL lets readers run
while one writer writes; every write is one short ``BEGIN IMMEDIATE``
transaction; a busy timeout (default 2 s) makes writers queue instead of
failing. Reads never take the write lock.

Tags arrive here as stored names (digests, see :mod:`promptcache.tagnames`); the file keeps
the random key they are computed with (``pc_meta``). :meth:`SQLiteStore.purge_expired` also
removes tag index rows left without their entry, and the generation of a tag no entry uses
once it has not moved for ``tag_retention_s`` (a value computed before that invalidation and
written after it would otherwise outlive it: the retention bounds how late a write may land).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from promptcache.invalidation import Generations, new_epoch
from promptcache.tiers.base import (
    DEFAULT_TAG_RETENTION_S,
    StatsCounter,
    TierError,
    TierStats,
    location_unusable,
    tags_current,
)
from promptcache.tiers.entry import Entry, decode_entry, encode_entry, key_digest

__all__ = ["SQLiteStore", "default_cache_dir"]

log = logging.getLogger("promptcache.tiers")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pc_entries (
    key TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    retain_until REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pc_entries_retain ON pc_entries(retain_until)
    WHERE retain_until IS NOT NULL;
CREATE TABLE IF NOT EXISTS pc_entry_tags (
    tag TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (tag, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pc_entry_tags_key ON pc_entry_tags(key);
CREATE TABLE IF NOT EXISTS pc_tag_gens (
    tag TEXT PRIMARY KEY,
    gen INTEGER NOT NULL,
    bumped_at REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pc_meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
"""

# The store epoch's row in pc_meta (text, beside the tag key), and the name it is returned under
# with the generations (a tag never holds a newline, so it cannot collide with one).
_EPOCH = "epoch"
_EPOCH_ROW = "\nepoch"


def default_cache_dir() -> Path:
    """The directory promptcache keeps its embedded cache in (created on first use)."""
    env = os.environ.get("PROMPTCACHE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "promptcache"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "promptcache" / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home / ".cache") / "promptcache"


#: How often a connection checks that its file is still the cache file.
_REOPEN_CHECK_S = 1.0


def _gens_columns(db: sqlite3.Connection) -> set[str]:
    return {str(r[1]) for r in db.execute("PRAGMA table_info(pc_tag_gens)").fetchall()}


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a file made by an earlier version up to this schema; give a new file its tag key.

    An earlier version stored tags in clear: its tagged entries, tag rows and generations are
    dropped (an invalidation, which now names a digest, would not reach those entries, and
    the clear names are what must not be kept). It is a cache: they are computed again.
    """
    if "bumped_at" not in _gens_columns(db):
        db.execute("BEGIN IMMEDIATE")
        try:
            if "bumped_at" not in _gens_columns(db):  # not done by another process meanwhile
                db.execute("ALTER TABLE pc_tag_gens ADD COLUMN bumped_at REAL")
                db.execute("DELETE FROM pc_entries WHERE key IN (SELECT key FROM pc_entry_tags)")
                db.execute("DELETE FROM pc_entry_tags")
                db.execute("DELETE FROM pc_tag_gens")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    db.execute("INSERT OR IGNORE INTO pc_meta(name, value) VALUES ('tag_key', ?)", (os.urandom(32),))


def _is_corruption(exc: sqlite3.Error) -> bool:
    msg = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in msg or "not a database" in msg or "disk image" in msg
    )


def _is_location_fault(exc: sqlite3.Error) -> bool:
    """SQLite's words for a directory or file it cannot create, open or write (read-only, /proc)."""
    msg = str(exc).lower()
    return "unable to open" in msg or "readonly" in msg or "read-only" in msg


class SQLiteStore:
    """The embedded L2: entries, a tag index and tag generations in one SQLite file."""

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        purge_every: int = 1000,
        tag_retention_s: float = DEFAULT_TAG_RETENTION_S,
    ) -> None:
        """Open (creating if needed) the cache file at ``path`` (default: see module doc).

        A location that cannot hold it (read-only, a file in the way, ``/proc``) does not fail
        here: each call then raises :class:`~promptcache.tiers.base.LocationUnusable` naming the
        directory and the fix, and tries the location again (a fixed location is used from then on).
        """
        self.path = Path(path) if path is not None else default_cache_dir() / "promptcache.sqlite3"
        self.busy_timeout_s = busy_timeout_s
        self._clock = clock
        self._purge_every = purge_every
        self.tag_retention_s = tag_retention_s
        self._writes = 0
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._stats = StatsCounter()
        self._init_schema()

    # connections -------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            # About once a second, check the file is still the one this connection
            # opened: a deleted or replaced cache file would otherwise be written to
            # as an unlinked inode forever (the tier never recovering).
            now = time.monotonic()
            if now - self._local.checked < _REOPEN_CHECK_S:
                return db
            self._local.checked = now
            if self._file_id() == self._local.ino:
                return db
            log.warning("sqlite cache file was replaced or deleted: reopening")
            self._drop_local()
        if self._closed:
            raise TierError("store is closed")
        try:
            # Created here, not in __init__: an unusable location (a file in the way, a read-only
            # mount, /proc) then fails each call as a TierError, which the breaker skips, instead
            # of failing the construction of the cache (DESIGN.md, failure behaviour).
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._stats.add("errors")
            raise location_unusable(self.path.parent, exc) from exc
        try:
            db = self._open()
        except sqlite3.Error as exc:
            self._stats.add("errors")
            if _is_corruption(exc):
                self._set_aside()
            if _is_location_fault(exc):
                raise location_unusable(self.path.parent, exc) from exc
            raise TierError(f"cannot open cache database: {type(exc).__name__}") from exc
        self._local.db = db
        self._local.ino = self._file_id()
        self._local.checked = time.monotonic()
        with self._conns_lock:
            self._conns.append(db)
        return db

    def _open(self) -> sqlite3.Connection:
        """A new connection in WAL mode with the schema in place.

        Two processes opening a new file at once race to switch it to WAL, and SQLite answers
        the loser "database is locked" at once, without its busy handler: that step is retried
        within the busy timeout, like any other lock wait.
        """
        deadline = time.monotonic() + self.busy_timeout_s
        pause = 0.005
        while True:
            db = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves: transactions stay short
                check_same_thread=False,
            )
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable enough for a cache
                db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
                db.executescript(_SCHEMA)
                _migrate(db)
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            except BaseException:
                db.close()
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _file_id(self) -> int | None:
        try:
            return os.stat(self.path).st_ino
        except OSError:
            return None

    def _drop_local(self) -> None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        self._local.db = None
        if db is None:
            return
        with self._conns_lock, contextlib.suppress(ValueError):
            self._conns.remove(db)
        with contextlib.suppress(sqlite3.Error):
            db.close()

    def _set_aside(self) -> None:
        """A corrupt cache file (truncated, overwritten) is moved aside and rebuilt empty.

        It is a cache: starting empty is correct, staying broken is not. Other
        processes notice the new file within a second and reopen it.
        """
        self._drop_local()
        stamp = f"corrupt-{int(time.time())}-{os.getpid()}"
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            with contextlib.suppress(OSError):
                src.rename(Path(f"{self.path}.{stamp}{suffix}"))
        self._stats.add("corrupt")
        log.warning("sqlite cache file was corrupt: set aside, starting a new one")

    def _failed(self, exc: sqlite3.Error) -> None:
        """Count a failed statement; a corrupt file is set aside so the tier can recover."""
        self._stats.add("errors")
        if _is_corruption(exc):
            self._set_aside()

    def _init_schema(self) -> None:
        # Connecting creates the schema. A location that cannot hold the file is not an error
        # here: every call then raises TierError, and the chain above degrades to uncached.
        with contextlib.suppress(TierError):
            self._conn()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._failed(exc)
            raise TierError(f"sqlite write failed: {type(exc).__name__}: {exc}") from exc

    # reads -------------------------------------------------------------------

    def _read_rows(self, keys: Sequence[str]) -> list[tuple[str, bytes]]:
        db = self._conn()
        try:
            if len(keys) == 1:
                row = db.execute("SELECT key, data FROM pc_entries WHERE key = ?", (keys[0],))
                return list(row.fetchall())
            out: list[tuple[str, bytes]] = []
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                out.extend(
                    db.execute(f"SELECT key, data FROM pc_entries WHERE key IN ({marks})", chunk).fetchall()
                )
            return out
        except sqlite3.Error as exc:
            self._failed(exc)
            raise TierError(f"sqlite read failed: {type(exc).__name__}") from exc

    def _gens(self, db: sqlite3.Connection, tags: Sequence[str]) -> dict[str, int]:
        if not tags:
            return {}
        marks = ",".join("?" * len(tags))
        rows = db.execute(f"SELECT tag, gen FROM pc_tag_gens WHERE tag IN ({marks})", list(tags))
        return {str(t): int(g) for t, g in rows.fetchall()}

    def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The live entries among ``keys``; corrupt, expired and stale rows are counted misses."""
        if not keys:
            return {}
        rows = self._read_rows(list(dict.fromkeys(keys)))
        now = self._clock()
        found: dict[str, Entry] = {}
        for key, data in rows:
            entry = decode_entry(data)
            if entry is None or entry.key != key:
                self._stats.add("corrupt")
                log.debug("sqlite: unreadable entry %s (%d bytes)", key_digest(key), len(data))
                continue
            if entry.dead_at(now):
                continue
            found[key] = entry
        # generations are read after the entries: an invalidation in between shows up as stale
        tags = sorted({t for e in found.values() for t in e.tags})
        if tags:
            try:
                current = self._gens(self._conn(), tags)
            except sqlite3.Error as exc:
                self._stats.add("errors")
                raise TierError(f"sqlite read failed: {type(exc).__name__}") from exc
            for key in [k for k, e in found.items() if not tags_current(e, current)]:
                del found[key]
                self._stats.add("stale")
        nbytes = sum(e.size for e in found.values())
        self._stats.add("hits", len(found))
        self._stats.add("misses", len(keys) - len(found))
        self._stats.add("bytes_read", nbytes)
        return found

    def get(self, key: str) -> Entry | None:
        """The live entry under ``key``, or ``None``."""
        return self.get_many([key]).get(key)

    # writes ------------------------------------------------------------------

    def put(self, entry: Entry) -> None:
        """Insert or replace ``entry`` and its tag index rows, in one short transaction."""
        data = encode_entry(entry)
        with self._write() as db:
            db.execute(
                "INSERT INTO pc_entries(key, data, retain_until) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET data = excluded.data, "
                "retain_until = excluded.retain_until",
                (entry.key, data, entry.retain_until()),
            )
            db.execute("DELETE FROM pc_entry_tags WHERE key = ?", (entry.key,))
            if entry.tags:
                db.executemany(
                    "INSERT OR IGNORE INTO pc_entry_tags(tag, key) VALUES (?, ?)",
                    [(t, entry.key) for t in entry.tags],
                )
        self._stats.add("bytes_written", len(data))
        self._writes += 1
        if self._purge_every and self._writes % self._purge_every == 0:
            self.purge_expired()

    def put_raw(self, key: str, data: bytes, retain_until: float | None = None) -> None:
        """Store raw bytes under ``key`` (diagnostics and tests of unreadable entries)."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO pc_entries(key, data, retain_until) VALUES (?, ?, ?)",
                (key, data, retain_until),
            )

    def delete(self, key: str) -> None:
        """Remove ``key`` and its tag index rows."""
        with self._write() as db:
            db.execute("DELETE FROM pc_entries WHERE key = ?", (key,))
            db.execute("DELETE FROM pc_entry_tags WHERE key = ?", (key,))

    def tag_generations(self, tags: Sequence[str]) -> Generations:
        """The current generation of each tag (0 if never invalidated), with the file's epoch.

        The epoch is a random id written into the file on first use; a file deleted or
        replaced comes back with another one (see :mod:`promptcache.invalidation`). It is
        read in the same statement as the generations, so both come from one snapshot.
        """
        names = list(tags)
        marks = ",".join("?" * len(names))
        sql = (
            f"SELECT tag, gen FROM pc_tag_gens WHERE tag IN ({marks}) UNION ALL " if names else ""
        ) + "SELECT ?, value FROM pc_meta WHERE name = ?"
        try:
            rows = self._conn().execute(sql, [*names, _EPOCH_ROW, _EPOCH]).fetchall()
            found = {str(t): g for t, g in rows}
            epoch = found.pop(_EPOCH_ROW, None)
            if epoch is None:
                epoch = self._create_epoch()
        except sqlite3.Error as exc:
            self._failed(exc)
            raise TierError(f"sqlite read failed: {type(exc).__name__}") from exc
        return Generations({t: int(found.get(t, 0)) for t in names}, epoch=str(epoch))

    def _create_epoch(self) -> str:
        """Write this file's epoch if it has none yet; the one it has after that."""
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO pc_meta(name, value) VALUES (?, ?)", (_EPOCH, new_epoch()))
            row = db.execute("SELECT value FROM pc_meta WHERE name = ?", (_EPOCH,)).fetchone()
        return str(row[0])

    def tag_key(self) -> bytes:
        """The random key this file's tag names are computed with (see :mod:`promptcache.tagnames`)."""
        try:
            row = self._conn().execute("SELECT value FROM pc_meta WHERE name = 'tag_key'").fetchone()
        except sqlite3.Error as exc:
            self._failed(exc)
            raise TierError(f"sqlite read failed: {type(exc).__name__}") from exc
        if row is None:
            raise TierError("sqlite cache file has no tag key")
        return bytes(row[0])

    def invalidate_tag(self, tag: str) -> int:
        """Bump ``tag``'s generation and delete the entries the tag index lists for it."""
        with self._write() as db:
            row = db.execute(
                "INSERT INTO pc_tag_gens(tag, gen, bumped_at) VALUES (?, 1, ?) "
                "ON CONFLICT(tag) DO UPDATE SET gen = gen + 1, bumped_at = excluded.bumped_at RETURNING gen",
                (tag, self._clock()),
            ).fetchone()
            # the generation bump alone makes them unreadable; deleting reclaims the space, and
            # every tag row of a deleted entry goes with it (not only this tag's)
            db.execute(
                "DELETE FROM pc_entries WHERE key IN (SELECT key FROM pc_entry_tags WHERE tag = ?)",
                (tag,),
            )
            db.execute(
                "DELETE FROM pc_entry_tags WHERE key IN (SELECT key FROM pc_entry_tags WHERE tag = ?)",
                (tag,),
            )
        return int(row[0])

    def purge_expired(self, limit: int = 10_000) -> int:
        """Delete up to ``limit`` entries past their retention and orphaned tag rows; returns the entries.

        Orphans are tag index rows whose entry is gone (replaced raw, or left by an earlier
        version) and generations of tags no entry uses that have not moved for
        ``tag_retention_s`` (see the module docstring).
        """
        now = self._clock()
        with self._write() as db:
            keys = [
                r[0]
                for r in db.execute(
                    "SELECT key FROM pc_entries WHERE retain_until IS NOT NULL AND retain_until <= ? LIMIT ?",
                    (now, limit),
                ).fetchall()
            ]
            db.executemany("DELETE FROM pc_entries WHERE key = ?", [(k,) for k in keys])
            db.executemany("DELETE FROM pc_entry_tags WHERE key = ?", [(k,) for k in keys])
            db.execute(
                "DELETE FROM pc_entry_tags WHERE key IN (SELECT t.key FROM pc_entry_tags t "
                "WHERE NOT EXISTS (SELECT 1 FROM pc_entries e WHERE e.key = t.key) LIMIT ?)",
                (limit,),
            )
            db.execute(
                "DELETE FROM pc_tag_gens WHERE tag IN (SELECT g.tag FROM pc_tag_gens g "
                "WHERE COALESCE(g.bumped_at, 0) <= ? "
                "AND NOT EXISTS (SELECT 1 FROM pc_entry_tags t WHERE t.tag = g.tag) LIMIT ?)",
                (now - self.tag_retention_s, limit),
            )
        self._stats.add("evictions", len(keys))
        return len(keys)

    def stats(self) -> TierStats:
        """A snapshot of the counters."""
        return self._stats.snapshot()

    def close(self) -> None:
        """Close every thread's connection."""
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for db in conns:
            try:
                db.close()
            except sqlite3.Error:
                log.debug("closing sqlite connection failed", exc_info=True)
        self._local = threading.local()

    # asyncio: sqlite3 is blocking, so the calls run on the default executor ---

    async def aget(self, key: str) -> Entry | None:
        """See :meth:`get`."""
        return await asyncio.to_thread(self.get, key)

    async def aget_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """See :meth:`get_many`."""
        return await asyncio.to_thread(self.get_many, keys)

    async def aput(self, entry: Entry) -> None:
        """See :meth:`put`."""
        await asyncio.to_thread(self.put, entry)

    async def adelete(self, key: str) -> None:
        """See :meth:`delete`."""
        await asyncio.to_thread(self.delete, key)

    async def atag_generations(self, tags: Sequence[str]) -> Generations:
        """See :meth:`tag_generations`."""
        return await asyncio.to_thread(self.tag_generations, tags)

    async def ainvalidate_tag(self, tag: str) -> int:
        """See :meth:`invalidate_tag`."""
        return await asyncio.to_thread(self.invalidate_tag, tag)

    async def aclose(self) -> None:
        """See :meth:`close`."""
        self.close()
