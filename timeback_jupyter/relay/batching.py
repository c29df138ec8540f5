"""Group commit: envelopes that arrive while a transaction commits go together in the next.

With ``synchronous=FULL`` a commit costs a flush to disk; one per envelope caps a relay at a
few dozen envelopes a second on a slow disk, however many students wait. Here each envelope
still gets its own answer only after the commit that holds it (acknowledged only after commit),
but one commit serves every envelope that queued up meanwhile. The work runs on a thread, so the
service's event loop keeps answering while the disk flushes.

Lanes. One transaction at a time made each replica's commits a serial chain whose links were
mostly waits (measured at the district's rate on PostgreSQL: a batch's wall 0.38 s, its
thread's CPU 0.04 s; the rest the database's statements, the commit and the thread's turn at
the GIL), so at saturation every answer queued behind whole transactions. With ``lanes`` > 1
(PostgreSQL: each lane a pooled connection of its own) that many batches are in flight at
once, one's Python overlapping another's statements. A batch never holds an item whose
``key`` (the hub user) is in another lane's batch: that item, and every later one of the same
key, waits for the next batch, so one user's envelopes still commit one after the other in
arrival order and two lanes never wait on each other's row locks. SQLite keeps one lane (one
writer: a second would only wait on ``BEGIN IMMEDIATE``).

Each batch is timed (:class:`BatchTiming`: how long its oldest item queued, its size, its wall
time and the CPU its thread spent) for whoever listens (``observe``: the relay's Prometheus
histograms), so an operator sees whether answers wait for the commit or for the queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

MAX_BATCH = 64


@dataclass(frozen=True)
class BatchTiming:
    """One batch: ``size`` items, the oldest queued ``wait`` s before it began, ``wall`` s from
    its start to its results, ``cpu`` s of its thread's CPU (the rest of ``wall`` is waiting:
    on the database, the disk, or the GIL)."""

    size: int
    wait: float
    wall: float
    cpu: float


class GroupCommit[Item, Result]:
    """Runs ``run_batch`` over the items waiting, on threads, at most ``lanes`` batches at once.

    ``run_batch`` answers, per item in order, its result or the exception that item alone
    raised (its part rolled back); an exception out of ``run_batch`` fails the whole batch.
    ``key`` names what two batches in flight must never share (default: nothing, which with
    one lane is all the same). ``observe`` is called on the event loop with each batch's
    :class:`BatchTiming`.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Item]], list[Result | Exception]],
        *,
        max_batch: int = MAX_BATCH,
        lanes: int = 1,
        key: Callable[[Item], Hashable] | None = None,
        observe: Callable[[BatchTiming], None] | None = None,
    ) -> None:
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be an integer >= 1, got {lanes!r}")
        if lanes > 1 and key is None:
            raise ValueError("several lanes need a key: what two batches must never share")
        self._run = run_batch
        self._max = max_batch
        self.lanes = lanes
        self._key = key or (lambda _item: None)
        self.observe = observe
        self._waiting: list[tuple[Item, asyncio.Future[Result], float]] = []
        self._busy: set[Hashable] = set()  # the keys of the batches in flight
        self._workers: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future, time.monotonic()))
        self._start_workers()
        # A caller that gives up (a dropped request) cancels only its wait: an item already in
        # a transaction commits or not with it; its sender asks again and hears "duplicate".
        return await future

    def _start_workers(self) -> None:
        # A worker takes batches until none can be taken; at most one per lane. A lane more
        # is started only when something waits that the running ones left (a busy key).
        # A worker that has just returned is done before its done-callbacks run, and the
        # caller it answered may submit again in between: count only the ones still working.
        self._workers = {task for task in self._workers if not task.done()}
        if len(self._workers) < self.lanes and self._waiting:
            self._workers.add(asyncio.create_task(self._work()))

    def _take(self) -> list[tuple[Item, asyncio.Future[Result], float]]:
        """The next batch, in arrival order: up to ``max_batch`` items whose key no batch in
        flight holds; the items left behind keep their order."""
        batch, left = [], []
        held: set[Hashable] = set()  # keys left behind here: their later items stay too
        for entry in self._waiting:
            if entry[1].done():
                continue  # its caller gave up before it was taken
            key = self._key(entry[0])
            if len(batch) >= self._max or key in self._busy or key in held:
                left.append(entry)
                held.add(key)
            else:
                batch.append(entry)
        self._waiting = left
        return batch

    def _timed(self, items: list[Item]) -> tuple[list[Result | Exception], float]:
        started = time.thread_time()
        return self._run(items), time.thread_time() - started

    async def _work(self) -> None:
        while batch := self._take():
            keys = {self._key(item) for item, _, _ in batch}
            self._busy |= keys
            # Whatever this batch left behind (a full batch, another lane's keys) may go in
            # another lane meanwhile.
            self._start_workers()
            began = time.monotonic()
            try:
                results, cpu = await asyncio.to_thread(self._timed, [item for item, _, _ in batch])
            except Exception as err:
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            finally:
                self._busy -= keys
            if self.observe is not None:
                wall = time.monotonic() - began
                self.observe(BatchTiming(len(batch), began - batch[0][2], wall, cpu))
            for (_, future, _), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
