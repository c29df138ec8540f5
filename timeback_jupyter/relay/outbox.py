"""The relay's outbox: what it accepted, waiting for Timeback, on the relay's own store.

The same protocol as a server's outbox (``delivery.ports.OutboxPort``), so the same
``delivery.Drainer`` delivers it::

    outbox = RelayOutbox(db)
    drainer = Drainer(outbox, make_sink(...))

Events enter with :func:`enqueue` inside the ingest's own transaction (accepted and queued
together, or neither). A claim marks a batch inflight (with the time its send begins) and
commits before it is sent; on PostgreSQL it also skips rows another claimer holds (``FOR
UPDATE SKIP LOCKED``). An inflight event Timeback accepted carries the id of the job that will
store it (:mod:`.jobs`); one without is being sent, or its send's outcome is unknown
(:meth:`RelayOutbox.inflight`).

The drainer calls it on its store thread (``thread_safe``, ``delivery/offload.py``), so no
claim, job record or confirm holds the event loop, and so the ingest, for its round trip: each
call takes a connection of its own from the engine's pool (SQLite: its writers wait for each
other, ``BEGIN IMMEDIATE`` under the busy timeout), the replica's lock connection is behind its
own mutex (:mod:`.replicas`), and the one state kept here, this replica's open claims, behind
``_book``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from ..model import InvalidInput
from ..store import OUTBOX_STATUSES, DeadLetter, OutboxItem, StoredBatch
from . import outbox_sql as sql
from .database import RelayDatabase
from .jobs import RelayJobs
from .letters import ERROR_LENGTH, checked_ids, move_to_dead_letters
from .replicas import Replica
from .schema import dead_letters, outbox

INSERT = sa.insert(outbox)  # built once: see statements.py
# With replicas: seconds between looks for a dead replica's sends while this one has none of
# its own to settle (the settle asks at every drain step; one read a batch for nothing).
ORPHANS_EVERY = 1.0


def enqueue(
    conn: sa.Connection,
    event: dict[str, Any],
    *,
    user: str,
    run_id: str | None,
    kind: str,
    sensor: str,
    at: float,
) -> None:
    """Queue ``event`` (its ``id`` is the stored id) within the caller's transaction."""
    conn.execute(
        INSERT,
        {
            "event_id": event["id"],
            "user_name": user,
            "run_id": run_id,
            "kind": kind,
            "sensor": sensor,
            "payload": event,
            "status": "pending",
            "attempts": 0,
            "created_at": at,
        },
    )


def claim_query(sensor: str, limit: int) -> sa.Select[Any]:
    """The oldest ``limit`` pending rows of ``sensor``, locked for the claim.

    SKIP LOCKED: a second claimer (PostgreSQL, several relay processes) takes the next rows
    instead of waiting. SQLite compiles no FOR UPDATE at all (its writers are serialized by
    BEGIN IMMEDIATE), so this one spelling is right for both.
    """
    return (
        sa.select(outbox)
        .where(outbox.c.status == sql.PENDING, outbox.c.sensor == sensor)
        .order_by(outbox.c.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def _item(row: Any) -> OutboxItem:
    return OutboxItem(
        seq=row.seq,
        event_id=row.event_id,
        run_id=row.run_id,
        kind=row.kind,
        sensor=row.sensor,
        payload=row.payload,
        attempts=row.attempts,
        claimed_at=row.claimed_at,
    )


def events_query(status: str | None) -> sa.Select[Any]:
    """Payloads in seq order, of one status if given: the status rendered as a constant, so
    pending and inflight rows are read from their partial indexes (bound, it planned a scan of
    the whole outbox)."""
    query = sa.select(outbox.c.payload).order_by(outbox.c.seq)
    if status is None:
        return query
    return query.where(outbox.c.status == sa.literal(status, literal_execute=True))


class RelayOutbox(RelayJobs):
    """``delivery.ports.OutboxPort`` on the relay's store (the job methods: :mod:`.jobs`)."""

    thread_safe = True  # see the module's docstring

    def __init__(self, db: RelayDatabase, *, now: Callable[[], float] = time.time) -> None:
        self.db = db
        self.replica = Replica(db)
        # The drainer's lease is a lock file beside a SQLite store: one drainer per store. On
        # PostgreSQL the replicas' drainers run side by side (SKIP LOCKED, claims stamped with
        # the replica's key): no lease, which on one host would idle all but one.
        self.path = "" if self.replica.key is not None else db.path
        self._now = now
        # With replicas, this one's claims not yet settled (sent with a job, acked, released,
        # dead-lettered): its own inflight events are known here, so with none of them the
        # store is asked only every ORPHANS_EVERY s, for dead replicas' (:meth:`inflight`).
        self._open: set[str] = set()
        self._looked = -math.inf
        self._book = threading.Lock()  # _open and _looked: the store thread's and any other's

    def claim_batch(self, limit: int) -> list[OutboxItem]:
        """The oldest pending events sharing the first one's sensor, marked inflight.

        Marked and committed before returning: after a crash they are found by
        :meth:`inflight`, never silently sent twice or forgotten.
        """
        self._claiming(limit)
        with self.db.write() as conn:
            # The first row another claimer does not hold: its sensor is the batch's.
            first = conn.execute(sql.FIRST_SENSOR).first()
            if first is None:
                return []
            rows = conn.execute(
                sql.CLAIM,
                {
                    "p_sensor": first.sensor,
                    "p_limit": limit,
                    "p_now": self._now(),
                    "p_key": self.replica.key,
                },
            ).all()
        rows = sorted(rows, key=lambda r: r.seq)
        self._opened([r.event_id for r in rows])
        return [_item(r) for r in rows]

    def claim_stored(self, limit: int) -> StoredBatch | None:
        """:meth:`claim_batch` for a sink that posts events as stored: the same claim, the
        payloads as their JSON texts (none parsed). None when nothing is pending.

        Every event in the relay's outbox was built by the relay (``caliper.events``, from
        inputs the ingest checked: :mod:`.rules`), so none is ``unchecked``."""
        self._claiming(limit)
        params = {"p_limit": limit, "p_now": self._now(), "p_key": self.replica.key}
        with self.db.write() as conn:
            rows = conn.execute(sql.CLAIM_TEXTS, params).all()
        if not rows:
            return None
        rows = sorted(rows, key=lambda r: r[0])  # RETURNING's order is not the seq's
        ids = [r[1] for r in rows]
        self._opened(ids)
        return StoredBatch(rows[0][2], ids, [r[3] for r in rows], [])

    def _claiming(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("limit", f"must be an integer >= 1, got {limit!r}")
        self._alive()  # the replica's lock taken again first, if the database dropped it

    def _opened(self, event_ids: list[str]) -> None:
        """These events are this replica's open claims now (see :meth:`inflight`)."""
        with self._book:
            self._open.update(event_ids)

    def inflight(self) -> list[OutboxItem]:
        """Claimed events no job of Timeback's carries yet: being sent, or sent with an
        unknown outcome (a timeout, a crash mid-send). Those with a job are in
        :meth:`jobs_pending`.

        With replicas (PostgreSQL), only this replica's and those of replicas gone: another
        live replica's send is its own to settle (:mod:`.replicas`). Those of a replica
        gone are found within ORPHANS_EVERY s while this one has no send of its own open."""
        self._alive()  # the lock taken again first, if the database dropped it (replicas.py)
        with self._book:
            if self.replica.key is not None and not self._open and not self.orphans_due():
                return []
            # Claimed and committed before the read below began, so it sees them.
            before = set(self._open)
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(outbox)
                .where(
                    outbox.c.status == sql.INFLIGHT,
                    outbox.c.job_id.is_(None),
                    self.replica.mine_or_orphaned(),
                )
                .order_by(outbox.c.seq)
            ).all()
        # What is no longer inflight without a job was settled (by this replica or another);
        # a claim made during the read is not in ``before`` and stays open.
        with self._book:
            self._looked = time.monotonic()
            self._open.difference_update(before.difference(r.event_id for r in rows))
        return [_item(r) for r in rows]

    def orphans_due(self) -> bool:
        """Whether a look for the sends of replicas gone is due: with replicas, once
        ORPHANS_EVERY s have passed since the last :meth:`inflight` read. Without (SQLite),
        never: one drainer holds the store's lease, and only its own claims go inflight.
        Cheap (no database), so the drainer's settle asks it on the event loop
        (``delivery/settle.py``) and skips the store thread while its own claims are settled."""
        return self.replica.key is not None and time.monotonic() - self._looked >= ORPHANS_EVERY

    def _settled(self, event_ids: list[str]) -> None:
        """These events are no longer this replica's open claims (see :meth:`inflight`)."""
        with self._book:
            self._open.difference_update(event_ids)

    def _alive(self) -> None:
        try:
            self.replica.alive()
        except sa.exc.SQLAlchemyError as err:
            raise self.db.error(err) from err

    def ack(self, event_ids: Iterable[str]) -> None:
        ids = checked_ids(event_ids)
        if not ids:
            return
        with self.db.write() as conn:
            conn.execute(sql.ACK[self.db.dialect], {"p_ids": ids, "p_now": self._now()})
        self._settled(ids)

    def release(self, event_ids: Iterable[str], error: str) -> None:
        """Back to pending after a failed attempt; the seq, and so the order, is kept.

        An event a pending job of Timeback's carries is left alone: that job may still store
        it, and sending it again would store it twice (:meth:`job_failed` releases those).
        So is one another live replica claimed meanwhile (two replicas settling a dead one's
        send: the first released it, a third claimed it and is sending it now).
        """
        ids = checked_ids(event_ids)
        if not ids:
            return
        with self.db.write() as conn:
            conn.execute(
                sa.update(outbox)
                .where(
                    outbox.c.event_id.in_(ids),
                    outbox.c.status == sql.INFLIGHT,
                    outbox.c.job_id.is_(None),
                    self.replica.mine_or_orphaned(),
                )
                .values(status="pending", last_error=str(error)[:ERROR_LENGTH])
            )
        self._settled(ids)

    def dead_letter(self, event_ids: Iterable[str], reason: str) -> None:
        """Move events that can never be delivered out of the queue, kept for review."""
        ids = checked_ids(event_ids)
        with self.db.write() as conn:
            move_to_dead_letters(conn, ids, reason, self._now())
        self._settled(ids)

    def depth(self) -> int:
        with self.db.read() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(outbox).where(sql.WAITING)
            ).scalar_one()
        return int(count)

    def dead_letters(self) -> list[DeadLetter]:
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(dead_letters).order_by(dead_letters.c.at, dead_letters.c.event_id)
            ).all()
        return [
            DeadLetter(
                event_id=r.event_id,
                run_id=r.run_id,
                kind=r.kind,
                reason=r.reason,
                at=r.at,
                payload=r.payload,
            )
            for r in rows
        ]

    def events(self, *, status: str | None = None) -> list[dict[str, Any]]:
        """Outbox payloads in seq order, optionally of one status."""
        if status is not None and status not in OUTBOX_STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(OUTBOX_STATUSES)}")
        with self.db.read() as conn:
            return [row.payload for row in conn.execute(events_query(status))]

    def stats(self) -> dict[str, Any]:
        with self.db.read() as conn:
            counts = {status: 0 for status in OUTBOX_STATUSES}
            for status, count in conn.execute(
                sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)
            ):
                counts[status] = int(count)
            dead = conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar_one()
            oldest = conn.execute(
                sa.select(sa.func.min(outbox.c.created_at)).where(sql.WAITING)
            ).scalar_one()
        return {
            "pending": counts["pending"],
            "inflight": counts["inflight"],
            "sent": counts["sent"],
            "dead": int(dead),
            "oldest_pending_age": None if oldest is None else max(0.0, self._now() - oldest),
        }
