"""Background coroutines the extension starts and must be able to cancel at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any


class TaskSet:
    """Tasks kept until they finish (so none is collected early or outlives the server); a
    failure is logged, since nobody awaits them."""

    def __init__(self, log: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        self._log = log
        self._pending: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Future[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.warning("timeback: %s", task.exception())

    def cancel_all(self) -> None:
        for task in list(self._pending):
            task.cancel()

    async def aclose(self, timeout: float = 2.0) -> None:
        """Cancel every task and let each run its cancellation (a task dropped with the loop
        still pending is Python's "Task was destroyed but it is pending")."""
        pending = list(self._pending)
        self.cancel_all()
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def __len__(self) -> int:
        return len(self._pending)
