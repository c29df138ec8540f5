"""The school's catalog on the hub side: its courses and their activities with expected XP.

Read from the relay's own ``timeback.config.json`` (each course may list ``activities``: ``id``,
``name``, ``xp``, ``masteryThreshold``, ``xpWithoutQuestions``; parsed in
``config/courses.py``). What a notebook's metadata says of its XP is never read on a hub: the
relay finds the activity here from the event's activity URL and rebuilds the event's object
(app, course, activity, sensor) from this catalog alone.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import unquote, urlparse

from ..caliper import Target
from ..config import AppConfig, CatalogActivity, ConfigError, Course, load_app_config
from ..model import SUBJECTS, Activity, CourseRef, InvalidInput

__all__ = ["Catalog", "CatalogActivity", "parse_activity_url"]

_GRADE = re.compile(r"^g(-?[0-9]{1,2})$")


def parse_activity_url(url: Any) -> tuple[CourseRef, str]:
    """The course selector and slug of ``.../activities/{Subject}/g{grade}/{slug}`` or
    ``.../activities/{code}/{slug}`` (what ``caliper.activity_url`` writes)."""
    if not isinstance(url, str) or not url:
        raise InvalidInput("object.id", "required (the activity's URL)")
    path = urlparse(url).path
    marker = path.rfind("/activities/")
    if marker < 0:
        raise InvalidInput("object.id", f"{url!r} is not an activity URL (no /activities/)")
    parts = [unquote(p) for p in path[marker + len("/activities/") :].split("/")]
    if not all(parts):
        raise InvalidInput("object.id", f"{url!r} has an empty path segment")
    if len(parts) == 3 and parts[0] in SUBJECTS and (grade := _GRADE.match(parts[1])):
        ref = CourseRef(subject=parts[0], grade=int(grade.group(1)))
    elif len(parts) == 2:
        ref = CourseRef(code=parts[0])
    else:
        raise InvalidInput(
            "object.id",
            f"{url!r} is neither .../activities/<Subject>/g<grade>/<slug> nor "
            ".../activities/<course code>/<slug>",
        )
    return ref, parts[-1]


class Catalog:
    """The courses and activities the relay knows, resolved for one environment."""

    def __init__(self, app: AppConfig, environment: str, oneroster_base_url: str) -> None:
        self.app = app
        self.environment = environment
        self.oneroster_base_url = oneroster_base_url

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], environment: str, oneroster_base_url: str
    ) -> Catalog:
        """From the relay's ``timeback.config.json``; a missing or bad file is a ConfigError."""
        if not path:
            raise ConfigError(
                "the relay needs the school's catalog: the path of its timeback.config.json"
            )
        return cls(load_app_config(path, environment), environment, oneroster_base_url)

    def course(self, ref: CourseRef) -> Course | None:
        found = [c for c in self.app.courses if c.matches(ref)]
        return found[0] if len(found) == 1 else None

    def find(self, course_ref: CourseRef, slug: str) -> CatalogActivity | None:
        """The catalog's activity ``slug`` of the course ``course_ref`` selects, if listed."""
        course = self.course(course_ref)
        if course is None:
            return None
        return next((a for a in course.activities if a.id == slug), None)

    def target(self, course: Course, activity: Activity) -> Target:
        """Where events of ``activity`` go, from the catalog (InvalidInput if it cannot)."""
        try:
            return Target(
                app_name=self.app.name,
                sensor=course.sensor,
                environment=self.environment,
                oneroster_base_url=self.oneroster_base_url,
                course=course,
                activity=activity,
            )
        except ConfigError as err:
            raise InvalidInput("course", str(err)) from None

    def public(self) -> dict[str, Any]:
        """What a student's server may know (``GET api/catalog``): no ids, no secrets."""
        return {
            "name": self.app.name,
            "courses": [
                {
                    "name": c.name,
                    "subject": c.subject,
                    "grade": c.grade,
                    "code": c.code,
                    "activities": [a.to_dict() for a in c.activities],
                }
                for c in self.app.courses
            ],
        }

    def problems(self) -> list[str]:
        """Courses that cannot be delivered in this environment (for the status)."""
        out = []
        for course in self.app.courses:
            try:
                course.synced_id(self.environment)
            except ConfigError as err:
                out.append(str(err))
        return out
