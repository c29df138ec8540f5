"""One ingest transaction's view of its users' rows: read in a few set-based statements, changed
in memory by the rules, written back in a few more.

Per event the rules need what was received under its id, its run, whether the run is completed
and the user's spans near its window; they write a received row, spans, time on the run and the
user, a completion and an outbox row. Asked and written one statement at a time that is a dozen
round trips per event, each costing SQLAlchemy, the driver and the database a few hundred
microseconds of CPU: most of the relay's cost per event. Here a batch of envelopes reads all of
it with four statements (:meth:`BatchState.load`) after locking its users, and writes it with one
statement in all on PostgreSQL (:meth:`BatchState.flush`: each table's rows as one JSON text),
one executemany per table on SQLite.

Sound because every row read belongs to a user whose ``hub_users`` row this transaction holds
(``FOR UPDATE`` on PostgreSQL; SQLite has one writer): no other relay process can change them
until the commit, and the rules see their own earlier events of the batch through the cache.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import schema
from . import statements as sql
from .spans import Span

# Spans are read for the whole batch at once when its windows lie within this many ms of each
# other (heartbeats sent now); a batch replaying old windows reads per user instead, so one
# backlog never pulls hours of every other user's spans.
SHARED_RANGE_MS = 3_600_000


@dataclass
class Seen:
    body_sha256: str
    status: str
    reason: str | None


@dataclass
class RunRow:
    course: str
    activity: str
    attempt: int
    active_ms: int
    cut_ms: int
    new: bool  # not in the database yet: inserted at flush with its totals
    added_active: int = 0  # of an existing run, added by this batch
    added_cut: int = 0


@dataclass(frozen=True)
class Want:
    """What one event may read: filled in before the transaction, from the parsed event."""

    user: str
    key: str
    run_id: str | None = None
    lo: int | None = None  # the window's earliest possible start, ms (time events only)
    hi: int | None = None


def lock_users(conn: sa.Connection, names: Iterable[str], now: float) -> None:
    """Lock (PostgreSQL: FOR UPDATE) the users' rows, made on first sight, in name order: two
    relay processes never wait on each other in a ring. One statement for the users seen
    before; the new ones are inserted (in order) and locked then.

    Two processes seeing a new user at once both find no row; the second insert waits for the
    first's commit and does nothing, and the lock taken again then holds the row the first made.
    """
    wanted = sorted(set(names))
    if not wanted:
        return
    held = {
        row.name for row in conn.execute(sql.LOCK_USERS[conn.dialect.name], {"p_users": wanted})
    }
    missing = [name for name in wanted if name not in held]
    if not missing:
        return
    insert = sql.INSERT_USER[conn.dialect.name]
    for name in missing:  # one by one, in order: see above
        conn.execute(insert, {"name": name, "first_seen": now, "active_ms": 0, "cut_ms": 0})
    locked = {
        row.name for row in conn.execute(sql.LOCK_USERS[conn.dialect.name], {"p_users": missing})
    }
    if locked != set(missing):  # never: the insert made them or waited for who did
        raise RuntimeError(f"hub users not found after their insert: {set(missing) - locked}")


class BatchState:
    """The rows of one transaction's users; the rules read and change them here."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self._seen: dict[str, Seen] = {}
        self._runs: dict[tuple[str, str], RunRow] = {}
        self._done: set[tuple[str, str]] = set()
        self._spans: dict[str, list[Span]] = defaultdict(list)
        self._activity_runs: dict[tuple[str, str, str], int] = {}
        self._user_time: dict[str, list[int]] = {}
        self.received: list[dict[str, Any]] = []
        self.new_spans: list[dict[str, Any]] = []
        self.completions: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []

    # ---- reading ------------------------------------------------------------------------------

    def load(self, wants: list[Want], longest_ms: int) -> None:
        """Everything the events of ``wants`` may read: one statement on PostgreSQL, four on
        SQLite (a few more for a batch whose windows are far apart)."""
        keys = sorted({w.key for w in wants})
        users = sorted({w.user for w in wants})
        run_ids = sorted({w.run_id for w in wants if w.run_id})
        pairs = {(w.user, w.run_id) for w in wants if w.run_id}
        windows = [w for w in wants if w.lo is not None and w.hi is not None]
        shared: tuple[list[str], int, int] | None = None
        if windows:
            lo = min(w.lo for w in windows)  # type: ignore[type-var]
            hi = max(w.hi for w in windows)  # type: ignore[type-var]
            if hi - lo <= SHARED_RANGE_MS:
                shared = (sorted({w.user for w in windows}), lo, hi)
        if self.conn.dialect.name == "postgresql":
            self._load_pg(keys, users, run_ids, pairs, shared, longest_ms)
        else:
            self._load_each(keys, users, run_ids, pairs)
            if shared is not None:
                self._read_spans(*shared, longest_ms)
        if windows and shared is None:
            for user in sorted({w.user for w in windows}):
                mine = [w for w in windows if w.user == user]
                lo_u = min(w.lo for w in mine)  # type: ignore[type-var]
                hi_u = max(w.hi for w in mine)  # type: ignore[type-var]
                self._read_spans([user], lo_u, hi_u, longest_ms)

    def _load_each(
        self, keys: list[str], users: list[str], run_ids: list[str], pairs: set[tuple[str, str]]
    ) -> None:
        conn = self.conn
        for row in conn.execute(sql.SEEN_MANY[conn.dialect.name], {"p_keys": keys}) if keys else ():
            self._seen[row.key] = Seen(row.body_sha256, row.status, row.reason)
        if not run_ids:
            return
        params = {"p_users": users, "p_runs": run_ids}
        for row in conn.execute(sql.RUNS_MANY[conn.dialect.name], params):
            if (row.user_name, row.run_id) in pairs:
                self._runs[(row.user_name, row.run_id)] = RunRow(
                    row.course, row.activity, row.attempt, row.active_ms, row.cut_ms, False
                )
        done = conn.execute(sql.COMPLETIONS_MANY[conn.dialect.name], params)
        self._done.update((row.user_name, row.run_id) for row in done)

    def _load_pg(
        self,
        keys: list[str],
        users: list[str],
        run_ids: list[str],
        pairs: set[tuple[str, str]],
        shared: tuple[list[str], int, int] | None,
        longest_ms: int,
    ) -> None:
        """The four reads as one statement (:data:`.statements.READ_BATCH`), lists in and rows
        out as JSON: a round trip and a statement's overhead instead of four, and no list
        through psycopg's Python array dumper."""
        span_users, lo, hi = shared if shared is not None else ([], 0, 0)
        params = {"keys": _dumps(keys), "users": _dumps(users), "runs": _dumps(run_ids),
                  "span_users": _dumps(span_users), "lo": lo, "hi": hi,
                  "longest": longest_ms}  # fmt: skip
        seen, found, done, near = self.conn.exec_driver_sql(sql.READ_BATCH, params).one()
        for key, digest, status, reason in seen or ():
            self._seen[key] = Seen(digest, status, reason)
        for user, run_id, course, activity, attempt, active_ms, cut_ms in found or ():
            if (user, run_id) in pairs:
                self._runs[(user, run_id)] = RunRow(
                    course, activity, attempt, active_ms, cut_ms, False
                )
        self._done.update((user, run_id) for user, run_id in done or ())
        for user, start, end in near or ():
            self._spans[user].append((start, end))

    def _read_spans(self, users: list[str], lo: int, hi: int, longest_ms: int) -> None:
        params = {"p_users": users, "p_lo": lo, "p_hi": hi, "p_longest": longest_ms}
        for row in self.conn.execute(sql.SPANS_NEAR_MANY[self.conn.dialect.name], params):
            self._spans[row.user_name].append((row.start_ms, row.end_ms))

    def seen(self, key: str) -> Seen | None:
        return self._seen.get(key)

    def run(self, user: str, run_id: str) -> RunRow | None:
        return self._runs.get((user, run_id))

    def completed(self, user: str, run_id: str) -> bool:
        return (user, run_id) in self._done

    def spans_of(self, user: str) -> list[Span]:
        return self._spans[user]

    def runs_of_activity(self, user: str, course: str, activity: str) -> int:
        """How many runs of the activity the user has, this batch's new ones included."""
        key = (user, course, activity)
        if key not in self._activity_runs:
            params = {"p_user": user, "p_course": course, "p_activity": activity}
            counted = self.conn.execute(sql.RUNS_OF_ACTIVITY, params).scalar_one()
            self._activity_runs[key] = int(counted)  # new runs of the batch: see new_run
        return self._activity_runs[key]

    # ---- changing -----------------------------------------------------------------------------

    def receive(self, row: dict[str, Any]) -> None:
        self.received.append(row)
        self._seen[row["key"]] = Seen(row["body_sha256"], row["status"], row["reason"])

    def new_run(self, user: str, run_id: str, course: str, activity: str, attempt: int) -> None:
        before = self.runs_of_activity(user, course, activity)
        self._runs[(user, run_id)] = RunRow(course, activity, attempt, 0, 0, True)
        self._activity_runs[(user, course, activity)] = before + 1

    def place(self, user: str, key: str, placed: list[Span]) -> None:
        self._spans[user].extend(placed)
        self.new_spans.extend(
            {"user_name": user, "start_ms": start, "end_ms": end, "event_key": key}
            for start, end in placed
        )

    def add_time(self, user: str, run_id: str, active_ms: int, cut_ms: int) -> None:
        run = self._runs[(user, run_id)]
        run.active_ms += active_ms
        run.cut_ms += cut_ms
        if not run.new:
            run.added_active += active_ms
            run.added_cut += cut_ms
        total = self._user_time.setdefault(user, [0, 0])
        total[0] += active_ms
        total[1] += cut_ms

    def complete(self, row: dict[str, Any]) -> None:
        self._done.add((row["user_name"], row["run_id"]))
        self.completions.append(row)

    def enqueue(
        self, event: dict[str, Any], *, user: str, run_id: str, kind: str, sensor: str, at: float
    ) -> None:
        """Queue ``event`` for Timeback (the row ``outbox.enqueue`` writes, written at flush)."""
        self.outbox.append(
            {"event_id": event["id"], "user_name": user, "run_id": run_id, "kind": kind,
             "sensor": sensor, "payload": event, "status": "pending", "attempts": 0,
             "created_at": at}
        )  # fmt: skip

    # ---- writing ------------------------------------------------------------------------------

    def flush(self, now: float) -> None:
        """Every change, one statement per table (none for a table left as it was)."""
        conn = self.conn
        new_runs = [
            {"user_name": user, "run_id": run_id, "course": r.course, "activity": r.activity,
             "attempt": r.attempt, "first_seen": now, "active_ms": r.active_ms,
             "cut_ms": r.cut_ms}
            for (user, run_id), r in self._runs.items() if r.new
        ]  # fmt: skip
        added = [
            {
                "p_user_name": user,
                "p_run_id": run_id,
                "p_active": r.added_active,
                "p_cut": r.added_cut,
            }
            for (user, run_id), r in self._runs.items()
            if not r.new and (r.added_active or r.added_cut)
        ]
        users = [
            {"p_name": user, "p_active": t[0], "p_cut": t[1]}
            for user, t in sorted(self._user_time.items())
            if t[0] or t[1]
        ]
        inserts = [
            (table, rows)
            for table, rows in (
                (schema.runs, new_runs),
                (schema.active_spans, self.new_spans),
                (schema.completions, self.completions),
                (schema.outbox, self.outbox),
                (schema.received, self.received),
            )
            if rows
        ]
        adds = [(t, rows) for t, rows in ((schema.runs, added), (schema.hub_users, users)) if rows]
        if conn.dialect.name == "postgresql":
            _write_pg(conn, inserts, adds)
            return
        for table, rows in inserts:  # SQLite is in-process: executemany, no round trips
            conn.execute(sql.INSERTS[table.name], rows)
        for table, rows in adds:
            conn.execute(sql.ADD_TIME[table.name], rows)


def _write_pg(
    conn: sa.Connection,
    inserts: list[tuple[sa.Table, list[dict[str, Any]]]],
    adds: list[tuple[sa.Table, list[dict[str, Any]]]],
) -> None:
    """Every change of the batch in ONE statement (:func:`.statements.batch_write`): each
    table's rows travel as one JSON text, made by the json module's C encoder and read by
    PostgreSQL's ``json_to_recordset``. Measured before: one statement per table costs
    SQLAlchemy and psycopg ~0.2 ms each, and psycopg's Python array dumper (one array per
    column) was a tenth of the relay's CPU at saturation."""
    if not inserts and not adds:
        return
    text = sql.batch_write(
        tuple((t.name, tuple(rows[0])) for t, rows in inserts), tuple(t.name for t, _ in adds)
    )
    params = {f"w{i}": _dumps(rows) for i, (_, rows) in enumerate(inserts)}
    params.update({f"a{i}": _dumps(rows) for i, (_, rows) in enumerate(adds)})
    conn.exec_driver_sql(text, params)


_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
