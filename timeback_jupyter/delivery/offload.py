"""The drainer's store work on a thread of its own, where the store allows it.

A batch's read (50 rows of about a kilobyte, each parsed) and its acknowledgement (50 rows
rewritten as sent, one commit) take milliseconds; on Jupyter's event loop they would hold
every kernel message and request meanwhile. SQLite releases the GIL while it reads and
writes, so on a thread the loop goes on; what still takes the GIL there (the payloads'
JSON parse) is a few microseconds at a time. A store that may be shared between threads says
so with ``thread_safe = True`` (the server's SQLite store: one connection behind a lock);
any other (the relay's) is called on the loop as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class StoreThread:
    def __init__(self, store: Any) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._threaded = getattr(store, "thread_safe", False) is True
        self.cpu = 0.0  # CPU seconds spent on the thread, for the benchmarks

    @property
    def threaded(self) -> bool:
        return self._threaded

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the thread (or here, for a store that is not thread-safe). One
        call at a time: the drainer's steps run under its lock, in order."""
        if not self._threaded:
            return fn(*args)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="timeback-outbox")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed, fn, args)

    def _timed(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        started = time.thread_time()
        try:
            return fn(*args)
        finally:
            self.cpu += time.thread_time() - started

    def close(self) -> None:
        """Let the thread go once its call (if any) is done; a later call makes a new one."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)
