"""What a completion claims, checked against what the run recorded before anything is written.

The kernel's button enforces its ``require`` rule and ``min_active_minutes`` too, but a kernel is
the student's: the server checks them again from the run's recorded exercises and focused time.
A malformed value is an :class:`InvalidInput` (400); a claim the record contradicts is an
:class:`Implausible` (409). The totals themselves are checked by :func:`..xp.questions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model import (
    REQUIREMENTS,
    Completion,
    InvalidInput,
    Requirement,
    Run,
    optional_number,
    require_number,
)
from ..xp import Implausible, Questions, XpPolicy, award_xp, questions


def _listing(ids: list[str], limit: int = 3) -> str:
    shown = ", ".join(ids[:limit])
    return shown if len(ids) <= limit else f"{shown} and {len(ids) - limit} more"


def requirement(value: Any) -> Requirement:
    if value is None:
        return "nothing"
    if value not in REQUIREMENTS:
        raise InvalidInput("require", f"must be one of {', '.join(REQUIREMENTS)}, got {value!r}")
    return value  # type: ignore[no-any-return]


def check_requirement(
    require: Requirement,
    exercises: Mapping[str, bool],
    asked: Questions,
    *,
    min_active_minutes: Any,
    active_seconds: float,
) -> None:
    """Refuse (Implausible) a completion the button's rule would not allow, from the record."""
    recorded = len(exercises)
    unrecorded = asked.total - recorded
    if require in ("attempted", "correct") and unrecorded > 0:
        raise Implausible(
            "require",
            f"{require!r}: {recorded} of {asked.total} questions answered in this run; "
            f"answer the other {unrecorded} first",
        )
    wrong = [i for i, ok in exercises.items() if ok is not True]
    if require == "correct" and wrong:
        raise Implausible("require", f"'correct': get {_listing(wrong)} right first")
    minimum = optional_number(min_active_minutes, "min_active_minutes")
    if minimum and active_seconds < minimum * 60.0:
        raise Implausible(
            "min_active_minutes",
            f"{minimum:g} focused minutes needed, {active_seconds / 60.0:.1f} recorded: "
            "keep working",
        )


def check_metrics(
    asked: Questions, *, mastered_units: Any, pct_complete: Any, without_questions: bool
) -> None:
    """Mastered units and percent complete within range."""
    if pct_complete is not None and require_number(pct_complete, "pct_complete") > 100:
        raise InvalidInput("pct_complete", f"must be 0 to 100, got {pct_complete!r}")
    units = optional_number(mastered_units, "mastered_units", integer=True)
    if not units:
        return
    if asked.total and units > asked.total:
        raise Implausible(
            "mastered_units",
            f"{units} units mastered, but the run has only {asked.total} "
            f"question{'s' if asked.total != 1 else ''} to show it",
        )
    if not asked.total and not without_questions:
        raise Implausible(
            "mastered_units",
            f"{units} units mastered, but no questions were recorded to verify mastery",
        )


def completion_for(
    run: Run,
    now: float,
    policy: XpPolicy,
    *,
    xp_earned: Any = None,
    total_questions: Any = None,
    correct_questions: Any = None,
    mastered_units: Any = None,
    pct_complete: Any = None,
    require: Any = None,
    min_active_minutes: Any = None,
) -> Completion:
    """The run's completion from a claim: checked against its record, its XP awarded by the
    policy (the outcome kept with it). InvalidInput (400) or Implausible (409) refuses it."""
    activity = run.activity
    asked = questions(run.exercises, total_questions, correct_questions)
    check_requirement(
        requirement(require),
        run.exercises,
        asked,
        min_active_minutes=min_active_minutes,
        active_seconds=run.active_seconds,
    )
    check_metrics(
        asked,
        mastered_units=mastered_units,
        pct_complete=pct_complete,
        without_questions=activity.xp_without_questions,
    )
    outcome = award_xp(
        expected_xp=activity.xp,
        mastery_threshold=activity.mastery_threshold,
        exercises=run.exercises,
        total_questions=total_questions,
        correct_questions=correct_questions,
        attempt=run.attempt,
        focused_seconds=run.active_seconds,
        xp_without_questions=activity.xp_without_questions,
        claim=xp_earned,
        policy=policy,
    )
    # the recorded exercises are the questions unless the caller says more
    counted = total_questions is not None or correct_questions is not None or asked.total > 0
    return Completion(
        run_id=run.id,
        xp_earned=outcome.awarded,
        at=now,
        total_questions=asked.total if counted else None,
        correct_questions=asked.correct if counted else None,
        mastered_units=mastered_units,
        pct_complete=pct_complete,
        xp_outcome=outcome.to_dict(),
    )
