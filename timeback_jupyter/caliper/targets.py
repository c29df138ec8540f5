"""Who and what an event is about: the actor, the target (app, course, activity) and their IRIs.

Pure and cheap to import (no official SDK here): the kernel side and Jupyter's start use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any
from urllib.parse import quote, urlparse, urlunparse

from ..config import ENVIRONMENTS, ROSTERING_PATH, ConfigError, Course
from ..model import SUBJECTS, Activity, InvalidInput

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CaliperInputError(InvalidInput):
    """An event cannot be built or does not validate. The message names the field.

    A subclass of :class:`model.InvalidInput` (itself a ``ValueError``) so callers that already
    turn bad input into a 4xx or a one-line magic error need no new branch.
    """


def absolute_url(url: Any, field: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise CaliperInputError(field, "required (an absolute URL)")
    parsed = urlparse(url.strip())
    if not parsed.scheme or not parsed.netloc:
        raise CaliperInputError(field, f"{url!r} is not an absolute URL (e.g. https://app.example)")
    return url.strip()


def required_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CaliperInputError(field, "required (a non-empty string)")
    return value.strip()


@dataclass(frozen=True)
class Actor:
    """The student as Caliper sees them: a OneRoster user IRI and an email."""

    id: str
    email: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", required_text(self.id, "actor.id"))
        object.__setattr__(self, "email", required_text(self.email, "actor.email"))


@dataclass(frozen=True)
class Target:
    """Where and what a run reports to, resolved and checked once when the run starts."""

    app_name: str
    sensor: str
    environment: str
    oneroster_base_url: str
    course: Course
    activity: Activity

    def __post_init__(self) -> None:
        object.__setattr__(self, "app_name", required_text(self.app_name, "app_name"))
        object.__setattr__(self, "sensor", absolute_url(self.sensor, "sensor"))
        object.__setattr__(
            self, "oneroster_base_url", absolute_url(self.oneroster_base_url, "oneroster_base_url")
        )
        if self.environment not in ENVIRONMENTS:
            raise CaliperInputError(
                "environment", f"{self.environment!r} is not one of {', '.join(ENVIRONMENTS)}"
            )
        if not isinstance(self.course, Course):
            raise CaliperInputError("course", "must be a config.Course")
        if not isinstance(self.activity, Activity):
            raise CaliperInputError("activity", "must be a model.Activity")
        # config.Course is a plain dataclass; a hand-made one can carry any subject.
        if self.course.subject not in SUBJECTS:
            raise CaliperInputError(
                "course.subject", f"{self.course.subject!r} is not one of {', '.join(SUBJECTS)}"
            )
        if not self.course.matches(self.activity.course):
            raise CaliperInputError(
                "activity.course",
                f"{self.activity.course.name!r} does not select course {self.course.name!r}",
            )
        self.course_id  # noqa: B018 -- fail now, not at the first heartbeat

    @property
    def course_id(self) -> str:
        """The synced OneRoster course id for this environment (``extensions.courseId``)."""
        try:
            return self.course.synced_id(self.environment)
        except ConfigError as err:
            raise CaliperInputError(f"course.ids.{self.environment}", str(err)) from None

    @cached_property
    def event_object(self) -> dict[str, Any]:
        """The events' ``object`` (a TimebackActivityContext as the SDK dumps it), made once per
        target: the same for every event of a run. Read-only; events copy it."""
        return {
            "id": activity_url(self.sensor, self.activity, self.course),
            "type": "TimebackActivityContext",
            "subject": self.course.subject,
            "app": {"name": self.app_name},
            "course": {
                "id": course_url(self.oneroster_base_url, self.course_id),
                "name": self.course.name,
            },
            "activity": {"name": self.activity.name},
            "process": True,
        }


@lru_cache(maxsize=64)
def _iso_day(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")


def iso_time(t: float, field: str = "time") -> str:
    """POSIX seconds as Timeback writes them: ``2026-01-15T10:00:15.000Z`` (UTC, milliseconds)."""
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
        raise CaliperInputError(field, f"must be a finite, non-negative POSIX time, got {t!r}")
    # Integer milliseconds: float seconds would print 10:00:14.999 for 10:00:15. The date is
    # made once per day (datetime's formatting was a third of an event's build), the time of
    # day by arithmetic; tests/test_caliper_golden.py holds it equal to datetime's.
    try:
        return iso_ms(round(t * 1000))
    except OverflowError:
        raise CaliperInputError(field, f"{t!r} is out of range") from None


def iso_ms(ms: int) -> str:
    """:func:`iso_time` of ``ms`` / 1000 for whole, non-negative milliseconds (unchecked;
    OverflowError past the year 9999)."""
    day, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{_iso_day(day)}T{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}Z"


def activity_url(sensor: str, activity: Activity, course: Course) -> str:
    """``object.id``: ``{sensor}/activities/{Subject}/g{grade}/{slug}`` or ``.../{code}/{slug}``.

    Mirrors the SDK's ``build_canonical_activity_url``: the path segment comes from the
    activity's course selector, the sensor's own path is kept, only the slug is quoted.
    """
    parsed = urlparse(absolute_url(sensor, "sensor"))
    if not course.matches(activity.course):
        raise CaliperInputError(
            "activity.course", f"{activity.course.name!r} does not select course {course.name!r}"
        )
    ref = activity.course
    segment = ref.code if ref.code is not None else f"{ref.subject}/g{ref.grade}"
    path = f"{parsed.path.rstrip('/')}/activities/{segment}/{quote(activity.id, safe='')}"
    return urlunparse(
        (parsed.scheme, parsed.netloc, path, parsed.params, parsed.query, parsed.fragment)
    )


def user_url(oneroster_base_url: str, sourced_id: str) -> str:
    """The actor IRI the SDK builds from a OneRoster user sourcedId."""
    base = absolute_url(oneroster_base_url, "oneroster_base_url").rstrip("/")
    return f"{base}{ROSTERING_PATH}/users/{required_text(sourced_id, 'sourced_id')}"


def course_url(oneroster_base_url: str, course_id: str) -> str:
    """``object.course.id``: the OneRoster course IRI of the synced course."""
    base = absolute_url(oneroster_base_url, "oneroster_base_url").rstrip("/")
    return f"{base}{ROSTERING_PATH}/courses/{required_text(course_id, 'course_id')}"
