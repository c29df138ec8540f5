"""The drainer's store work on a thread of its own, where the store allows it.

A batch's read (50 rows of about a kilobyte, each parsed) and its acknowledgement (50 rows
rewritten as sent, one commit) take milliseconds, and every write is a commit with a fsync;
on Jupyter's event loop (or the relay's) they would hold every kernel message and request
meanwhile. So every store call of the drainer, its settling and its job checks comes here
(``writes.py`` hands a step's writes over at once). SQLite releases the GIL while it reads and
writes, so on a thread the loop goes on; what still takes the GIL there (the payloads'
JSON parse) is a few microseconds at a time. A store that may be shared between threads says
so with ``thread_safe = True`` (the server's SQLite store: one connection behind a lock);
any other (the relay's) is called on the loop as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
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
        self.handoffs = 0  # calls made on the thread: each costs the loop a wake-up

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
        self.handoffs += 1
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
