"""The drainer's status read off the event loop (issue 20): ``await Drainer.read_status()`` reads
the outbox's and the jobs' counts on the drainer's store thread, and the server's REST status
(GET /timeback/api/status) and flush answers use it. ``Drainer.status()`` stays for the sync
callers (it reads where it is called). Real SQLite store, real jupyter_server."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from timeback_jupyter.delivery import Drainer, LocalSink
from timeback_jupyter.store import KIND_TIME_SPENT, Store
from timeback_jupyter.testing.standin import SENSOR, time_spent_events

from .conftest import body
from .test_server import started

STORE_THREAD = "timeback-outbox"


class Noted(Store):
    """The server's SQLite store, noting the thread its status reads run on."""

    def __init__(self, path: Path, *, thread_safe: bool) -> None:
        super().__init__(path)
        self.thread_safe = thread_safe  # type: ignore[misc]
        self.threads: list[str] = []

    def stats(self) -> dict[str, Any]:
        self.threads.append(threading.current_thread().name)
        return super().stats()

    def job_stats(self) -> dict[str, Any]:
        self.threads.append(threading.current_thread().name)
        return super().job_stats()


@pytest.mark.parametrize("thread_safe", [True, False])
def test_read_status_reads_on_the_store_thread_what_status_reads_here(
    tmp_path: Path, thread_safe: bool
) -> None:
    store = Noted(tmp_path / "s.sqlite3", thread_safe=thread_safe)
    for event in time_spent_events(str(uuid.uuid4()), 3):
        store.enqueue(event, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
    drainer = Drainer(store, LocalSink())

    async def go() -> tuple[str, dict[str, Any], dict[str, Any]]:
        try:
            read = await drainer.read_status()
            return threading.current_thread().name, read, drainer.status()
        finally:
            await drainer.stop()

    loop_thread, read, here = asyncio.run(go())
    assert read == here
    assert (read["state"], read["pending"], read["jobs"]["pending"]) == ("ok", 3, 0)
    # the async form on the store thread (a thread-safe store), the sync one where called
    first = STORE_THREAD if thread_safe else loop_thread
    assert store.threads == [first, first, loop_thread, loop_thread]
    store.close()


async def test_the_rest_status_reads_the_drainers_counts_off_the_loop(
    jp_serverapp, jp_fetch, monkeypatch
):
    ext = await started(jp_serverapp)
    store = ext.service.drainer.store
    threads: list[str] = []

    def noting(read):
        def noted() -> dict[str, Any]:
            threads.append(threading.current_thread().name)
            return read()

        return noted

    for name in ("stats", "job_stats"):
        monkeypatch.setattr(store, name, noting(getattr(store, name)))
    status = body(await jp_fetch("timeback", "api", "status"))
    assert status["delivery"]["state"] == "ok" and status["delivery"]["jobs"]["pending"] == 0
    assert status["delivery"]["slow"] is False
    flushed = body(await jp_fetch("timeback", "api", "flush", method="POST", body=b"{}"))
    assert flushed["delivery"]["state"] == "ok"
    # the status's outbox and the drainer's counts: one read each, on the store thread
    assert status["outbox"]["pending"] == status["delivery"]["pending"]
    assert threads == [STORE_THREAD] * 4
