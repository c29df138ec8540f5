"""What a drain step tells the store once the sink has answered: each function is one handoff
to the drainer's store thread (:mod:`.offload`).

Every store call is a committed transaction (a fsync); on the event loop each would hold the
loop for milliseconds. The drainer decides on the loop (its state machine stays
single-threaded) and hands the store the whole outcome of a step at once: one wake-up, and
the writes in the order they were decided, as the store thread runs one call at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import RejectedError

RELEASED_NEIGHBOURS = "sent again without a rejected neighbour"


def settle_outcome(store: Any, landed: list[str], lost: list[str], why: str) -> None:
    """Inflight events of an unknown send: those found upstream are delivered, those lost go
    again (:mod:`.settle`)."""
    if landed:
        store.ack(landed)
    if lost:
        store.release(lost, f"{why}; not found upstream, sending again")


def set_aside(store: Any, ids: list[str], err: RejectedError) -> tuple[list[str], list[str]]:
    """A rejected batch: the events the sink named (all of them if it named none) go to the
    dead letters; the others go again in the next envelope. Returns (culprits, rest)."""
    named = [i for i in (err.event_ids or []) if i in ids]
    culprits = named or ids
    store.dead_letter(culprits, err.reason)
    rest = [i for i in ids if i not in culprits]
    if rest:
        store.release(rest, RELEASED_NEIGHBOURS)
    return culprits, rest


@dataclass(frozen=True)
class JobVerdict:
    """What was learned of one job: completed (``landed`` None: confirm it), or failed with
    the events found stored upstream all the same."""

    job_id: str
    landed: tuple[str, ...] | None = None
    detail: str = ""


@dataclass(frozen=True)
class JobWritten:
    confirmed: int = 0  # events delivered
    again: tuple[str, ...] = ()  # pending again
    lost: tuple[str, ...] = ()  # dead-lettered


def record_jobs(store: Any, verdicts: list[JobVerdict], limit: int) -> list[JobWritten]:
    """The verdicts of one job check, in order (:mod:`.jobs`). A store error propagates: the
    jobs not written yet stay pending and are asked about again."""
    written = []
    for verdict in verdicts:
        if verdict.landed is None:
            written.append(JobWritten(confirmed=store.confirm(verdict.job_id)))
            continue
        again, lost = store.job_failed(
            verdict.job_id, verdict.detail, limit=limit, landed=verdict.landed
        )
        written.append(JobWritten(len(verdict.landed), tuple(again), tuple(lost)))
    return written
