"""The two primitives where threads and asyncio really differ, each in both forms.

Everything else in the read path is written once, for asyncio, and the sync
form is generated from it (``scripts/gen_sync.py``): ``await flight.wait()``
becomes ``flight.wait()``, ``AsyncFlight`` becomes ``SyncFlight``, ``ajoin``
becomes ``join``. What cannot be generated is how to park a caller and how to
run work in the background, so those live here, side by side (httpcore keeps
its ``_synchronization.py`` for the same reason):

* :class:`Flights`: calls in progress by key. Threads share one flight per key;
  asyncio tasks share one per event loop (a future belongs to its loop).
* :class:`Background`: fire-and-forget work, at most one per key at a time; a
  thread pool for sync callers, tasks of the running loop for asyncio ones.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["AsyncFlight", "Background", "Flights", "SyncFlight"]

log = logging.getLogger("promptcache.tiers")

T = TypeVar("T")


class SyncFlight(Generic[T]):
    """One call in progress, shared by threads: the leader finishes it, the others wait."""

    def __init__(self) -> None:
        """An unfinished flight."""
        self._done = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    def finish(self, value: T | None = None, error: BaseException | None = None) -> None:
        """Hand ``value`` (or ``error``) to every waiter."""
        self._value, self._error = value, error
        self._done.set()

    def wait(self) -> T:
        """The leader's value, or its error raised here."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set by finish() without error


class AsyncFlight(Generic[T]):
    """One call in progress, shared by the tasks of one event loop."""

    def __init__(self) -> None:
        """An unfinished flight, bound to the running loop."""
        self._future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def finish(self, value: T | None = None, error: BaseException | None = None) -> None:
        """Hand ``value`` (or ``error``) to every waiter."""
        if error is not None:
            self._future.set_exception(error)
            self._future.exception()  # mark retrieved: there may be no waiter
        else:
            self._future.set_result(value)  # type: ignore[arg-type]

    async def wait(self) -> T:
        """The leader's value, or its error raised here (a waiter's cancellation spares the leader)."""
        return await asyncio.shield(self._future)


class Flights(Generic[T]):
    """Flights in progress, by key: :meth:`join` for threads, :meth:`ajoin` for asyncio tasks."""

    def __init__(self) -> None:
        """No flight yet."""
        self._lock = threading.Lock()
        self._sync: dict[Hashable, SyncFlight[T]] = {}
        self._async: dict[tuple[int, Hashable], AsyncFlight[T]] = {}

    def join(self, key: Hashable) -> tuple[SyncFlight[T], bool]:
        """The flight of ``key`` and whether this caller leads it (it must then :meth:`land` it)."""
        with self._lock:
            flight = self._sync.get(key)
            if flight is not None:
                return flight, False
            flight = self._sync[key] = SyncFlight()
            return flight, True

    def ajoin(self, key: Hashable) -> tuple[AsyncFlight[T], bool]:
        """See :meth:`join`; one flight per running event loop."""
        fk = (id(asyncio.get_running_loop()), key)
        flight = self._async.get(fk)
        if flight is not None:
            return flight, False
        flight = self._async[fk] = AsyncFlight()
        return flight, True

    def land(self, key: Hashable) -> None:
        """Forget the flight of ``key`` led by this caller (later callers start a new one)."""
        with self._lock:
            self._sync.pop(key, None)

    def aland(self, key: Hashable) -> None:
        """See :meth:`land`."""
        self._async.pop((id(asyncio.get_running_loop()), key), None)


class Background:
    """Work run off the caller's path, at most one piece per key at a time."""

    def __init__(self, name: str) -> None:
        """Threads are named ``promptcache-<name>``."""
        self._name = name
        self._lock = threading.Lock()
        self._running: set[Hashable] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _claim(self, key: Hashable) -> bool:
        with self._lock:
            if key in self._running:
                return False
            self._running.add(key)
            return True

    def _release(self, key: Hashable) -> None:
        with self._lock:
            self._running.discard(key)

    def spawn(self, key: Hashable, work: Callable[[], None]) -> None:
        """Run ``work()`` in a pool thread unless work for ``key`` is running."""
        if not self._claim(key):
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(2, thread_name_prefix=f"promptcache-{self._name}")
            pool = self._pool

        def run() -> None:
            try:
                work()
            finally:
                self._release(key)

        pool.submit(run)

    def aspawn(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``await work()`` as a task of the running loop unless work for ``key`` is running."""
        if not self._claim(key):
            return

        async def run() -> None:
            try:
                await work()
            finally:
                self._release(key)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Wait for the work running in threads; drop the queued work."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
