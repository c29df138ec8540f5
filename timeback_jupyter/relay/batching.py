"""Group commit: envelopes that arrive while a transaction commits go together in the next.

With ``synchronous=FULL`` a commit costs a flush to disk; one per envelope caps a relay at a
few dozen envelopes a second on a slow disk, however many students wait. Here each envelope
still gets its own answer only after the commit that holds it (acknowledged only after commit),
but one commit serves every envelope that queued up meanwhile. The work runs on a thread, so the
service's event loop keeps answering while the disk flushes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

MAX_BATCH = 64


class GroupCommit[Item, Result]:
    """Runs ``run_batch`` over the items waiting, one batch at a time, on a thread.

    ``run_batch`` answers, per item in order, its result or the exception that item alone
    raised (its part rolled back); an exception out of ``run_batch`` fails the whole batch.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Item]], list[Result | Exception]],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._run = run_batch
        self._max = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._work())
        # A caller that gives up (a dropped request) cancels only its wait: an item already in
        # a transaction commits or not with it; its sender asks again and hears "duplicate".
        return await future

    async def _work(self) -> None:
        while self._waiting:
            taken, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
            batch = [(item, future) for item, future in taken if not future.done()]
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self._run, [item for item, _ in batch])
            except Exception as err:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
