"""The outbox: events waiting for Timeback, claimed in batches, acknowledged or dead-lettered.

An event enters in the same transaction as the state it reports (see :mod:`.runs`) and
leaves the queue only by an acknowledgement (kept as ``sent``) or a dead letter (moved aside
for review): a claim marks a batch inflight and commits before it is sent, so after a crash
it is found again rather than sent twice unknowingly or forgotten. An inflight event that
Timeback accepted carries the id of the job that will store it (:mod:`.jobs`); one without is
being sent, or its send's outcome is unknown (:meth:`OutboxStore.inflight`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from ..caliper.inputs import BuiltEvent
from ..model import InvalidInput, require_text
from .database import Database, dump
from .errors import StoreError, explain

KIND_TIME_SPENT = "time_spent"
KIND_COMPLETION = "completion"
OUTBOX_STATUSES = ("pending", "inflight", "sent")
PAGE = 500  # rows per read when iterating over every event
CHUNK = 500  # ids per statement (SQLite before 3.32 takes at most 999 parameters)


# A batch: the pending events of the oldest pending event's sensor, oldest first (one sensor
# per envelope).
_FIRST_SENSORS_PENDING = (
    "WHERE status = 'pending' AND sensor = (SELECT sensor FROM outbox "
    "WHERE status = 'pending' ORDER BY seq LIMIT 1) ORDER BY seq LIMIT ?"
)


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    event_id: str
    run_id: str | None
    kind: str
    sensor: str
    payload: dict[str, Any]
    attempts: int
    claimed_at: float | None = None  # when its last send began (store clock)


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A batch as stored, not parsed: the events' JSON texts, and which of them our builder
    did not make (``unchecked``: their indexes), for a sink that only needs to check them."""

    sensor: str
    event_ids: list[str]
    texts: list[str]
    unchecked: list[int]


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    run_id: str | None
    kind: str
    reason: str
    at: float
    payload: dict[str, Any]


def event_id_of(event: Any) -> str:
    if not isinstance(event, dict):
        raise InvalidInput("event", "must be a JSON object")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise InvalidInput("event.id", "required (a non-empty string)")
    return event_id


def insert_event(
    db: sqlite3.Connection,
    path: str,
    event: dict[str, Any],
    event_id: str,
    *,
    run_id: str | None,
    kind: str,
    sensor: str,
    at: float,
) -> int:
    """Add an event to the outbox within the caller's transaction; returns its seq."""
    if db.execute("SELECT 1 FROM outbox WHERE event_id = ?", (event_id,)).fetchone():
        raise StoreError(f"{path}: event {event_id} is already in the outbox")
    try:
        payload = dump(event)
    except (TypeError, ValueError) as err:
        raise InvalidInput("event", f"is not JSON-serializable ({err})") from None
    # Built by caliper's builders, as they built it: no sink needs to check it again.
    checked = type(event) is BuiltEvent
    cur = db.execute(
        "INSERT INTO outbox (event_id, run_id, kind, sensor, payload, created_at, checked) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (event_id, run_id, kind, sensor, payload, at, checked),
    )
    return int(cur.lastrowid or 0)


def payload_of(db: sqlite3.Connection, path: str, event_id: str) -> dict[str, Any]:
    """A stored event, whether still in the outbox (any status) or dead-lettered."""
    for table in ("outbox", "dead_letters"):
        row = db.execute(f"SELECT payload FROM {table} WHERE event_id = ?", (event_id,))
        found = row.fetchone()
        if found is not None:
            return json.loads(found[0])
    raise StoreError(f"{path}: event {event_id} of a recorded completion is missing")


def _item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        seq=row["seq"],
        event_id=row["event_id"],
        run_id=row["run_id"],
        kind=row["kind"],
        sensor=row["sensor"],
        payload=json.loads(row["payload"]),
        attempts=row["attempts"],
        claimed_at=row["claimed_at"],
    )


def _ids(event_ids: Iterable[str]) -> list[str]:
    ids = list(event_ids)
    if not all(isinstance(i, str) for i in ids):
        raise InvalidInput("event_ids", "must be strings")
    return ids


def move_to_dead_letters(db: sqlite3.Connection, ids: list[str], reason: str, at: float) -> None:
    """Within the caller's transaction: undelivered events out of the queue, kept for review."""
    for event_id in ids:
        db.execute(
            "INSERT OR REPLACE INTO dead_letters "
            "(event_id, run_id, kind, sensor, payload, reason, at) "
            "SELECT event_id, run_id, kind, sensor, payload, ?, ? FROM outbox "
            "WHERE event_id = ? AND status != 'sent'",
            (str(reason)[:2000], at, event_id),
        )
        db.execute("DELETE FROM outbox WHERE event_id = ? AND status != 'sent'", (event_id,))


class OutboxStore(Database):
    """The outbox's operations on the store's connection."""

    def enqueue(self, event: dict[str, Any], *, run_id: str | None, kind: str, sensor: str) -> int:
        """Put one event in the outbox; returns its sequence number."""
        event_id = event_id_of(event)
        kind = require_text(kind, "kind", 50)
        sensor = require_text(sensor, "sensor", 2000)
        with self._write() as db:
            return insert_event(
                db, self.path, event, event_id,
                run_id=run_id, kind=kind, sensor=sensor, at=self._now(),
            )  # fmt: skip

    def claim_batch(self, limit: int) -> list[OutboxItem]:
        """The oldest pending events sharing the first one's sensor, marked inflight.

        Marked and committed before returning: after a crash they are found by
        :meth:`inflight`, never silently sent twice or forgotten.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("limit", f"must be an integer >= 1, got {limit!r}")
        with self._write() as db:
            first = db.execute(
                "SELECT sensor FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT 1"
            ).fetchone()
            if first is None:
                return []
            sensor = first[0]
            rows = db.execute(
                "SELECT seq, event_id, run_id, kind, payload, attempts FROM outbox "
                "WHERE status = 'pending' AND sensor = ? ORDER BY seq LIMIT ?",
                (sensor, limit),
            ).fetchall()
            now = self._now()
            # One statement for the whole batch (the drainer runs on the event loop): within
            # this write transaction the rows selected are exactly the pending ones of this
            # sensor up to the last seq read.
            db.execute(
                "UPDATE outbox SET status = 'inflight', attempts = attempts + 1, "
                "claimed_at = ?, job_id = NULL "
                "WHERE status = 'pending' AND sensor = ? AND seq <= ?",
                (now, sensor, rows[-1][0]),
            )
        # Parsed after the commit: the store's lock is not held for it.
        loads = json.loads
        return [
            OutboxItem(seq, event_id, run_id, kind, sensor, loads(payload), attempts + 1, now)
            for seq, event_id, run_id, kind, payload, attempts in rows
        ]

    def pending_batch(self, limit: int) -> list[OutboxItem]:
        """What :meth:`claim_batch` would claim, read without marking it: for a sink whose
        accepting has no effect outside this store (the local sink), where a crash before the
        ack only means the same events are checked again. One short read instead of a write
        transaction on the event loop."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("limit", f"must be an integer >= 1, got {limit!r}")
        with self._lock:
            db = self._db
            try:
                rows = db.execute(
                    "SELECT seq, event_id, run_id, kind, sensor, payload, attempts FROM outbox "
                    + _FIRST_SENSORS_PENDING,
                    (limit,),
                ).fetchall()
            except sqlite3.Error as err:
                raise StoreError(explain(err, self.path)) from None
        loads = json.loads
        return [
            OutboxItem(seq, event_id, run_id, kind, sensor, loads(payload), attempts, None)
            for seq, event_id, run_id, kind, sensor, payload, attempts in rows
        ]

    def stored_batch(self, limit: int) -> StoredBatch | None:
        """The batch :meth:`pending_batch` reads, as stored: no payload parsed (most need no
        parse: see :class:`StoredBatch`). None when nothing is pending."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("limit", f"must be an integer >= 1, got {limit!r}")
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT event_id, sensor, payload, checked FROM outbox "
                    + _FIRST_SENSORS_PENDING,
                    (limit,),
                ).fetchall()
            except sqlite3.Error as err:
                raise StoreError(explain(err, self.path)) from None
        if not rows:
            return None
        ids, _, texts, checked = (list(c) for c in zip(*rows, strict=True))
        unchecked = [i for i, ok in enumerate(checked) if not ok]
        return StoredBatch(rows[0][1], ids, texts, unchecked)

    def inflight(self) -> list[OutboxItem]:
        """Claimed events no job of Timeback's carries yet: being sent, or sent with an
        unknown outcome (a timeout, a crash mid-send). Those with a job are in :meth:`jobs_pending`.
        """
        rows = self._read(
            "SELECT * FROM outbox WHERE status = 'inflight' AND job_id IS NULL ORDER BY seq"
        )
        return [_item(row) for row in rows]

    def ack(self, event_ids: Iterable[str]) -> None:
        ids = _ids(event_ids)
        now = self._now()
        with self._write() as db:
            # A statement per chunk, not per event: a batch's ack runs on the event loop.
            for k in range(0, len(ids), CHUNK):
                chunk = ids[k : k + CHUNK]
                db.execute(
                    "UPDATE outbox SET status = 'sent', sent_at = ?, last_error = NULL "
                    f"WHERE status != 'sent' AND event_id IN ({', '.join('?' * len(chunk))})",
                    (now, *chunk),
                )

    def release(self, event_ids: Iterable[str], error: str) -> None:
        """Back to pending after a failed attempt. The seq is kept, so order is too.

        An event a pending job of Timeback's carries is left alone: that job may still store
        it, and sending it again would store it twice (:meth:`job_failed` releases those).
        """
        ids = _ids(event_ids)
        with self._write() as db:
            db.executemany(
                "UPDATE outbox SET status = 'pending', last_error = ? "
                "WHERE event_id = ? AND status = 'inflight' AND job_id IS NULL",
                [(str(error)[:2000], i) for i in ids],
            )

    def dead_letter(self, event_ids: Iterable[str], reason: str) -> None:
        """Move events that can never be delivered out of the queue, keeping them for review."""
        ids = _ids(event_ids)
        with self._write() as db:
            move_to_dead_letters(db, ids, reason, self._now())

    def depth(self) -> int:
        rows = self._read("SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'inflight')")
        return int(rows[0][0])

    def dead_letters(self) -> list[DeadLetter]:
        return list(self.iter_dead_letters())

    # ---- reading everything, a page at a time -------------------------------------------
    #
    # A store keeps weeks of events: reading them all into a list would hold hundreds of
    # megabytes, and the store's lock for the whole read. Each page is one short read.

    def iter_dead_letters(self, *, page: int = PAGE) -> Iterator[DeadLetter]:
        """Dead letters in the order they were set aside, read ``page`` rows at a time."""
        after = (float("-inf"), 0)
        while True:
            rows = self._read(
                "SELECT rowid, * FROM dead_letters WHERE (at, rowid) > (?, ?) "
                "ORDER BY at, rowid LIMIT ?",
                (*after, page),
            )
            for row in rows:
                yield DeadLetter(
                    event_id=row["event_id"],
                    run_id=row["run_id"],
                    kind=row["kind"],
                    reason=row["reason"],
                    at=row["at"],
                    payload=json.loads(row["payload"]),
                )
            if len(rows) < page:
                return
            after = (rows[-1]["at"], rows[-1]["rowid"])

    def events(self, *, status: str | None = None, page: int = PAGE) -> Iterator[dict[str, Any]]:
        """Outbox payloads in seq order, optionally of one status, read ``page`` at a time."""
        if status is not None and status not in OUTBOX_STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(OUTBOX_STATUSES)}")
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise InvalidInput("page", f"must be an integer >= 1, got {page!r}")
        return self._pages(status, page)

    def _pages(self, status: str | None, page: int) -> Iterator[dict[str, Any]]:
        where = "" if status is None else " AND status = ?"
        extra = () if status is None else (status,)
        after = 0
        while True:
            rows = self._read(
                f"SELECT seq, payload FROM outbox WHERE seq > ?{where} ORDER BY seq LIMIT ?",
                (after, *extra, page),
            )
            for row in rows:
                yield json.loads(row[1])
            if len(rows) < page:
                return
            after = rows[-1][0]

    def export_jsonl(self, fp: IO[str]) -> int:
        """Every stored event, one JSON object per line: the outbox in seq order (sent,
        pending and inflight alike), then dead letters. Returns the number of lines.

        Streamed: a page of rows in memory at a time, written as it is read."""
        count = 0
        for event in self.events():
            fp.write(json.dumps(event, separators=(",", ":")) + "\n")
            count += 1
        for letter in self.iter_dead_letters():
            fp.write(json.dumps(letter.payload, separators=(",", ":")) + "\n")
            count += 1
        return count

    def stats(self) -> dict[str, Any]:
        counts = {status: 0 for status in OUTBOX_STATUSES}
        for row in self._read("SELECT status, COUNT(*) FROM outbox GROUP BY status"):
            counts[row[0]] = int(row[1])
        dead = int(self._read("SELECT COUNT(*) FROM dead_letters")[0][0])
        runs = int(self._read("SELECT COUNT(*) FROM runs")[0][0])
        oldest = self._read(
            "SELECT MIN(created_at) FROM outbox WHERE status IN ('pending', 'inflight')"
        )[0][0]
        return {
            "pending": counts["pending"],
            "inflight": counts["inflight"],
            "sent": counts["sent"],
            "dead": dead,
            "runs": runs,
            "oldest_pending_age": None if oldest is None else max(0.0, self._now() - oldest),
        }
