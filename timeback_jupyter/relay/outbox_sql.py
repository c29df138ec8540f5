"""The forwarder's SQL (claim, job, confirm, ack), built once per dialect, as the ingest's is
(:mod:`.statements`: a statement made per call costs SQLAlchemy several times its execution).

On PostgreSQL a list of event ids is one array parameter (``= ANY(...)``: one statement text
whatever the batch's length, so psycopg prepares it once and PostgreSQL plans it once); on
SQLite an ``IN (...)`` list. Parameters are named ``p_*`` so they never shadow a column.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .dialect_sql import bind, per_dialect
from .schema import jobs, outbox

_p = bind
# The status of a claim's rows as a constant, not a parameter: a prepared plan then knows it
# and takes the index of pending events alone (ix_outbox_pending, revision 0005).
PENDING = sa.literal_column("'pending'")
# Likewise the inflight events' and their jobs' partial indexes (ix_outbox_inflight,
# ix_outbox_job_inflight, revision 0007): every query by status or job names it so.
INFLIGHT = sa.literal_column("'inflight'")
# Events not delivered yet (pending or inflight): an OR of the two constants, each side read
# from its own partial index (an IN list would prove neither index's condition).
WAITING = sa.or_(outbox.c.status == PENDING, outbox.c.status == INFLIGHT)


# The first pending row no other claimer holds: its sensor is the batch's.
FIRST_SENSOR = (
    sa.select(outbox.c.sensor)
    .where(outbox.c.status == PENDING)
    .order_by(outbox.c.seq)
    .limit(1)
    .with_for_update(skip_locked=True)
)


# The oldest pending rows of ``sensor`` that no other claimer holds (SKIP LOCKED; SQLite
# compiles no FOR UPDATE: its writers are serialized by BEGIN IMMEDIATE).
def _picked(sensor: Any) -> Any:
    return (
        sa.select(outbox.c.seq)
        .where(outbox.c.status == PENDING, outbox.c.sensor == sensor)
        .order_by(outbox.c.seq)
        .limit(_p("p_limit", type_=sa.Integer))
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )


# What a claim sets on its rows: inflight since now, by this replica, with no job yet.
_CLAIMED = {
    "status": "inflight",
    "attempts": outbox.c.attempts + 1,
    "claimed_at": _p("p_now"),
    "job_id": None,
    "claimed_by": _p("p_key"),
}

# The claim in one statement: the rows picked, locked, marked inflight and returned (no
# separate read of the rows, then update by their seqs). RETURNING's order is not the seq's.
CLAIM = (
    sa.update(outbox)
    .where(outbox.c.seq.in_(_picked(_p("p_sensor"))))
    .values(**_CLAIMED)
    .returning(
        outbox.c.seq,
        outbox.c.event_id,
        outbox.c.run_id,
        outbox.c.kind,
        outbox.c.sensor,
        outbox.c.payload,
        outbox.c.attempts,
        outbox.c.claimed_at,
    )
)

# The claim for a sink that posts events as stored (delivery/timeback.py send_stored), in one
# statement, one round trip: the first pending row no other claimer holds (FIRST_SENSOR, an
# uncorrelated subquery: run once, locking that row) names the batch's sensor, and the rows
# are returned with the payload's JSON text as the column keeps it, not parsed by the driver
# (psycopg's json loader was the claim's largest cost).
CLAIM_TEXTS = (
    sa.update(outbox)
    .where(outbox.c.seq.in_(_picked(FIRST_SENSOR.scalar_subquery())))
    .values(**_CLAIMED)
    .returning(outbox.c.seq, outbox.c.event_id, outbox.c.sensor, sa.cast(outbox.c.payload, sa.Text))
)

NEW_JOB = sa.insert(jobs).values(
    job_id=_p("p_job"), state="pending", events=_p("p_events"), submitted_at=_p("p_now")
)

CARRY = per_dialect(
    lambda within: (
        sa.update(outbox)
        .where(within(outbox.c.event_id, "p_ids"), outbox.c.status == INFLIGHT)
        .values(job_id=_p("p_job"))
    )
)

# PostgreSQL: the job recorded and its events marked in one statement, one round trip (a
# data-modifying WITH runs once, to completion, whether or not the rest reads it). SQLite
# has no DML in WITH and no round trips: NEW_JOB then CARRY.
RECORD_JOB = CARRY["postgresql"].add_cte(NEW_JOB.cte("new_job"))

ACK = per_dialect(
    lambda within: (
        sa.update(outbox)
        .where(within(outbox.c.event_id, "p_ids"), outbox.c.status != "sent")
        .values(status="sent", sent_at=_p("p_now"), last_error=None)
    )
)

JOB_EVENTS = (
    sa.select(outbox.c.event_id)
    .where(outbox.c.job_id == _p("p_job"), outbox.c.status == INFLIGHT)
    .order_by(outbox.c.seq)
)

CONFIRM_EVENTS = (
    sa.update(outbox)
    .where(outbox.c.job_id == _p("p_job"), outbox.c.status == INFLIGHT)
    .values(status="sent", sent_at=_p("p_now"), last_error=None)
)

CONFIRM_JOB = (
    sa.update(jobs)
    .where(jobs.c.job_id == _p("p_job"))
    .values(state="completed", settled_at=_p("p_now"))
)

# PostgreSQL: CONFIRM_EVENTS and CONFIRM_JOB in one statement, answering how many events.
_CONFIRMED = CONFIRM_EVENTS.returning(outbox.c.seq).cte("confirmed")
CONFIRM = sa.select(sa.func.count()).select_from(_CONFIRMED).add_cte(CONFIRM_JOB.cte("settled"))
