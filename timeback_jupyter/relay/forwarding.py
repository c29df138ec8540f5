"""The relay's forwarder on an event loop of its own thread, off the ingest's loop.

Measured at the district's rate (benchmarks/district_probe.py), the ingest's event loop lagged
~90 ms on average (a 0.1 s timer's lateness) while it answered requests, and the forwarder ran
on that same loop: every await of a drain step (its store-thread handoffs, the send, a poll per
due job) waited that long for its turn, so the forwarders confirmed ~450 events/s of the 1,367
coming in and the outbox grew for the whole phase. Here the drainer runs on a loop of its own,
in a thread, so its awaits wait only for its own work; it still shares the process's GIL (its
Python work is the same), and the ingest's loop no longer runs the forwarder's callbacks.

What crosses between the loops, and how: the ingest's ``notify`` is handed over with
``call_soon_threadsafe``; the face's status read (``Drainer.read_status``) runs on the caller's
loop (it reads plain fields and calls the store thread, which answers each caller on its own
loop); recover, run, flush and stop run on the forwarder's loop. The sink belongs to the
forwarder's loop and is closed there (its HTTP client's connections are that loop's).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any

from ..delivery import Drainer, Sink

LOG = logging.getLogger("timeback_jupyter.relay")
STOP_JOIN = 10.0  # seconds to wait for the thread once its loop was told to stop


class Forwarder:
    """A drainer and its sink on a thread with its own event loop (:meth:`start`)."""

    def __init__(self, drainer: Drainer, sink: Sink) -> None:
        self.drainer, self.sink = drainer, sink
        self.sink_closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: concurrent.futures.Future[None] | None = None

    def start(self) -> None:
        """Start the thread and its loop (nothing is delivered until :meth:`run`)."""
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name="timeback-forwarder", daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the relay's forwarder thread did not start")

    def _main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the forwarder is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the forwarder's loop; await its result on the caller's."""
        return await asyncio.wrap_future(self._submit(coro))

    def notify(self) -> None:
        """``Drainer.notify`` from any thread (the ingest's loop: something was queued)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closing meanwhile: stopping anyway
                loop.call_soon_threadsafe(self.drainer.notify)

    async def run(self) -> None:
        """Settle what a crash left inflight, then deliver until :meth:`stop` (returns once
        delivery has begun)."""
        # The store thread started from here, before the forwarder's loop calls it: both
        # loops call it (the face's status read), and its lazy start is not for two threads.
        await self.drainer.store_thread.call(_nothing)
        await self.call(self.drainer.recover())
        self._running = self._submit(self.drainer.run())

    async def stop(self, flush_timeout: float) -> None:
        """Deliver what is due for at most ``flush_timeout`` s, stop the drainer (its batch in
        flight finishes or is settled on the next start), close the sink, end the thread."""
        if self._loop is None or self._thread is None:
            return

        async def stopping() -> None:
            with contextlib.suppress(Exception):
                await self.drainer.flush(timeout=flush_timeout)
            await self.drainer.stop()
            if self._running is not None:
                self._running.cancel()
            try:
                await self.sink.aclose()
            finally:
                self.sink_closed = True

        try:
            await self.call(stopping())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, STOP_JOIN)
            if self._thread.is_alive():
                LOG.warning("the relay's forwarder thread did not end within %.0f s", STOP_JOIN)


def _nothing() -> None:
    return None
