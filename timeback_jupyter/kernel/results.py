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
    "CompletionView",
    "CourseView",
    "RunAnswer",
    "RunState",
    "RunStatus",
    "RunView",
    "StartView",
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
    xp_capped: bool  # XP was cut to one per focused minute
    # The completion event's metrics: xpEarned, totalQuestions, correctQuestions, ...
    metrics: dict[str, float]
    event_id: str | None  # the Caliper ActivityEvent's id
