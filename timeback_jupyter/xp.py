"""Timeback's XP system as one pure function: what a completed run earns, and why.

Timeback's rules ("XP system" and "Non-negotiables" under about-timeback/concepts):
1 XP = 1 minute of focused learning, but XP is content-intrinsic: each activity has an
*expected XP* its author sets (the minutes a competent person needs: a timed speed-run,
rounded), never taken from how long a student took. What a run earns, in the order
:func:`award_xp` applies it:

- R1 no expected XP declared (``activity.xp``): the old rule, 1 XP per focused minute (a claim
  capped at it); with questions, R3 and R4 gate it first.
- R2 no questions, and the author did not set ``xp_without_questions``: 0, as passive content
  earns XP only once a quiz verifies it.
- R3 accuracy below 80%: 0, whatever the mastery threshold.
- R4 accuracy below the mastery threshold (default 0.9, never below 0.8): 0, not mastered.
- R5 mastered (or verified without questions): the expected XP.
- R6 mastered but wasteful, i.e. more focused minutes than ``wasteful_after`` x the expected XP
  (default 3): ``wasteful_share`` of the expected XP (default 0.5), no bonus.
- R7 mastered, every question right, attempt 1, not wasteful: the expected XP x
  (1 + ``perfect_bonus``) (default 0.25: the 1.25x of Playcademy's Timeback guide).
- R8 an explicit claim: the claim when it is at most what R1-R7 allow, else what they allow;
  never above the policy.

Accuracy comes from the exercises the run recorded; totals given with a completion must agree
with them (:func:`questions`). XP is rounded down to a tenth, so it never overshoots. Every
reduction is a reason in words ("0 XP: 6/10 correct, below 80%"). Gaming (negative XP) is not
detected here. Nothing here knows of Jupyter, the store or the clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import MIN_MASTERY_THRESHOLD, InvalidInput, optional_number, require_number

DEFAULT_MASTERY_THRESHOLD = 0.9  # Timeback's mastery gate: >= 90% accuracy
DEFAULT_PERFECT_BONUS = 0.25  # 1.25x for a perfect first attempt (Playcademy's Timeback guide)
DEFAULT_WASTEFUL_AFTER = 3.0  # more than 3x the expected minutes is wasteful
DEFAULT_WASTEFUL_SHARE = 0.5  # a wasteful mastered run earns half

NO_EXPECTED_XP = "no expected XP declared (activity.xp)"


class Implausible(InvalidInput):
    """A completion's claim that contradicts what the run recorded (answered with 409)."""


@dataclass(frozen=True, slots=True)
class XpPolicy:
    """The configurable knobs (``c.Timeback.xp_*``)."""

    perfect_bonus: float = DEFAULT_PERFECT_BONUS
    wasteful_after: float = DEFAULT_WASTEFUL_AFTER
    wasteful_share: float = DEFAULT_WASTEFUL_SHARE

    def __post_init__(self) -> None:
        if not 0 <= require_number(self.perfect_bonus, "xp_perfect_bonus") <= 1:
            raise InvalidInput("xp_perfect_bonus", "must be between 0 and 1")
        if require_number(self.wasteful_after, "xp_wasteful_after") < 1:
            raise InvalidInput("xp_wasteful_after", "must be at least 1 (the expected minutes)")
        if not 0 <= require_number(self.wasteful_share, "xp_wasteful_share") <= 1:
            raise InvalidInput("xp_wasteful_share", "must be between 0 and 1")


@dataclass(frozen=True, slots=True)
class Questions:
    total: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def text(self) -> str:
        return f"{self.correct}/{self.total} correct"


@dataclass(frozen=True, slots=True)
class XpOutcome:
    """What a run earns: ``awarded`` XP, the ``rule`` that decided it, and the reasons."""

    awarded: float
    rule: str
    reasons: tuple[str, ...]
    expected: float | None = None
    policy_xp: float = 0.0  # what the policy allows, before a claim
    claimed: float | None = None
    questions: Questions | None = None

    @property
    def capped(self) -> bool:
        """A claim was cut to the policy's amount."""
        return self.claimed is not None and self.claimed > self.policy_xp

    def to_dict(self) -> dict[str, Any]:
        """As the completion answer and the store keep it (plain JSON)."""
        return {
            "awarded": self.awarded,
            "rule": self.rule,
            "reason": self.reasons[0],
            "reasons": list(self.reasons),
            "expected": self.expected,
            "policy_xp": self.policy_xp,
            "claimed": self.claimed,
            "capped": self.capped,
            "total_questions": None if self.questions is None else self.questions.total,
            "correct_questions": None if self.questions is None else self.questions.correct,
        }


def tenth(value: float) -> float:
    """Rounded down to a tenth (a float error of 1e-9 does not cost a tenth)."""
    return math.floor(max(0.0, value) * 10.0 + 1e-9) / 10.0


def _n(value: float) -> str:
    return f"{value:g}"


def _pct(share: float) -> str:
    return f"{math.floor(share * 1000 + 1e-9) / 10:g}%"


def questions(exercises: Mapping[str, bool], total: Any = None, correct: Any = None) -> Questions:
    """The run's questions: the recorded exercises, or the totals given, checked against them.

    Given totals may count questions the notebook does not record (they are the author's), but
    never fewer than recorded, and never more right answers than the recorded wrong ones allow.
    """
    recorded = len(exercises)
    recorded_right = sum(1 for ok in exercises.values() if ok is True)
    given_total = optional_number(total, "total_questions", integer=True)
    given_correct = optional_number(correct, "correct_questions", integer=True)
    if given_total is None and given_correct is None:
        return Questions(recorded, recorded_right)
    if given_total is None or given_correct is None:
        raise InvalidInput(
            "total_questions", "total_questions and correct_questions go together or not at all"
        )
    t, c = int(given_total), int(given_correct)
    if c > t:
        raise InvalidInput("correct_questions", f"{c} correct is more than {t} questions")
    if t < recorded:
        raise Implausible(
            "total_questions",
            f"{t} is fewer than the {recorded} exercise{'s' if recorded != 1 else ''} this run "
            "recorded",
        )
    wrong = recorded - recorded_right
    if c > t - wrong:
        raise Implausible(
            "correct_questions",
            f"{c} correct of {t} is more than the run's record allows: {wrong} of its "
            f"{recorded} recorded exercises {'is' if wrong == 1 else 'are'} not correct",
        )
    return Questions(t, c)


def award_xp(
    *,
    expected_xp: float | None,
    mastery_threshold: float | None = None,
    exercises: Mapping[str, bool] | None = None,
    total_questions: Any = None,
    correct_questions: Any = None,
    attempt: int = 1,
    focused_seconds: float = 0.0,
    xp_without_questions: bool = False,
    claim: Any = None,
    policy: XpPolicy | None = None,
) -> XpOutcome:
    """What a completed run earns under Timeback's XP system (rules R1-R8 above).

    ``exercises`` are the run's recorded answers (True: correct); ``total_questions`` and
    ``correct_questions`` the totals a completion gives (checked against them: InvalidInput or
    :class:`Implausible`); ``focused_seconds`` the run's active time; ``claim`` an explicit XP.
    """
    policy = policy or XpPolicy()
    threshold = DEFAULT_MASTERY_THRESHOLD if mastery_threshold is None else mastery_threshold
    threshold = max(MIN_MASTERY_THRESHOLD, float(threshold))
    claimed = None if claim is None else float(require_number(claim, "xp_earned"))
    asked = questions(exercises or {}, total_questions, correct_questions)
    minutes = max(0.0, focused_seconds) / 60.0
    rule, xp, reason = _policy(
        expected_xp, threshold, asked, attempt, minutes, xp_without_questions, policy
    )
    reasons = [reason]
    awarded = xp
    if claimed is not None:
        if claimed > xp:
            reasons.append(f"claimed {_n(claimed)} XP, more than the policy allows: {_n(xp)} XP")
        elif claimed < xp:
            awarded = tenth(claimed)
            reasons.append(f"claimed {_n(claimed)} XP (the policy allows {_n(xp)})")
    return XpOutcome(
        awarded=awarded,
        rule=rule,
        reasons=tuple(reasons),
        expected=expected_xp,
        policy_xp=xp,
        claimed=claimed,
        questions=asked if asked.total else None,
    )


def _policy(
    expected: float | None,
    threshold: float,
    asked: Questions,
    attempt: int,
    minutes: float,
    without_questions: bool,
    policy: XpPolicy,
) -> tuple[str, float, str]:
    """(rule, XP, reason) before a claim."""
    if asked.total:
        share = asked.accuracy
        if share < MIN_MASTERY_THRESHOLD:  # R3
            return "below_80", 0.0, f"0 XP: {asked.text}, below 80%"
        if share < threshold:  # R4
            return (
                "not_mastered",
                0.0,
                f"0 XP: {asked.text} ({_pct(share)}), not mastered (mastery needs "
                f"{_pct(threshold)})",
            )
    if expected is None:  # R1
        xp = tenth(minutes)
        verified = f"{asked.text}, " if asked.total else ""
        return (
            "focused_minutes",
            xp,
            f"{_n(xp)} XP: {verified}{NO_EXPECTED_XP}, so 1 XP per focused minute",
        )
    if not asked.total and not without_questions:  # R2
        return (
            "unverified",
            0.0,
            "0 XP: no questions recorded; content without questions earns XP only once a quiz "
            "verifies it (the author may set activity.xp_without_questions)",
        )
    what = (
        f"{asked.text} ({_pct(asked.accuracy)}), mastered"
        if asked.total
        else ("no questions, XP without questions allowed by the author")
    )
    if minutes > policy.wasteful_after * expected:  # R6
        xp = tenth(expected * policy.wasteful_share)
        return (
            "wasteful",
            xp,
            f"{_n(xp)} XP: {what}, but {_n(math.floor(minutes))} focused minutes for an activity "
            f"expected to take {_n(expected)} (more than {_n(policy.wasteful_after)}x): "
            f"{_pct(policy.wasteful_share)} of the expected {_n(expected)} XP",
        )
    perfect = asked.total > 0 and asked.correct == asked.total
    if perfect and attempt == 1 and policy.perfect_bonus > 0:  # R7
        xp = tenth(expected * (1 + policy.perfect_bonus))
        return (
            "perfect_first_attempt",
            xp,
            f"{_n(xp)} XP: {asked.text} on the first attempt: the expected {_n(expected)} XP "
            f"+ {_pct(policy.perfect_bonus)} bonus",
        )
    xp = tenth(expected)  # R5
    note = ""
    if perfect and attempt > 1:
        note = f" (the perfect bonus is for the first attempt; this is attempt {attempt})"
    return "mastered", xp, f"{_n(xp)} XP: {what}: the expected {_n(expected)} XP{note}"
