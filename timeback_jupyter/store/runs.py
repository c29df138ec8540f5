"""Runs, their heartbeat windows and their one completion, each with the event reporting it.

State and the event that reports it go in the same transaction (a window and its
TimeSpentEvent, a completion and its ActivityCompletedEvent): there is no moment where one
exists without the other.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..model import RUN_STATUSES, Activity, Completion, InvalidInput, Run, Window, require_text
from .database import Database, dump
from .errors import StoreError, explain
from .outbox import KIND_COMPLETION, KIND_TIME_SPENT, event_id_of, insert_event, payload_of


def check_windows(
    items: Sequence[tuple[Window, dict[str, Any], str]],
) -> list[tuple[Window, dict[str, Any], str, str]]:
    """Windows with their events and sensors, checked: ``(window, event, event_id, sensor)``."""
    checked = []
    for window, event, sensor in items:
        if not isinstance(window, Window):
            raise InvalidInput("window", "must be a Window")
        event_id = event_id_of(event)
        checked.append((window, event, event_id, require_text(sensor, "sensor", 2000)))
    return checked


def insert_window(
    db: sqlite3.Connection,
    path: str,
    window: Window,
    event: dict[str, Any],
    event_id: str,
    sensor: str,
    at: float,
) -> bool:
    """Within the caller's transaction: the window, its run's totals and its event; False
    (nothing written) for a window already recorded, so a retried flush never counts twice."""
    if not db.execute("SELECT 1 FROM runs WHERE id = ?", (window.run_id,)).fetchone():
        raise StoreError(f"{path}: no run {window.run_id}")
    cur = db.execute(
        'INSERT OR IGNORE INTO windows (run_id, start, "end", active, inactive, event_id) '
        "VALUES (?, ?, ?, ?, ?, ?)",
        (window.run_id, window.start, window.end, window.active, window.inactive, event_id),
    )
    if cur.rowcount == 0:
        return False
    db.execute(
        "UPDATE runs SET active_seconds = active_seconds + ?, "
        "inactive_seconds = inactive_seconds + ?, updated_at = ? WHERE id = ?",
        (window.active, window.inactive, at, window.run_id),
    )
    insert_event(
        db, path, event, event_id, run_id=window.run_id, kind=KIND_TIME_SPENT, sensor=sensor, at=at
    )
    return True


class RunStore(Database):
    """Runs, windows and completions on the store's connection."""

    def insert_run(self, run: Run) -> None:
        """Insert ``run``; StoreError if its id, or its attempt number of the student's
        activity, is taken (a UNIQUE index holds the second rule: see :meth:`insert_attempt`)."""
        if not isinstance(run, Run):
            raise InvalidInput("run", "must be a Run")
        with self._write() as db:
            self._insert(db, run)

    def insert_attempt(self, run: Run) -> Run:
        """Insert ``run`` numbered in the same transaction: its own attempt if no other run of
        the student's activity has it (a notebook from another server keeps its number), else
        the one after the highest. Returns the run as stored.

        Deciding the number and inserting are one ``BEGIN IMMEDIATE`` transaction, so two
        processes on one store cannot both take the same number.
        """
        if not isinstance(run, Run):
            raise InvalidInput("run", "must be a Run")
        with self._write() as db:
            taken = db.execute(
                "SELECT 1 FROM runs WHERE activity_id = ? AND student = ? AND attempt = ?",
                (run.activity.id, run.student, run.attempt),
            ).fetchone()
            if taken:
                highest = db.execute(
                    "SELECT MAX(attempt) FROM runs WHERE activity_id = ? AND student = ?",
                    (run.activity.id, run.student),
                ).fetchone()[0]
                run = replace(run, attempt=int(highest) + 1)
            self._insert(db, run)
        return run

    def _insert(self, db: sqlite3.Connection, run: Run) -> None:
        if db.execute("SELECT 1 FROM runs WHERE id = ?", (run.id,)).fetchone():
            raise StoreError(f"{self.path}: run {run.id} already exists")
        if db.execute(
            "SELECT 1 FROM runs WHERE activity_id = ? AND student = ? AND attempt = ?",
            (run.activity.id, run.student, run.attempt),
        ).fetchone():
            raise StoreError(
                f"{self.path}: attempt {run.attempt} of {run.activity.id} is already a run of "
                "this student (one run per attempt)"
            )
        db.execute(
            "INSERT INTO runs (id, activity_id, activity, student, attempt, status, "
            "started_at, ended_at, active_seconds, inactive_seconds, origin, exercises, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.id,
                run.activity.id,
                dump(run.activity.to_dict()),
                run.student,
                run.attempt,
                run.status,
                run.started_at,
                run.ended_at,
                run.active_seconds,
                run.inactive_seconds,
                run.origin,
                dump(run.exercises),
                self._now(),
            ),
        )

    @staticmethod
    def _run_from_row(row: sqlite3.Row) -> Run:
        return Run(
            id=row["id"],
            activity=Activity.from_dict(json.loads(row["activity"])),
            student=row["student"],
            attempt=row["attempt"],
            status=row["status"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            active_seconds=row["active_seconds"],
            inactive_seconds=row["inactive_seconds"],
            origin=row["origin"],
            exercises=json.loads(row["exercises"]),
        )

    def get_run(self, run_id: str) -> Run | None:
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        return self._run_from_row(rows[0]) if rows else None

    def latest_run(self, activity_id: str, student: str) -> Run | None:
        rows = self._read(
            "SELECT * FROM runs WHERE activity_id = ? AND student = ? "
            "ORDER BY attempt DESC, started_at DESC LIMIT 1",
            (activity_id, student),
        )
        return self._run_from_row(rows[0]) if rows else None

    def list_runs(
        self,
        *,
        activity_id: str | None = None,
        student: str | None = None,
        status: str | None = None,
    ) -> list[Run]:
        if status is not None and status not in RUN_STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(RUN_STATUSES)}")
        where, params = [], []
        for column, value in (
            ("activity_id", activity_id),
            ("student", student),
            ("status", status),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(f"SELECT * FROM runs{clause} ORDER BY started_at, attempt", params)
        return [self._run_from_row(row) for row in rows]

    def open_run_at(self, activity_id: str, student: str, origin: str) -> Run | None:
        """The student's latest run of the activity begun in the notebook at ``origin``, unless
        it is completed: the run to resume when the notebook never got its runId saved.

        Only the latest counts: an older run left open there is not brought back after a newer
        one was completed. The (activity_id, student) index finds the few candidate rows.
        """
        rows = self._read(
            "SELECT * FROM runs WHERE activity_id = ? AND student = ? AND origin = ? "
            "ORDER BY started_at DESC, attempt DESC LIMIT 1",
            (activity_id, student, origin),
        )
        if not rows or rows[0]["status"] == "completed":
            return None
        return self._run_from_row(rows[0])

    def move_run(self, run_id: str, origin: str) -> None:
        """The run's notebook was renamed: ``origin`` follows it (see :meth:`open_run_at`)."""
        with self._write() as db:
            db.execute(
                "UPDATE runs SET origin = ?, updated_at = ? WHERE id = ?",
                (origin, self._now(), run_id),
            )

    def next_attempt(self, activity_id: str, student: str) -> int:
        rows = self._read(
            "SELECT MAX(attempt) FROM runs WHERE activity_id = ? AND student = ?",
            (activity_id, student),
        )
        return (rows[0][0] or 0) + 1

    def set_run_status(self, run_id: str, status: str, at: float) -> None:
        """Move a run to ``status``. Completed is final: only a completion gets there."""
        if status not in RUN_STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(RUN_STATUSES)}")
        if status == "completed":
            raise InvalidInput("status", "a run is completed by record_completion only")
        with self._write() as db:
            row = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"{self.path}: no run {run_id}")
            if row[0] == "completed":
                if status == "ended":
                    return  # ending a finished run (tab closed afterwards) changes nothing
                raise StoreError(f"{self.path}: run {run_id} is completed; start a new attempt")
            ended_at = at if status == "ended" else None
            db.execute(
                "UPDATE runs SET status = ?, ended_at = ?, updated_at = ? WHERE id = ?",
                (status, ended_at, self._now(), run_id),
            )

    def set_exercise(self, run_id: str, exercise_id: str, correct: bool) -> None:
        exercise_id = require_text(exercise_id, "exercise_id", 200)
        if not isinstance(correct, bool):
            raise InvalidInput("correct", f"must be true or false, got {correct!r}")
        with self._write() as db:
            row = db.execute("SELECT exercises FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"{self.path}: no run {run_id}")
            exercises = json.loads(row[0])
            exercises[exercise_id] = correct
            db.execute(
                "UPDATE runs SET exercises = ?, updated_at = ? WHERE id = ?",
                (dump(exercises), self._now(), run_id),
            )

    def record_window(self, window: Window, event: dict[str, Any], sensor: str) -> None:
        """Store a window, add it to its run's totals and enqueue its event, atomically.

        The same ``(run_id, start)`` recorded twice is ignored, so a retried flush never
        counts time twice.
        """
        self.record_windows([(window, event, sensor)])

    def record_windows(self, items: Sequence[tuple[Window, dict[str, Any], str]]) -> None:
        """:meth:`record_window` for several windows in one transaction: all or none.

        Hundreds of notebooks close hundreds of windows a heartbeat apart; a commit each would
        cost more than the windows themselves.
        """
        checked = check_windows(items)
        if not checked:
            return
        with self._write() as db:
            for window, event, event_id, sensor in checked:
                insert_window(db, self.path, window, event, event_id, sensor, self._now())

    def record_completion(
        self, completion: Completion, event: dict[str, Any], sensor: str
    ) -> tuple[bool, dict[str, Any]]:
        """Record a run's one completion: ``(True, event)`` now, ``(False, first event)`` after.

        A second completion changes nothing and sends nothing: Timeback does not deduplicate.
        """
        if not isinstance(completion, Completion):
            raise InvalidInput("completion", "must be a Completion")
        event_id = event_id_of(event)
        sensor = require_text(sensor, "sensor", 2000)
        metrics = {
            "xp_earned": completion.xp_earned,
            "total_questions": completion.total_questions,
            "correct_questions": completion.correct_questions,
            "mastered_units": completion.mastered_units,
            "pct_complete": completion.pct_complete,
            "xp_outcome": completion.xp_outcome,
        }
        with self._write() as db:
            if not db.execute("SELECT 1 FROM runs WHERE id = ?", (completion.run_id,)).fetchone():
                raise StoreError(f"{self.path}: no run {completion.run_id}")
            first = db.execute(
                "SELECT event_id FROM completions WHERE run_id = ?", (completion.run_id,)
            ).fetchone()
            if first is not None:
                return False, payload_of(db, self.path, first[0])
            db.execute(
                "INSERT INTO completions (run_id, event_id, metrics, at) VALUES (?, ?, ?, ?)",
                (completion.run_id, event_id, dump(metrics), completion.at),
            )
            db.execute(
                "UPDATE runs SET status = 'completed', ended_at = ?, updated_at = ? WHERE id = ?",
                (completion.at, self._now(), completion.run_id),
            )
            insert_event(
                db, self.path, event, event_id,
                run_id=completion.run_id, kind=KIND_COMPLETION, sensor=sensor, at=self._now(),
            )  # fmt: skip
        return True, event

    def get_completion(self, run_id: str) -> dict[str, Any] | None:
        """The event of the run's completion, or None while it has none."""
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT event_id FROM completions WHERE run_id = ?", (run_id,)
                ).fetchone()
                return None if row is None else payload_of(self._db, self.path, row[0])
            except sqlite3.Error as err:
                raise StoreError(explain(err, self.path)) from None

    def completion_metrics(self, run_id: str) -> dict[str, Any] | None:
        """What the run's completion recorded beside its event (the XP outcome and its
        reasons), or None while it has none."""
        rows = self._read("SELECT metrics FROM completions WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        data = json.loads(rows[0][0])
        return data if isinstance(data, dict) else None

    def windows(self, run_id: str | None = None) -> list[Window]:
        """Recorded windows in (run, start) order, of one run or of all."""
        sql = 'SELECT run_id, start, "end", active, inactive FROM windows'
        if run_id is None:
            rows = self._read(sql + " ORDER BY run_id, start")
        else:
            rows = self._read(sql + " WHERE run_id = ? ORDER BY start", (run_id,))
        return [Window(*tuple(row)) for row in rows]

    def unsent_time(self, run_id: str) -> tuple[float, float]:
        """Active and inactive seconds of the run's windows whose events are not delivered yet
        (pending or inflight in the outbox)."""
        row = self._read(
            "SELECT COALESCE(SUM(w.active), 0), COALESCE(SUM(w.inactive), 0) FROM windows w "
            "JOIN outbox o ON o.event_id = w.event_id "
            "WHERE w.run_id = ? AND o.status IN ('pending', 'inflight')",
            (run_id,),
        )[0]
        return float(row[0]), float(row[1])

    def time_since(self, student: str, since: float) -> tuple[float, float]:
        """Active and inactive seconds of the student's windows that ended after ``since``."""
        row = self._read(
            "SELECT COALESCE(SUM(w.active), 0), COALESCE(SUM(w.inactive), 0) FROM windows w "
            'JOIN runs r ON r.id = w.run_id WHERE r.student = ? AND w."end" > ?',
            (student, since),
        )[0]
        return float(row[0]), float(row[1])
