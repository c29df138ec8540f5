"""The server's own writes of a run into its notebook, when no browser extension does it.

A run started with no browser (the kernel's first cell, a REST call, the reconcile loop) is
written into ``metadata.timeback`` once, ``metadata_write_delay`` after its start, at the path
the notebook has then (renames move it), unless a browser took the notebook meanwhile. A server
stopped before then writes at once: a stateful run must be in its file to resume from.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from ..config import Timeback
from ..tracker import Tracker
from .tasks import TaskSet


class _Files(Protocol):
    async def write(self, path: str, section: dict[str, Any]) -> bool: ...


class _Service(Protocol):
    settings: Timeback
    browser_paths: dict[str, None]

    @property
    def tracker(self) -> Tracker | None: ...


class RunWrites:
    def __init__(
        self,
        service: _Service,
        notebooks: _Files,
        tasks: TaskSet,
        log: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self._service, self._notebooks, self._tasks, self._log = service, notebooks, tasks, log
        # run id -> the notebook's path now; one write per run however often it starts
        self.pending: dict[str, str] = {}

    def later(self, run_id: str, path: str) -> None:
        # Several starts of one run (the first cell's two signals, the reconcile loop, a REST
        # call) make one write, of what the notebook holds then.
        if run_id not in self.pending:
            self._tasks.spawn(self._write_later(run_id))
        self.pending[run_id] = path

    async def _write_later(self, run_id: str) -> None:
        try:
            await asyncio.sleep(self._service.settings.metadata_write_delay)
        finally:
            path = self.pending.pop(run_id, None)
        await self._write(run_id, path)

    async def write_pending(self) -> None:
        """At shutdown: the runs still waiting for their write get it now."""
        while self.pending:
            run_id, path = self.pending.popitem()
            try:
                await self._write(run_id, path)
            except Exception as err:  # one notebook's failure must not keep the others' back
                self._log.warning("timeback: cannot write run %s into %s: %s", run_id, path, err)

    def rename(self, old: str, new: str) -> None:
        """The notebook (or directory) at ``old`` is now at ``new``: its pending writes follow."""
        for run_id, path in self.pending.items():
            moved = new + path[len(old) :] if path.startswith(old + "/") else None
            if path == old or moved:
                self.pending[run_id] = moved or new

    async def _write(self, run_id: str, path: str | None) -> None:
        tracker = self._service.tracker
        # A run ended or completed meanwhile is still the notebook's: a stateful one must be
        # found in the file to resume, a completed one must not be resumed.
        if tracker is None or path is None or path in self._service.browser_paths:
            return
        if tracker.run_at(path) not in (run_id, None):
            return
        run = tracker.get(run_id)
        if await self._notebooks.write(path, tracker.metadata_for(run, path)):
            self._log.info("timeback: wrote run %s into %s", run_id, path)
