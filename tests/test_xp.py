"""Timeback's XP system (timeback_jupyter/xp.py), one row per rule of its table (R1-R8)."""

from __future__ import annotations

from typing import Any

import pytest

from timeback_jupyter.model import InvalidInput
from timeback_jupyter.xp import Implausible, XpPolicy, award_xp, questions


def marks(correct: int, wrong: int = 0) -> dict[str, bool]:
    out = {f"q{i}": True for i in range(correct)}
    out.update({f"w{i}": False for i in range(wrong)})
    return out


MIN = 60.0
# (row, rule cited, inputs, awarded, rule id, words the first reason has)
# fmt: off
TABLE: list[tuple[str, dict[str, Any], float, str, str]] = [
    # R1: no expected XP declared: the old rule, 1 XP per focused minute (rounded down)
    ("R1 no expected XP, no questions", {"expected_xp": None, "focused_seconds": 4.56 * MIN},
     4.5, "focused_minutes", "no expected XP declared (activity.xp)"),
    ("R1 no expected XP, mastered", {"expected_xp": None, "exercises": marks(9, 1),
     "focused_seconds": 7 * MIN}, 7, "focused_minutes", "9/10 correct"),
    ("R1+R3 no expected XP still gated at 80%", {"expected_xp": None,
     "exercises": marks(6, 4), "focused_seconds": 30 * MIN}, 0, "below_80",
     "0 XP: 6/10 correct, below 80%"),
    # R2: passive content earns XP only once a quiz verifies it
    ("R2 no questions, not marked", {"expected_xp": 10, "focused_seconds": 10 * MIN},
     0, "unverified", "once a quiz verifies it"),
    ("R2 no questions, marked by the author", {"expected_xp": 10, "focused_seconds": 9 * MIN,
     "xp_without_questions": True}, 10, "mastered", "allowed by the author"),
    # R3: no XP below 80% accuracy
    ("R3 below 80%", {"expected_xp": 10, "exercises": marks(6, 4)}, 0, "below_80",
     "0 XP: 6/10 correct, below 80%"),
    ("R3 below 80% even with a lower threshold", {"expected_xp": 10, "mastery_threshold": 0.8,
     "exercises": marks(79, 21)}, 0, "below_80", "79/100 correct, below 80%"),
    # R4: mastery gates at the threshold (default 90%)
    ("R4 not mastered at 80-89%", {"expected_xp": 10, "exercises": marks(8, 2)}, 0,
     "not_mastered", "8/10 correct (80%), not mastered (mastery needs 90%)"),
    ("R4 the author's threshold", {"expected_xp": 10, "mastery_threshold": 1,
     "exercises": marks(9, 1)}, 0, "not_mastered", "mastery needs 100%"),
    ("R4 a threshold of 0.8 lets 80% master", {"expected_xp": 10, "mastery_threshold": 0.8,
     "exercises": marks(8, 2), "focused_seconds": 10 * MIN}, 10, "mastered", "mastered"),
    # R5: mastered and focused: the expected XP
    ("R5 mastered at 90%", {"expected_xp": 12, "exercises": marks(9, 1),
     "focused_seconds": 15 * MIN}, 12, "mastered", "the expected 12 XP"),
    ("R5 mastered quickly still earns the expected XP", {"expected_xp": 12,
     "exercises": marks(9, 1), "focused_seconds": 2 * MIN}, 12, "mastered", "mastered"),
    # R6: mastered but wasteful: partial
    ("R6 wasteful", {"expected_xp": 10, "exercises": marks(9, 1),
     "focused_seconds": 31 * MIN}, 5, "wasteful", "31 focused minutes for an activity expected"),
    ("R6 exactly 3x is not wasteful", {"expected_xp": 10, "exercises": marks(9, 1),
     "focused_seconds": 30 * MIN}, 10, "mastered", "mastered"),
    ("R6 a perfect but wasteful first attempt gets no bonus", {"expected_xp": 10,
     "exercises": marks(10), "focused_seconds": 45 * MIN}, 5, "wasteful", "50% of"),
    # R7: perfect on the first attempt: bonus, only on attempt 1
    ("R7 perfect first attempt", {"expected_xp": 12, "exercises": marks(10),
     "focused_seconds": 12 * MIN}, 15, "perfect_first_attempt", "+ 25% bonus"),
    ("R7 no bonus on attempt 2", {"expected_xp": 12, "exercises": marks(10), "attempt": 2,
     "focused_seconds": 12 * MIN}, 12, "mastered", "bonus is for the first attempt"),
    ("R7 passive content has no perfect bonus", {"expected_xp": 12,
     "xp_without_questions": True}, 12, "mastered", "allowed by the author"),
    # totals given are the questions (checked against the record by questions())
    ("totals given beyond the record", {"expected_xp": 10, "exercises": marks(3),
     "total_questions": 10, "correct_questions": 9}, 10, "mastered", "9/10 correct"),
    ("totals given, none recorded", {"expected_xp": 10, "total_questions": 10,
     "correct_questions": 5}, 0, "below_80", "5/10 correct"),
    # R8: an explicit claim, never above the policy
    ("R8 claim above the policy", {"expected_xp": 10, "exercises": marks(9, 1),
     "claim": 50}, 10, "mastered", "the expected 10 XP"),
    ("R8 claim below the policy", {"expected_xp": 10, "exercises": marks(9, 1),
     "claim": 4}, 4, "mastered", "the expected 10 XP"),
    ("R8 claim when the policy says 0", {"expected_xp": 10, "exercises": marks(5, 5),
     "claim": 10}, 0, "below_80", "below 80%"),
    ("R8 claim without exercises", {"expected_xp": 10, "claim": 10}, 0, "unverified",
     "no questions recorded"),
    ("R8 claim without expected XP: capped at focused minutes", {"expected_xp": None,
     "claim": 80, "focused_seconds": 10 * MIN}, 10, "focused_minutes", "1 XP per focused minute"),
]
# fmt: on


@pytest.mark.parametrize(
    ("inputs", "awarded", "rule", "words"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_the_xp_table(inputs: dict[str, Any], awarded: float, rule: str, words: str) -> None:
    outcome = award_xp(**inputs)
    assert outcome.awarded == awarded
    assert outcome.rule == rule
    assert words in outcome.reasons[0]
    assert outcome.reasons[0].startswith(f"{outcome.policy_xp:g} XP")
    claim = inputs.get("claim")
    if claim is not None:
        assert outcome.awarded <= outcome.policy_xp
        assert outcome.capped == (claim > outcome.policy_xp)
        # every reduction of a claim is explained
        assert (claim != outcome.policy_xp) == (len(outcome.reasons) == 2)
        if claim > outcome.policy_xp:
            assert f"claimed {claim:g} XP, more than the policy allows" in outcome.reasons[1]
    assert outcome.to_dict()["reason"] == outcome.reasons[0]


def test_the_knobs() -> None:
    policy = XpPolicy(perfect_bonus=0.5, wasteful_after=2, wasteful_share=0.25)
    perfect = award_xp(expected_xp=10, exercises=marks(4), focused_seconds=60, policy=policy)
    assert (perfect.awarded, perfect.rule) == (15, "perfect_first_attempt")
    slow = award_xp(expected_xp=10, exercises=marks(9, 1), focused_seconds=21 * MIN, policy=policy)
    assert (slow.awarded, slow.rule) == (2.5, "wasteful")
    assert "more than 2x" in slow.reasons[0] and "25% of the expected 10 XP" in slow.reasons[0]
    none = award_xp(
        expected_xp=10, exercises=marks(4), focused_seconds=60, policy=XpPolicy(perfect_bonus=0)
    )
    assert (none.awarded, none.rule) == (10, "mastered")
    for bad in ({"perfect_bonus": 2}, {"wasteful_after": 0.5}, {"wasteful_share": -1}):
        with pytest.raises(InvalidInput):
            XpPolicy(**bad)


def test_xp_is_rounded_down_to_a_tenth() -> None:
    assert award_xp(expected_xp=4.55, exercises=marks(9, 1)).awarded == 4.5
    assert award_xp(expected_xp=0.7, exercises=marks(3)).awarded == 0.8  # 0.875
    assert award_xp(expected_xp=None, focused_seconds=59.9).awarded == 0.9


@pytest.mark.parametrize(
    ("exercises", "total", "correct", "error", "words"),
    [
        (marks(3, 2), 4, 3, Implausible, "4 is fewer than the 5 exercises this run recorded"),
        (marks(3, 2), 10, 9, Implausible, "2 of its 5 recorded exercises are not correct"),
        ({}, 4, 5, InvalidInput, "5 correct is more than 4 questions"),
        ({}, 4, None, InvalidInput, "go together"),
        ({}, -1, 0, InvalidInput, "must not be negative"),
        ({}, 2.5, 1, InvalidInput, "whole number"),
    ],
)
def test_totals_are_checked_against_the_record(
    exercises: dict[str, bool], total: Any, correct: Any, error: type, words: str
) -> None:
    with pytest.raises(error, match=words):
        questions(exercises, total, correct)
    with pytest.raises(error, match=words):
        award_xp(expected_xp=10, exercises=exercises, total_questions=total,
                 correct_questions=correct)  # fmt: skip


def test_totals_that_agree_with_the_record() -> None:
    assert questions(marks(3, 2)) == questions(marks(3, 2), 5, 3)
    assert questions(marks(3, 2), 8, 6).accuracy == 0.75
    assert questions({}).total == 0


def test_the_knobs_are_c_timeback_traits_with_documented_defaults() -> None:
    from traitlets import TraitError

    from timeback_jupyter.config import Timeback

    assert Timeback().xp_policy == XpPolicy(0.25, 3.0, 0.5)
    assert Timeback(xp_perfect_bonus=0.1, xp_wasteful_after=2).xp_policy == XpPolicy(0.1, 2, 0.5)
    for bad in ({"xp_perfect_bonus": 1.5}, {"xp_wasteful_share": -0.1}, {"xp_wasteful_after": 0.9}):
        with pytest.raises(TraitError, match="c.Timeback.xp_"):
            Timeback(**bad)
