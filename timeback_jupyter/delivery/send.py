"""One batch of a drain step: taken from the outbox, sent as one envelope, and the sink's answer
acted on (acknowledged, its job recorded, tried again later, or dead-lettered).

The drainer (:mod:`.drainer`) runs it under its lock, after settling and the job checks, and
keeps the loop; this keeps the batch's path. Every store call goes through the drainer's store
thread (:mod:`.offload`). A claim tells the settler (:mod:`.settle`) that a send is open, and
an outcome written tells it the send is decided: until then, a settle looks in the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .. import caliper
from ..store import OutboxItem
from .backoff import Backoff
from .errors import RejectedError, RetryableError
from .jobs import JobWatcher
from .offload import StoreThread
from .ports import OutboxPort
from .report import DrainReport
from .settle import Settler
from .sink import Sink
from .stored import deliver_stored, posts_stored, takes_stored
from .writes import set_aside


class Sender:
    """Sends a store's next batch through a sink (one call of :meth:`next` per drain step)."""

    def __init__(
        self,
        store: OutboxPort,
        sink: Sink,
        *,
        store_thread: StoreThread,
        backoff: Backoff,
        settler: Settler,
        jobs: JobWatcher,
        wall: Callable[[], float],
        log: logging.Logger,
    ) -> None:
        """``backoff`` is the drainer's: an answer resets it, a failure counts in it."""
        self.store, self.sink, self.store_thread = store, sink, store_thread
        self._backoff, self._settler, self._jobs = backoff, settler, jobs
        self._wall, self._log = wall, log
        self._stored = takes_stored(sink, store)  # batches as stored, in one call (.stored)
        self._texts = posts_stored(sink, store)  # claimed as stored texts, posted as they are

    async def next(self, limit: int) -> DrainReport | None:
        """The next batch of at most ``limit`` events, sent and acted on; None when nothing is
        pending. A report's ``error`` is the drainer's last error from now on."""
        if self._stored:
            return await self._deliver_stored(limit)
        if self._texts:
            return await self._deliver_texts(limit)
        batch = await self._take(limit)
        if not batch:
            return None
        ids = [item.event_id for item in batch]
        try:
            envelope = caliper.envelope([i.payload for i in batch], batch[0].sensor, self._wall())
        except caliper.CaliperInputError as err:
            return await self._reject(ids, RejectedError(f"cannot build the envelope: {err}"))
        return await self._deliver(ids, self.sink.send(envelope))

    async def _deliver_texts(self, limit: int) -> DrainReport | None:
        """The batch claimed as stored and posted as its texts (``send_stored``): no event
        parsed, validated or encoded again on the way (:func:`.stored.posts_stored`)."""
        self._settler.claimed()  # told before the claim: see _take
        claim = self.store.claim_stored  # type: ignore[attr-defined]
        batch = await self.store_thread.call(claim, limit)
        if batch is None:
            self._settler.decided()
            return None
        try:
            envelope = caliper.stored_envelope(
                batch.texts, batch.sensor, self._wall(), batch.unchecked
            )
        except caliper.CaliperInputError as err:
            refused = RejectedError(f"cannot build the envelope: {err}")
            return await self._reject(batch.event_ids, refused)
        sending = self.sink.send_stored(envelope)  # type: ignore[attr-defined]
        return await self._deliver(batch.event_ids, sending)

    async def _take(self, limit: int) -> list[OutboxItem]:
        """The next batch: claimed (marked inflight, committed) before a send that leaves the
        process, so a crash cannot send it twice unknowingly. A sink whose class says accepting
        has no effect outside this store (``remote = False``) gets it read, not claimed: after
        a crash its events are simply checked again (a subclass must say so too)."""
        if vars(type(self.sink)).get("remote", True) is False:
            pending_batch = getattr(self.store, "pending_batch", None)
            if pending_batch is not None:
                return list(await self.store_thread.call(pending_batch, limit))
        # Told before the claim: cancelled while the store thread claims, the claim still
        # commits, and the next settle must look for it.
        self._settler.claimed()
        batch = await self.store_thread.call(self.store.claim_batch, limit)
        if not batch:
            self._settler.decided()  # nothing was claimed
        return batch

    async def _deliver_stored(self, limit: int) -> DrainReport | None:
        """The batch as stored, in one call on the store thread (:mod:`.stored`)."""
        step = await self.store_thread.call(
            deliver_stored, self.store, self.sink, limit, self._wall
        )
        if not step.event_ids:
            return None
        if step.rejected is not None:  # set aside on the store thread already
            return self._rejected(list(step.culprits), list(step.rest), step.rejected)
        if step.failed is not None:  # kept "inflight": the batch was only read, still pending
            return await self._retry(step.event_ids, step.failed, None, keep_inflight=True)
        self._delivered()
        return DrainReport(sent=len(step.event_ids))

    def _delivered(self) -> None:
        if self._backoff.failures:
            self._log.info("delivery to %s works again", self.sink.name)
        self._backoff.succeeded()

    async def _deliver(self, ids: list[str], sending: Awaitable[str | None]) -> DrainReport:
        """The sink's answer to ``sending`` (its send of the batch ``ids``) acted on."""
        try:
            job_id = await sending
        except RejectedError as err:
            return await self._reject(ids, err)
        except RetryableError as err:
            keep = err.maybe_delivered
            return await self._retry(ids, str(err), err.retry_after, keep_inflight=keep)
        except asyncio.CancelledError:
            # Stopped mid-send: the batch stays inflight and is settled on the next start.
            raise
        except Exception as err:
            self._log.exception("the %s sink failed unexpectedly", self.sink.name)
            error = f"{type(err).__name__}: {err}"
            return await self._retry(ids, error, None, keep_inflight=True)
        self._delivered()
        if not job_id:
            await self.store_thread.call(self.store.ack, ids)  # delivered when accepted: no job
            self._settler.decided()
            return DrainReport(sent=len(ids))
        # Accepted: delivered once Timeback's job completes. Should this write fail, the
        # batch stays inflight without a job and is settled as a send of unknown outcome.
        # Cancelled meanwhile, the store thread still records it: watched all the same.
        try:
            await self.store_thread.call(self.store.record_job, ids, job_id)
            self._settler.decided()
        finally:
            self._jobs.submitted(job_id)  # a job the store lacks is dropped at the next look
        return DrainReport(queued=len(ids), waiting=self._jobs.initial)

    async def _retry(
        self, ids: list[str], error: str, retry_after: float | None, *, keep_inflight: bool
    ) -> DrainReport:
        # Maybe delivered: stay inflight, so the next step (or the next process, after a
        # crash) asks the sink before sending again. Otherwise back to pending, same seq.
        if not keep_inflight:
            await self.store_thread.call(self.store.release, ids, error)
            self._settler.decided()
        delay = self._backoff.failed(retry_after)
        self._log.warning(
            "sending %d event(s) to %s failed (%s); retry #%d in %.1fs",
            len(ids), self.sink.name, error, self._backoff.failures, delay,
        )  # fmt: skip
        return DrainReport(retried=len(ids), delay=delay, error=error)

    async def _reject(self, ids: list[str], err: RejectedError) -> DrainReport:
        culprits, rest = await self.store_thread.call(set_aside, self.store, ids, err)
        self._settler.decided()
        return self._rejected(culprits, rest, err)

    def _rejected(self, culprits: list[str], rest: list[str], err: RejectedError) -> DrainReport:
        # The API answered: the connection works, whatever it thought of these events.
        self._backoff.succeeded()
        self._log.error(
            "%s rejected %d event(s), moved to dead letters: %s",
            self.sink.name, len(culprits), err.reason,
        )  # fmt: skip
        return DrainReport(rejected=len(culprits), retried=len(rest), error=err.reason)
