"""The relay's rules for one event, inside the envelope's transaction.

For each event: the same (user, id) again is a duplicate or a conflict; an event not of our
shape, from the future, of a course or activity the catalog does not hold (as configured), or of
a run that belongs to another activity is refused with its reason; a TimeSpentEvent forwards
only the active seconds that fit in the free part of its window (the rest is cut, recorded); a
completion is the run's only one and earns what ``xp.award_xp`` gives from the catalog. The
accepted event is rebuilt with the hub user's actor and the catalog's object and queued in the
relay's outbox in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from .. import caliper
from ..caliper import Actor
from ..config import Course
from ..model import Activity, Completion, InvalidInput, Window
from ..xp import XpOutcome, XpPolicy, award_xp
from . import incoming, outbox, spans
from . import statements as sql
from .catalog import Catalog
from .incoming import KIND_COMPLETION, KIND_TIME, Incoming

# Columns of ``received`` an outcome may leave empty (one INSERT shape for all of them).
_RECEIVED_OPTIONAL = ("reason", "run_id", "active_seconds", "cut_seconds", "xp")

UnknownActivity = Literal["zero", "refuse"]
# No stored span is longer than this (max_window is capped at it): the lookback of the query
# for the spans a new window may meet.
MAX_SPAN_MS = 600_000
NOT_IN_CATALOG = "not_in_catalog"


@dataclass(frozen=True)
class Rules:
    catalog: Catalog
    policy: XpPolicy
    unknown_activity: UnknownActivity
    sensor: str | None
    max_window_ms: int
    future_skew: float


@dataclass
class Turn:
    """One envelope's transaction: who sent it and when the relay took it."""

    conn: sa.Connection
    user: str
    actor: Actor
    now: float


def lock_user(conn: sa.Connection, name: str, now: float) -> None:
    """Lock (PostgreSQL: FOR UPDATE) the user's row, made on first sight: one user's events
    are placed one transaction at a time, whichever relay process takes them.

    Two processes seeing a new user at once both find no row; the second insert waits for the
    first's commit and does nothing, and the lock taken again then holds the row the first made.
    """
    if conn.execute(sql.LOCK_USER, {"p_user": name}).first() is None:
        conn.execute(
            sql.INSERT_USER[conn.dialect.name],
            {"name": name, "first_seen": now, "active_ms": 0, "cut_ms": 0},
        )
        conn.execute(sql.LOCK_USER, {"p_user": name}).one()


def _store(turn: Turn, key: str, sent: str, digest: str, kind: str, **values: Any) -> None:
    row = dict.fromkeys(_RECEIVED_OPTIONAL)
    row.update(values)
    row.update(
        key=key, user_name=turn.user, event_id=sent, body_sha256=digest, kind=kind, at=turn.now
    )
    turn.conn.execute(sql.INSERT_RECEIVED, row)


def apply(rules: Rules, turn: Turn, event: Any) -> dict[str, Any]:
    """The outcome of one event: ``{"id", "status", "reason"?, "cut_seconds"?, "xp"?}``."""
    sent = incoming.sent_id(event)
    if sent is None:
        return {"id": None, "status": "refused", "reason": "event.id: required (an IRI)"}
    key = incoming.stored_id(turn.user, sent)
    digest = incoming.body_hash(event)
    seen = turn.conn.execute(sql.SEEN, {"p_key": key}).first()
    if seen is not None:
        if seen.body_sha256 != digest:
            return {
                "id": sent,
                "status": "refused",
                "reason": "conflicts with an event already received under this id",
            }
        out = {"id": sent, "status": "duplicate", "first": seen.status}
        if seen.reason:
            out["reason"] = seen.reason
        return out
    kind = event.get("type") if isinstance(event.get("type"), str) else "?"
    problem = incoming.shape_problem(event)
    try:
        if problem is not None:
            raise InvalidInput("event", problem)
        parsed = incoming.read(event)
        # A savepoint: a refusal found halfway (totals that contradict each other) leaves
        # nothing of the event behind (no run counted, no span placed).
        with turn.conn.begin_nested():
            return _accept(rules, turn, key, sent, digest, parsed)
    except InvalidInput as err:
        reason = str(err)
        _store(turn, key, sent, digest, kind[:40], status="refused", reason=reason)
        return {"id": sent, "status": "refused", "reason": reason}


def _activity(rules: Rules, parsed: Incoming) -> tuple[Course, Activity, bool]:
    """The catalog's course and activity of the event; False when the activity is unlisted."""
    course = rules.catalog.course(parsed.course)
    if course is None:
        raise InvalidInput(
            "object.course", f"course {parsed.course.name!r} is not in the school's catalog"
        )
    listed = rules.catalog.find(parsed.course, parsed.slug)
    if listed is not None:
        return course, listed.activity(parsed.course), True
    if rules.unknown_activity == "refuse":
        raise InvalidInput(
            "object.activity",
            f"activity {parsed.slug!r} is not in the school's catalog ({course.name})",
        )
    return course, Activity(parsed.slug, parsed.activity_name, parsed.course), False


@dataclass(frozen=True)
class RunSeen:
    attempt: int
    active_ms: int


def _run(turn: Turn, parsed: Incoming, course: Course) -> RunSeen:
    """The relay's view of the run, recorded at its first event (the attempt counted here)."""
    keys = {"p_user": turn.user, "p_run": parsed.run_id}
    row = turn.conn.execute(sql.RUN, keys).first()
    if row is not None:
        if (row.course, row.activity) != (course.name, parsed.slug):
            raise InvalidInput(
                "extensions.runId",
                f"run {parsed.run_id} is a run of {row.activity!r} ({row.course}), not of "
                f"{parsed.slug!r} ({course.name})",
            )
        return RunSeen(row.attempt, row.active_ms)
    before = turn.conn.execute(
        sql.RUNS_OF_ACTIVITY,
        {"p_user": turn.user, "p_course": course.name, "p_activity": parsed.slug},
    ).scalar_one()
    attempt = int(before) + 1
    turn.conn.execute(
        sql.INSERT_RUN,
        {
            "user_name": turn.user,
            "run_id": parsed.run_id,
            "course": course.name,
            "activity": parsed.slug,
            "attempt": attempt,
            "first_seen": turn.now,
            "active_ms": 0,
            "cut_ms": 0,
        },
    )
    return RunSeen(attempt, 0)


def _accept(
    rules: Rules, turn: Turn, key: str, sent: str, digest: str, parsed: Incoming
) -> dict[str, Any]:
    if parsed.at > turn.now + rules.future_skew:
        raise InvalidInput(
            "eventTime",
            f"is {parsed.at - turn.now:.0f} s ahead of the relay's clock (more than the "
            f"{rules.future_skew:g} s a clock may be off): an event from the future",
        )
    course, activity, listed = _activity(rules, parsed)
    target = rules.catalog.target(course, activity)
    if parsed.kind == KIND_COMPLETION:
        done = turn.conn.execute(
            sql.COMPLETION_OF_RUN, {"p_user": turn.user, "p_run": parsed.run_id}
        ).first()
        if done is not None:
            raise InvalidInput(
                "extensions.runId", f"run {parsed.run_id} is already completed (one per run)"
            )
    run = _run(turn, parsed, course)
    if parsed.kind == KIND_TIME:
        return _time_spent(rules, turn, key, sent, digest, parsed, target)
    return _completion(rules, turn, key, sent, digest, parsed, target, run, listed)


def _sensor(rules: Rules, target: caliper.Target) -> str:
    return rules.sensor or target.sensor


def _time_spent(
    rules: Rules,
    turn: Turn,
    key: str,
    sent: str,
    digest: str,
    parsed: Incoming,
    target: caliper.Target,
) -> dict[str, Any]:
    active_ms = round(parsed.active * 1000)
    inactive_ms = round(parsed.inactive * 1000)
    hi = round(parsed.at * 1000)
    length = min(active_ms + inactive_ms, rules.max_window_ms)
    lo = hi - length
    busy = turn.conn.execute(
        sql.SPANS_NEAR, {"p_user": turn.user, "p_lo": lo, "p_hi": hi, "p_longest": MAX_SPAN_MS}
    ).all()
    placed = spans.place([(b.start_ms, b.end_ms) for b in busy], lo, hi, min(active_ms, length))
    forwarded = sum(end - start for start, end in placed)
    cut = active_ms - forwarded
    if placed:
        turn.conn.execute(
            sql.INSERT_SPAN,
            [
                {"user_name": turn.user, "start_ms": start, "end_ms": end, "event_key": key}
                for start, end in placed
            ],
        )
    _add_time(turn, parsed.run_id, forwarded, cut)
    inactive_fwd = min(inactive_ms, length - forwarded)
    if forwarded or inactive_fwd:
        window = Window(parsed.run_id, lo / 1000, hi / 1000, forwarded / 1000, inactive_fwd / 1000)
        event = caliper.time_spent_event(window, parsed.run_id, turn.actor, target, event_id=key)
        outbox.enqueue(
            turn.conn,
            event,
            user=turn.user,
            run_id=parsed.run_id,
            kind=KIND_TIME,
            sensor=_sensor(rules, target),
            at=turn.now,
        )
    reason = None
    if cut:
        reason = f"{cut / 1000:g} s of its {active_ms / 1000:g} s active cut: " + (
            "already counted for this user in the same interval (another server or run)"
            if active_ms <= length
            else f"a window is at most {rules.max_window_ms / 1000:g} s"
        )
    _store(
        turn,
        key,
        sent,
        digest,
        KIND_TIME,
        status="accepted",
        reason=reason,
        run_id=parsed.run_id,
        active_seconds=forwarded / 1000,
        cut_seconds=cut / 1000,
    )
    out: dict[str, Any] = {"id": sent, "status": "accepted", "cut_seconds": cut / 1000}
    if reason:
        out["reason"] = reason
    return out


def _add_time(turn: Turn, run_id: str, forwarded: int, cut: int) -> None:
    if not (forwarded or cut):
        return
    added = {"p_user": turn.user, "p_active": forwarded, "p_cut": cut}
    turn.conn.execute(sql.ADD_RUN_TIME, {**added, "p_run": run_id})
    turn.conn.execute(sql.ADD_USER_TIME, added)


def _outcome(
    rules: Rules, parsed: Incoming, activity: Activity, run: RunSeen, listed: bool
) -> XpOutcome:
    if not listed:
        return XpOutcome(
            awarded=0.0,
            rule=NOT_IN_CATALOG,
            reasons=(
                f"0 XP: activity {activity.id!r} is not in the school's catalog "
                f"({activity.course.name})",
            ),
        )
    return award_xp(
        expected_xp=activity.xp,
        mastery_threshold=activity.mastery_threshold,
        total_questions=parsed.metrics.get("totalQuestions"),
        correct_questions=parsed.metrics.get("correctQuestions"),
        attempt=run.attempt,
        focused_seconds=run.active_ms / 1000,
        xp_without_questions=activity.xp_without_questions,
        policy=rules.policy,
    )


def _completion(
    rules: Rules,
    turn: Turn,
    key: str,
    sent: str,
    digest: str,
    parsed: Incoming,
    target: caliper.Target,
    run: RunSeen,
    listed: bool,
) -> dict[str, Any]:
    outcome = _outcome(rules, parsed, target.activity, run, listed)
    metrics = parsed.metrics
    completion = Completion(
        parsed.run_id,
        outcome.awarded,
        parsed.at,
        total_questions=metrics.get("totalQuestions"),  # type: ignore[arg-type]
        correct_questions=metrics.get("correctQuestions"),  # type: ignore[arg-type]
        mastered_units=metrics.get("masteredUnits"),  # type: ignore[arg-type]
        pct_complete=parsed.pct_complete,
        xp_outcome=outcome.to_dict(),
    )
    event = caliper.completion_event(
        completion, parsed.run_id, run.attempt, turn.actor, target, event_id=key
    )
    turn.conn.execute(
        sql.INSERT_COMPLETION,
        {
            "user_name": turn.user,
            "run_id": parsed.run_id,
            "event_key": key,
            "xp": outcome.awarded,
            "outcome": {**outcome.to_dict(), "attempt": run.attempt},
            "at": turn.now,
        },
    )
    outbox.enqueue(
        turn.conn,
        event,
        user=turn.user,
        run_id=parsed.run_id,
        kind=KIND_COMPLETION,
        sensor=_sensor(rules, target),
        at=turn.now,
    )
    reason = outcome.reasons[0]
    _store(
        turn,
        key,
        sent,
        digest,
        KIND_COMPLETION,
        status="accepted",
        reason=reason,
        run_id=parsed.run_id,
        xp=outcome.awarded,
    )
    return {"id": sent, "status": "accepted", "xp": outcome.awarded, "reason": reason}
