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

from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from .. import caliper
from ..caliper import Actor
from ..config import Course
from ..model import Activity, Completion, InvalidInput
from ..xp import XpOutcome, XpPolicy, award_xp
from . import incoming, spans
from .catalog import Catalog
from .incoming import KIND_COMPLETION, KIND_TIME, Incoming
from .state import BatchState, Want, lock_users

# Columns of ``received`` an outcome may leave empty (one INSERT shape for all of them).
_RECEIVED_OPTIONAL = ("reason", "run_id", "active_seconds", "cut_seconds", "xp")

UnknownActivity = Literal["zero", "refuse"]
# No stored span is longer than this (max_window is capped at it): the lookback of the query
# for the spans a new window may meet.
MAX_SPAN_MS = 600_000
NOT_IN_CATALOG = "not_in_catalog"
MAX_TARGETS = 10_000  # remembered (course, activity, target)s; unlisted names can be many


@dataclass(frozen=True)
class Rules:
    catalog: Catalog
    policy: XpPolicy
    unknown_activity: UnknownActivity
    sensor: str | None
    max_window_ms: int
    future_skew: float
    # The catalog never changes under a relay: an activity's course, Activity and Target are
    # made once (each Target checks its URLs: ~10% of an event's rules, measured).
    targets: dict[tuple[Any, ...], tuple[Course, Activity, bool, caliper.Target]] = field(
        default_factory=dict, compare=False, repr=False
    )


@dataclass
class Turn:
    """One envelope in its batch's transaction: who sent it, when the relay took it, and the
    batch's rows (:class:`.state.BatchState`) the rules read and change."""

    state: BatchState
    user: str
    actor: Actor
    now: float


def lock_user(conn: sa.Connection, name: str, now: float) -> None:
    """Lock one user's row, made on first sight (see :func:`.state.lock_users`)."""
    lock_users(conn, [name], now)


def wants(user: str, events: list[incoming.Prepared], max_window_ms: int) -> list[Want]:
    """What the events may read, for :meth:`.state.BatchState.load`."""
    out = []
    for p in events:
        if p.sent is None:
            continue
        parsed = p.parsed
        if parsed is None:
            out.append(Want(user, p.key))
        elif parsed.kind == KIND_TIME:
            hi = round(parsed.at * 1000)
            out.append(Want(user, p.key, parsed.run_id, hi - max_window_ms, hi))
        else:
            out.append(Want(user, p.key, parsed.run_id))
    return out


def _store(turn: Turn, p: incoming.Prepared, kind: str, **values: Any) -> None:
    row = dict.fromkeys(_RECEIVED_OPTIONAL)
    row.update(values)
    row.update(
        key=p.key, user_name=turn.user, event_id=p.sent, body_sha256=p.digest, kind=kind,
        at=turn.now,
    )  # fmt: skip
    turn.state.receive(row)


def apply(rules: Rules, turn: Turn, p: incoming.Prepared) -> dict[str, Any]:
    """The outcome of one event: ``{"id", "status", "reason"?, "cut_seconds"?, "xp"?}``."""
    sent = p.sent
    if sent is None:
        return {"id": None, "status": "refused", "reason": "event.id: required (an IRI)"}
    seen = turn.state.seen(p.key)
    if seen is not None:
        if seen.body_sha256 != p.digest:
            return {
                "id": sent,
                "status": "refused",
                "reason": "conflicts with an event already received under this id",
            }
        out = {"id": sent, "status": "duplicate", "first": seen.status}
        if seen.reason:
            out["reason"] = seen.reason
        return out
    reason = p.problem
    if reason is None:
        assert p.parsed is not None
        try:
            # Everything that may refuse the event is decided before anything is written:
            # a refusal leaves nothing of it behind (no run counted, no span placed).
            return _accept(rules, turn, p, p.parsed)
        except InvalidInput as err:
            reason = str(err)
    _store(turn, p, p.kind, status="refused", reason=reason)
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


def _target(rules: Rules, parsed: Incoming) -> tuple[Course, Activity, bool, caliper.Target]:
    """:func:`_activity` and the catalog's target, remembered per course, slug and (for an
    unlisted activity, whose name is the event's) name; a refusal is not remembered."""
    key = (parsed.course, parsed.slug, parsed.activity_name)
    found = rules.targets.get(key)
    if found is None:
        course, activity, listed = _activity(rules, parsed)
        found = (course, activity, listed, rules.catalog.target(course, activity))
        if len(rules.targets) >= MAX_TARGETS:
            rules.targets.clear()
        rules.targets[key] = found
    return found


@dataclass(frozen=True)
class RunSeen:
    attempt: int
    active_ms: int
    new: bool  # first seen now: recorded (the attempt counted) when the event is accepted


def _run(turn: Turn, parsed: Incoming, course: Course) -> RunSeen:
    """The relay's view of the run, recorded at its first event (the attempt counted here)."""
    row = turn.state.run(turn.user, parsed.run_id)
    if row is not None:
        if (row.course, row.activity) != (course.name, parsed.slug):
            raise InvalidInput(
                "extensions.runId",
                f"run {parsed.run_id} is a run of {row.activity!r} ({row.course}), not of "
                f"{parsed.slug!r} ({course.name})",
            )
        return RunSeen(row.attempt, row.active_ms, False)
    before = turn.state.runs_of_activity(turn.user, course.name, parsed.slug)
    return RunSeen(before + 1, 0, True)


def _record_run(turn: Turn, parsed: Incoming, course: Course, run: RunSeen) -> None:
    if run.new:
        turn.state.new_run(turn.user, parsed.run_id, course.name, parsed.slug, run.attempt)


def _accept(rules: Rules, turn: Turn, p: incoming.Prepared, parsed: Incoming) -> dict[str, Any]:
    if parsed.at > turn.now + rules.future_skew:
        raise InvalidInput(
            "eventTime",
            f"is {parsed.at - turn.now:.0f} s ahead of the relay's clock (more than the "
            f"{rules.future_skew:g} s a clock may be off): an event from the future",
        )
    course, _, listed, target = _target(rules, parsed)
    if parsed.kind == KIND_COMPLETION and turn.state.completed(turn.user, parsed.run_id):
        raise InvalidInput(
            "extensions.runId", f"run {parsed.run_id} is already completed (one per run)"
        )
    run = _run(turn, parsed, course)
    if parsed.kind == KIND_TIME:
        return _time_spent(rules, turn, p, parsed, target, course, run)
    return _completion(rules, turn, p, parsed, target, course, run, listed)


def _sensor(rules: Rules, target: caliper.Target) -> str:
    return rules.sensor or target.sensor


def _time_spent(
    rules: Rules,
    turn: Turn,
    p: incoming.Prepared,
    parsed: Incoming,
    target: caliper.Target,
    course: Course,
    run: RunSeen,
) -> dict[str, Any]:
    active_ms = round(parsed.active * 1000)
    inactive_ms = round(parsed.inactive * 1000)
    hi = round(parsed.at * 1000)
    length = min(active_ms + inactive_ms, rules.max_window_ms)
    lo = hi - length
    busy = turn.state.spans_of(turn.user)
    placed = spans.place(busy, lo, hi, min(active_ms, length))
    forwarded = sum(end - start for start, end in placed)
    cut = active_ms - forwarded
    inactive_fwd = min(inactive_ms, length - forwarded)
    event = None
    if forwarded or inactive_fwd:
        event = caliper.time_spent_event_ms(
            parsed.run_id, lo, hi, forwarded, inactive_fwd, turn.actor, target, event_id=p.key
        )
    # Nothing refuses the event from here on: its changes are made.
    _record_run(turn, parsed, course, run)
    if placed:
        turn.state.place(turn.user, p.key, placed)
    if forwarded or cut:
        turn.state.add_time(turn.user, parsed.run_id, forwarded, cut)
    if event is not None:
        turn.state.enqueue(
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
        p,
        KIND_TIME,
        status="accepted",
        reason=reason,
        run_id=parsed.run_id,
        active_seconds=forwarded / 1000,
        cut_seconds=cut / 1000,
    )
    out: dict[str, Any] = {"id": p.sent, "status": "accepted", "cut_seconds": cut / 1000}
    if reason:
        out["reason"] = reason
    return out


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
    p: incoming.Prepared,
    parsed: Incoming,
    target: caliper.Target,
    course: Course,
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
        completion, parsed.run_id, run.attempt, turn.actor, target, event_id=p.key
    )
    # Nothing refuses the event from here on: its changes are made.
    _record_run(turn, parsed, course, run)
    turn.state.complete(
        {
            "user_name": turn.user,
            "run_id": parsed.run_id,
            "event_key": p.key,
            "xp": outcome.awarded,
            "outcome": {**outcome.to_dict(), "attempt": run.attempt},
            "at": turn.now,
        }
    )
    turn.state.enqueue(
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
        p,
        KIND_COMPLETION,
        status="accepted",
        reason=reason,
        run_id=parsed.run_id,
        xp=outcome.awarded,
    )
    return {"id": p.sent, "status": "accepted", "xp": outcome.awarded, "reason": reason}
