"""Relay-paced sending: a student's server holds its heartbeats until the relay's pace has passed.

Every heartbeat sent as its own request costs a district's relays more per request (HTTP, the
hub's token check, a transaction, the access log) than per event. So the relay, which the school
configures and which knows its load, says in each ingest answer how often a server should send
(``send_every`` seconds, ``c.Relay.send_every``); :class:`~.relay.RelaySink` keeps what it was
told (``pace``). After a send through such a sink the drainer holds what is pending until the
pace has passed since that send, then sends all of it in one envelope: one request per student
per pace instead of one per heartbeat.

Nothing that matters waits: a completion (the student waits for their XP; the tracker says
``notify(urgent=True)``), a flush (a server stopping, ``jupyter timeback flush``) and a retry are
never held, a backlog (a full batch sent) goes on at once, and held events sit in the outbox,
durable, all along. A relay that says nothing (an older one) or something unusable leaves a
server sending as before.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .report import DrainReport

LOG = logging.getLogger("timeback_jupyter.delivery")

# The answer's field, as the relay sends it.
FIELD = "send_every"
# The longest pace a server follows (a relay saying more is held to it): the relay's live view
# counts a student as working for LIVE_SECONDS + pace after their newest forwarded second, and
# five minutes is as stale as a teacher's "working now" should get.
MAX_PACE = 300.0


def pace_from(body: Any, said: set[str] | None = None, log: logging.Logger = LOG) -> float:
    """The pace (seconds, 0 = send at once) in the relay's ingest answer ``body``.

    Absent: 0 (a relay that does not pace, or an older one). Not a finite number, or negative:
    0, logged. Over MAX_PACE: MAX_PACE, logged. ``said`` keeps which bad values were logged
    already, so a misconfigured relay costs one warning, not one per send."""
    value = body.get(FIELD) if isinstance(body, dict) else None
    if value is None:
        return 0.0
    problem = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problem, pace = "is not a number of seconds: ignored, sending at once", 0.0
    elif value < 0:
        problem, pace = "is negative: ignored, sending at once", 0.0
    elif value > MAX_PACE:
        problem, pace = f"is over {MAX_PACE:g} s: following {MAX_PACE:g} s", MAX_PACE
    else:
        return float(value)
    key = repr(value)[:60]
    if said is None or key not in said:
        log.warning("the relay's %s %s %s", FIELD, key, problem)
        if said is not None:
            said.add(key)
    return pace


class Pacer:
    """When the drainer's next send may go: ``hold()`` seconds from now.

    ``urgent`` is set by ``Drainer.notify(urgent=True)``: while it is set nothing is held.
    ``floor`` is the drainer's own least pace, whatever the sink says (a relay's forwarder:
    see ``Drainer``'s ``pace``)."""

    def __init__(self, sink: Any, now: Callable[[], float], floor: float = 0.0) -> None:
        self._sink, self._now, self._floor = sink, now, float(floor)
        self.urgent = asyncio.Event()
        self.sent_at: float | None = None  # the drainer's clock, after the last paced send

    @property
    def pace(self) -> float:
        pace = getattr(self._sink, "pace", 0.0)
        said = float(pace) if isinstance(pace, int | float) and pace > 0 else 0.0
        return max(said, self._floor)

    def hold(self) -> float:
        """Seconds to hold what is pending: 0 unless the last step sent through a pacing
        sink and nothing urgent came since. At 0 the drainer drains now, so an urgent
        notify() is answered: ``urgent`` is cleared (one coming during the drain stays)."""
        pace = self.pace
        left = 0.0 if self.sent_at is None else self.sent_at + min(pace, MAX_PACE) - self._now()
        if not pace or left <= 0 or self.urgent.is_set():
            self.urgent.clear()
            return 0.0
        return left

    def after(self, report: DrainReport, batch_size: int) -> None:
        """Start a hold after a step that delivered and left nothing behind. A failure (a
        retry is never held), a refusal or a full batch (a backlog: more is pending, and a
        full envelope is already the cheapest request) ends it."""
        if report.delay or report.retried or report.rejected or report.batch >= batch_size:
            self.sent_at = None
        elif report.batch:
            self.sent_at = self._now()
        # else nothing was pending: the last send's hold runs on


async def first_of(sleep: Awaitable[Any], wakes: Iterable[asyncio.Event]) -> None:
    """Until ``sleep`` ends or any of ``wakes`` is set, whichever comes first; the rest are
    cancelled (the drainer's waits: a pace, a backoff, an idle look)."""
    waiters = [asyncio.ensure_future(sleep), *(asyncio.ensure_future(w.wait()) for w in wakes)]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
