"""Settling sends whose outcome is unknown: the only guard against duplicates upstream.

The rule (told in full in ``delivery/__init__.py``): an event of such a send that is found
upstream is delivered; one not found is sent again only when nothing can still store it, that
is for a sink with jobs once ``job_timeout`` seconds have passed since its send began. Until
then it stays inflight, looked up again on a backoff, and nothing newer is sent before it.

The look is a read of the store on the drainer's store thread, asked for at every drain step.
Most steps it could find nothing: only the drainer's own claims put events inflight without a
job, and it knows when it made one and when that send's outcome was written. So a settler
remembers that its last look found nothing inflight and that no claim is open since
(:meth:`Settler.claimed`, :meth:`Settler.decided`), and then skips the read. An outbox that
other processes' drainers claim from too (the relay's replicas on one PostgreSQL) says when a
look for their leftovers is due with ``orphans_due()``; its own throttle decides how often.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..store import OutboxItem
from .jobs import Poll
from .offload import StoreThread
from .ports import OutboxPort
from .sink import Sink
from .writes import settle_outcome


@dataclass(frozen=True)
class Settled:
    landed: int = 0  # found upstream: delivered
    resent: int = 0  # found lost: pending again
    wait: float | None = None  # seconds until the next look; None: nothing left unsettled


class Settler:
    """Settles a store's inflight events of unknown outcome through a sink."""

    def __init__(
        self,
        store: OutboxPort,
        sink: Sink,
        job_timeout: float,
        poll: tuple[float, float],
        *,
        store_thread: StoreThread,
        now: Callable[[], float],
        wall: Callable[[], float],
        log: logging.Logger,
    ) -> None:
        """``poll``: (initial, maximum) seconds between looks at events not found yet; the
        store is called through ``store_thread`` (the drainer's)."""
        self.store, self.sink, self.job_timeout = store, sink, float(job_timeout)
        self.store_thread = store_thread
        self.initial, self.maximum = poll
        self._now, self._wall, self._log = now, wall, log
        self._poll: Poll | None = None  # set while some events stay unsettled
        # The last look found nothing inflight without a job and no claim is open since: the
        # next look would find nothing either (see the module's docstring). ``_at_claim``: what
        # it was when the open claim was made (None: no claim open).
        self._clear = False
        self._at_claim: bool | None = None
        self._orphans_due = getattr(store, "orphans_due", None)  # shared outboxes only

    def claimed(self) -> None:
        """A batch is being claimed: inflight until its outcome is written (:meth:`decided`);
        cancelled, timed out or failing meanwhile, the next settle looks."""
        self._at_claim, self._clear = self._clear, False

    def decided(self) -> None:
        """The claimed batch's outcome is in the store (acked, its job recorded, released or
        set aside): nothing of it is left inflight without a job."""
        if self._at_claim is not None:
            self._clear, self._at_claim = self._at_claim, None

    def forget(self) -> None:
        """Look at the next settle (another process may have claimed meanwhile)."""
        self._clear, self._at_claim = False, None

    def _expired(self, item: OutboxItem, wall: float) -> bool:
        """Whether no job can store ``item`` any more, so "not found" means lost."""
        if not getattr(self.sink, "jobs", False):
            return True  # stored when accepted, or never: nothing arrives later
        return item.claimed_at is None or wall - item.claimed_at >= self.job_timeout

    async def settle(self, why: str) -> Settled:
        """Look up what is due; ``why`` says, in the store, why events went back."""
        if self._clear and not (self._orphans_due is not None and self._orphans_due()):
            return Settled()
        items = await self.store_thread.call(self.store.inflight)
        # Found some: looked at again until every one is settled. A claim left open (its send
        # cancelled) is in what was read.
        self._clear, self._at_claim = not items, None
        if not items:
            self._poll = None
            return Settled()
        if self._poll is not None and not self._poll.due():
            return Settled(wait=self._poll.wait())
        wall = self._wall()
        landed: list[str] = []
        lost: list[str] = []
        waiting: list[OutboxItem] = []
        for item in items:
            expired = self._expired(item, wall)
            if waiting and not expired:
                # One of this send's events is not there yet: neither are the rest, most
                # likely. Their look comes with the next check; no request is spent now.
                waiting.append(item)
                continue
            found = await self._exists(item.event_id)
            if found:
                landed.append(item.event_id)
            elif expired:
                if found is None:
                    self._log.warning(
                        "cannot tell whether %s reached Timeback; sent again, as no job can "
                        "still store it",
                        item.event_id,
                    )
                lost.append(item.event_id)
            else:
                waiting.append(item)
        if landed or lost:
            await self.store_thread.call(settle_outcome, self.store, landed, lost, why)
            self._log.info(
                "settled %d inflight event(s): %d already stored upstream, %d to send again",
                len(landed) + len(lost),
                len(landed),
                len(lost),
            )
        if not waiting:
            self._poll, self._clear = None, True  # every one settled, in the store
            return Settled(len(landed), len(lost))
        if self._poll is None:
            self._poll = Poll(self.initial, self.maximum, self._now)
        else:
            self._poll.later()
        # Looked at again at the poll's time, or as soon as the oldest one's wait ends.
        until_expiry = min((i.claimed_at or wall) + self.job_timeout - wall for i in waiting)
        wait = max(0.0, min(self._poll.wait(), until_expiry))
        self._poll.next_at = self._now() + wait
        return Settled(len(landed), len(lost), wait)

    async def _exists(self, event_id: str) -> bool | None:
        try:
            return await self.sink.exists(event_id)
        except Exception as err:  # a sink bug must not wedge the queue
            self._log.warning("sink.exists failed for %s: %s", event_id, err)
            return None
