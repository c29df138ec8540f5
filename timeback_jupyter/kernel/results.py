"""What the kernel API hands an author: a run and a completion as the server describes them.

They are the JSON the Jupyter server's kernel routes answer (the local recorder answers the
same), typed so that an author's type checker and IDE know every field. TypedDicts, not
classes: at run time they are the plain dicts that arrived, so nothing is converted or copied,
and ``answer["run"]["exercises"]`` reads as the REST API documents it. Standard library only:
``import timeback_jupyter`` stays cheap.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

__all__ = [
    "ActivityView",
    "CompletedView",
    "CompletionView",
    "CourseView",
    "RunAnswer",
    "RunState",
    "RunStatus",
    "RunView",
    "StartView",
    "XpOutcomeView",
]

# As timeback_jupyter.model.RunStatus (kernel/ does not import the core for a type).
RunStatus = Literal["active", "ended", "completed"]
# A live run's clock state, else its status: what the status bar shows.
RunState = Literal["active", "inactive", "paused", "ended", "completed"]


class CourseView(TypedDict):
    """``{subject, grade}`` or ``{subject, code}``, as Timeback selects a course."""

    subject: str
    grade: NotRequired[int]
    code: NotRequired[str]


class ActivityView(TypedDict):
    id: str
    name: str
    course: CourseView
    stateful: bool
    xp: NotRequired[float]  # expected XP: the minutes a competent student needs
    mastery_threshold: NotRequired[float]  # share correct that counts as mastered (0.9)
    xp_without_questions: NotRequired[bool]  # the author lets it earn XP without questions


class XpOutcomeView(TypedDict):
    """What Timeback's XP system awarded and why (``timeback_jupyter.xp``)."""

    awarded: float
    # focused_minutes, unverified, below_80, not_mastered, mastered, wasteful,
    # perfect_first_attempt
    rule: str
    reason: str  # e.g. "0 XP: 6/10 correct, below 80%"
    reasons: list[str]  # the reason, then what became of an explicit claim
    expected: float | None  # the activity's expected XP, None when it declares none
    policy_xp: float  # what the policy allows, before a claim
    claimed: float | None
    capped: bool  # a claim above the policy was cut to it
    total_questions: int | None
    correct_questions: int | None


class CompletedView(TypedDict):
    """A completed run's completion, as completing answered it."""

    xp_earned: float
    xp_capped: bool
    xp_outcome: XpOutcomeView | None  # None for a completion recorded by an older release
    metrics: dict[str, float]
    event_id: str | None
    already_completed: bool


class RunView(TypedDict):
    """One attempt of one student at one activity."""

    id: str
    activity: ActivityView
    attempt: int
    status: RunStatus
    state: RunState
    live: bool  # heartbeating now (an open notebook)
    path: str | None  # the notebook's path in the server's root, when one is open
    active_seconds: float
    inactive_seconds: float
    exercises: dict[str, bool]  # each exercise's latest answer: True when correct
    started_at: float  # POSIX seconds
    ended_at: float | None
    completion: NotRequired[CompletedView | None]  # a completed run's outcome, else None


class RunAnswer(TypedDict):
    """What ending a run or marking an exercise answers."""

    run: RunView


class StartView(TypedDict):
    """What starting (or resuming) a run answers."""

    run: RunView
    resumed: bool
    note: str  # why nothing new started (a completed run), else ""
    metadata: NotRequired[dict[str, object]]  # what the notebook keeps (server only)


class CompletionView(TypedDict):
    """What completing answers; completing again answers the first completion."""

    run: RunView
    already_completed: bool
    xp_earned: float
    xp_capped: bool  # an explicit claim was cut to what the XP policy allows
    xp_outcome: XpOutcomeView | None  # the XP policy's outcome and its reasons
    # The completion event's metrics: xpEarned, totalQuestions, correctQuestions, ...
    metrics: dict[str, float]
    event_id: str | None  # the Caliper ActivityEvent's id
