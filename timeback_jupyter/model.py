"""The domain's plain values, each validated where it is made.

Nothing here knows about Jupyter, SQLite or HTTP. Every constructor rejects bad input with
:class:`InvalidInput`, whose message names the field, so a REST handler, the magic and the
CLI can all show it as is. Times are POSIX seconds (floats): the clock is driven by injected
time and only :mod:`timeback_jupyter.caliper` turns them into ISO strings.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

# The subjects Timeback's Caliper models accept (timeback-caliper 0.4, ``TimebackSubject``).
SUBJECTS = (
    "Reading",
    "Language",
    "Vocabulary",
    "Social Studies",
    "Writing",
    "Science",
    "FastMath",
    "Math",
    "None",
    "Other",
)
# Pre-K is -1 and AP is 13 in Timeback's config schema.
MIN_GRADE, MAX_GRADE = -1, 13
# Timeback's XP system: no XP below 80% correct, so no activity may count less as mastered.
MIN_MASTERY_THRESHOLD = 0.8

# What a completion button requires before completing (checked by the kernel and the server).
Requirement = Literal["nothing", "attempted", "correct"]
REQUIREMENTS: tuple[Requirement, ...] = ("nothing", "attempted", "correct")

RunStatus = Literal["active", "ended", "completed"]
RUN_STATUSES: tuple[RunStatus, ...] = ("active", "ended", "completed")

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]*$")


class InvalidInput(ValueError):
    """Input that cannot be turned into a domain value. The message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def new_run_id() -> str:
    return str(uuid.uuid4())


def parse_run_id(value: Any, field: str = "run_id") -> str:
    """A runId in its canonical form (lowercase UUID); Timeback rejects anything else."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "required (a UUID)")
    text = value.strip()
    if text.lower().startswith("urn:uuid:"):
        text = text[len("urn:uuid:") :]
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not a UUID") from None
    # uuid.UUID also accepts braces and bare hex; only the hyphenated form goes on the wire.
    if str(parsed) != text.lower():
        raise InvalidInput(field, f"{value!r} is not a UUID in 8-4-4-4-12 form")
    return str(parsed)


def require_text(value: Any, field: str, max_length: int = 500) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "required (a non-empty string)")
    text = value.strip()
    if len(text) > max_length:
        raise InvalidInput(field, f"longer than {max_length} characters")
    return text


def finite(number: float) -> bool:
    """``math.isfinite`` that also says no to an int beyond any float (JSON allows it)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def require_number(value: Any, field: str, *, integer: bool = False) -> float | int:
    """A finite, non-negative number; ``integer`` also refuses fractions."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if integer else "a number"
        raise InvalidInput(field, f"must be {kind}, got {value!r}")
    if not finite(value):
        raise InvalidInput(field, f"must be finite, got {value!r}")
    if value < 0:
        raise InvalidInput(field, f"must not be negative, got {value!r}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise InvalidInput(field, f"must be a whole number, got {value!r}")
        return int(value)
    return value


def optional_number(value: Any, field: str, *, integer: bool = False) -> float | int | None:
    return None if value is None else require_number(value, field, integer=integer)


@dataclass(frozen=True, slots=True)
class CourseRef:
    """An activity's course: ``{subject, grade}`` or ``{code}``, as Timeback selects it."""

    subject: str = "Other"
    grade: int | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        if self.subject not in SUBJECTS:
            raise InvalidInput(
                "course.subject", f"{self.subject!r} is not one of {', '.join(SUBJECTS)}"
            )
        if self.code is not None:
            object.__setattr__(self, "code", require_text(self.code, "course.code", 100))
        if self.grade is not None:
            if isinstance(self.grade, bool) or not isinstance(self.grade, int):
                raise InvalidInput("course.grade", f"must be an integer, got {self.grade!r}")
            if not MIN_GRADE <= self.grade <= MAX_GRADE:
                raise InvalidInput(
                    "course.grade", f"must be between {MIN_GRADE} and {MAX_GRADE}, got {self.grade}"
                )
        if self.grade is None and self.code is None:
            raise InvalidInput("course", "needs a grade (with its subject) or a course code")

    @property
    def name(self) -> str:
        """Timeback's course name: the course code, else ``"Math G3"``."""
        return self.code if self.code else f"{self.subject} G{self.grade}"

    @classmethod
    def from_dict(cls, data: Any, field: str = "course") -> CourseRef:
        if not isinstance(data, dict):
            raise InvalidInput(field, "must be an object with subject and grade, or code")
        return cls(
            subject=data.get("subject", "Other"),
            grade=data.get("grade"),
            code=data.get("code", data.get("courseCode")),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subject": self.subject}
        if self.grade is not None:
            out["grade"] = self.grade
        if self.code is not None:
            out["code"] = self.code
        return out


@dataclass(frozen=True, slots=True)
class Activity:
    """What a notebook is: a URL-safe slug, a name students see, its course and its model.

    ``xp`` is the author's expected XP (the minutes a competent student needs),
    ``mastery_threshold`` the share of correct answers that counts as mastered and
    ``xp_without_questions`` the author's word that completing verifies the learning without
    questions; all optional (notebook metadata schema version 2, :mod:`timeback_jupyter.xp`).
    """

    id: str
    name: str
    course: CourseRef
    stateful: bool = False
    xp: float | None = None
    mastery_threshold: float | None = None
    xp_without_questions: bool = False

    def __post_init__(self) -> None:
        slug = require_text(self.id, "activity.id", 200)
        if not _SLUG.match(slug):
            raise InvalidInput(
                "activity.id",
                f"{self.id!r} is not a slug (letters, digits, '-', '_', '.', '~')",
            )
        object.__setattr__(self, "id", slug)
        object.__setattr__(self, "name", require_text(self.name, "activity.name"))
        if not isinstance(self.course, CourseRef):
            raise InvalidInput("activity.course", "must be a CourseRef")
        if not isinstance(self.stateful, bool):
            raise InvalidInput("activity.stateful", f"must be true or false, got {self.stateful!r}")
        if self.xp is not None and not require_number(self.xp, "activity.xp") > 0:
            raise InvalidInput("activity.xp", "must be more than 0 (the expected minutes)")
        if not isinstance(self.xp_without_questions, bool):
            raise InvalidInput(
                "activity.xp_without_questions",
                f"must be true or false, got {self.xp_without_questions!r}",
            )
        if self.mastery_threshold is not None:
            share = require_number(self.mastery_threshold, "activity.mastery_threshold")
            if not MIN_MASTERY_THRESHOLD <= share <= 1:
                raise InvalidInput(
                    "activity.mastery_threshold",
                    f"must be between {MIN_MASTERY_THRESHOLD} and 1, got {share!r}",
                )

    @classmethod
    def from_dict(cls, data: Any, field: str = "activity") -> Activity:
        """From notebook metadata or a JSON body: ``{id, name, course, stateful, xp,
        mastery_threshold, xp_without_questions}``."""
        if not isinstance(data, dict):
            raise InvalidInput(field, "must be an object")
        stateful = data.get("stateful", data.get("model") == "stateful")
        return cls(
            id=data.get("id"),  # type: ignore[arg-type]
            name=data.get("name") or data.get("id"),  # type: ignore[arg-type]
            course=CourseRef.from_dict(data.get("course"), f"{field}.course"),
            stateful=stateful,
            xp=data.get("xp"),
            mastery_threshold=data.get("mastery_threshold"),
            xp_without_questions=data.get("xp_without_questions", False),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "course": self.course.to_dict(),
            "stateful": self.stateful,
        }
        if self.xp is not None:
            out["xp"] = self.xp
        if self.mastery_threshold is not None:
            out["mastery_threshold"] = self.mastery_threshold
        if self.xp_without_questions:
            out["xp_without_questions"] = True
        return out


@dataclass(slots=True)
class Run:
    """One attempt at one activity by one student."""

    id: str
    activity: Activity
    student: str  # short hash of the student's email: never the email itself
    attempt: int = 1
    status: RunStatus = "active"
    started_at: float = 0.0
    ended_at: float | None = None
    active_seconds: float = 0.0
    inactive_seconds: float = 0.0
    origin: str | None = None  # notebook path the run was started from
    exercises: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = parse_run_id(self.id, "run.id")
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or self.attempt < 1:
            raise InvalidInput("run.attempt", f"must be an integer >= 1, got {self.attempt!r}")
        if self.status not in RUN_STATUSES:
            raise InvalidInput("run.status", f"must be one of {', '.join(RUN_STATUSES)}")
        require_text(self.student, "run.student", 100)


@dataclass(frozen=True, slots=True)
class Window:
    """A closed stretch of one run: how much of it was active and inactive, in seconds."""

    run_id: str
    start: float
    end: float
    active: float
    inactive: float

    def __post_init__(self) -> None:
        parse_run_id(self.run_id, "window.run_id")
        for name in ("start", "end", "active", "inactive"):
            require_number(getattr(self, name), f"window.{name}")
        if self.end < self.start:
            raise InvalidInput("window.end", "is before window.start")
        # A little slack for float sums; anything more is time counted twice.
        if self.active + self.inactive > (self.end - self.start) + 1e-6:
            raise InvalidInput(
                "window", "active + inactive exceeds the wall-clock length of the window"
            )

    @property
    def empty(self) -> bool:
        return self.active <= 0 and self.inactive <= 0


@dataclass(frozen=True, slots=True)
class Completion:
    """How a run ended, in Timeback's metrics; ``xp_earned`` is what the XP policy awarded
    (:func:`timeback_jupyter.xp.award_xp`) and ``xp_outcome`` its reasons, kept with it."""

    run_id: str
    xp_earned: float
    at: float
    total_questions: int | None = None
    correct_questions: int | None = None
    mastered_units: int | None = None
    pct_complete: float | None = None
    xp_outcome: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        parse_run_id(self.run_id, "completion.run_id")
        require_number(self.xp_earned, "xp_earned")
        require_number(self.at, "completion.at")
        total = optional_number(self.total_questions, "total_questions", integer=True)
        correct = optional_number(self.correct_questions, "correct_questions", integer=True)
        mastered = optional_number(self.mastered_units, "mastered_units", integer=True)
        if (total is None) != (correct is None):
            raise InvalidInput(
                "total_questions", "total_questions and correct_questions go together or not at all"
            )
        if total is not None and correct is not None and correct > total:
            raise InvalidInput(
                "correct_questions", f"{correct} correct is more than {total} questions"
            )
        object.__setattr__(self, "total_questions", total)
        object.__setattr__(self, "correct_questions", correct)
        object.__setattr__(self, "mastered_units", mastered)
        if self.pct_complete is not None:
            pct = require_number(self.pct_complete, "pct_complete")
            # Timeback clamps to 0-100; we do the same so the stored event is the sent one.
            object.__setattr__(self, "pct_complete", min(100.0, float(pct)))
