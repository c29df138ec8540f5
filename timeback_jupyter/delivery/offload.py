"""The drainer's store work on a thread of its own, where the store allows it.

A batch's read (50 rows of about a kilobyte, each parsed) and its acknowledgement (50 rows
rewritten as sent, one commit) take milliseconds; on Jupyter's event loop they would hold
every kernel message and request meanwhile, and on the relay's PostgreSQL every call is a
round trip (or a wait for another replica's lock) that would hold every ingest request. The
database drivers release the GIL while they wait, so on a thread the loop goes on; what still
takes the GIL there (the payloads' JSON parse) is a few microseconds at a time. Every call of
a drain step goes through :meth:`StoreThread.call`: the claim, the ack, the job records, the
settle's and the job checks' reads and writes. A store that may be shared between threads
says so with ``thread_safe = True`` (the server's SQLite store: one connection behind a lock;
the relay's outbox: a connection from the pool per call); any other is called on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
StoreCall = Callable[..., Awaitable[Any]]  # StoreThread.call: fn(*args), awaited
_Call = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class StoreThread:
    """One thread, started on first use, running one call at a time in order. Leaner than an
    executor (no concurrent future to wrap, no pool to size): a call costs the loop a future,
    a queue put and, when done, one wake-up."""

    def __init__(self, store: Any) -> None:
        self._threaded = getattr(store, "thread_safe", False) is True
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.cpu = 0.0  # CPU seconds spent on the thread, for the benchmarks

    @property
    def threaded(self) -> bool:
        return self._threaded

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the thread (or here, for a store that is not thread-safe). The
        drainer's steps run under its lock, so its calls come one at a time, in order."""
        if not self._threaded:
            return fn(*args)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="timeback-outbox", daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, done, loop))
        return await done

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args, done, loop = item
            started = time.thread_time()
            try:
                result, error = fn(*args), None
            except BaseException as err:  # handed to the caller, whatever it is
                result, error = None, err
            self.cpu += time.thread_time() - started
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits for it
                loop.call_soon_threadsafe(_settle, done, result, error)

    def close(self) -> None:
        """Let the thread go once its call (if any) is done; a later call starts a new one."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.cancelled():
        return  # the drain was cancelled while the store worked: its outcome is in the store
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)
