"""``timeback.config.json`` in Timeback's format: the app, its sensor and its courses."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..model import Activity, CourseRef, InvalidInput
from .common import CONFIG_FILE_NAME, ENVIRONMENTS, LOCAL_SENSOR, ConfigError


@dataclass(frozen=True)
class CatalogActivity:
    """One activity of a course in the school's catalog (``courses[].activities[]``).

    What the hub relay awards XP by: the expected XP (required: without it the XP policy would
    pay focused minutes, and time alone must never earn XP on a hub), the mastery threshold and
    whether completing without questions verifies the learning. A notebook's own metadata
    never overrides these on a hub.
    """

    id: str
    name: str
    xp: float
    mastery_threshold: float | None = None
    xp_without_questions: bool = False

    def activity(self, course: CourseRef) -> Activity:
        """As the domain's Activity of ``course`` (checked there: slug, XP, threshold)."""
        return Activity(
            id=self.id,
            name=self.name,
            course=course,
            xp=self.xp,
            mastery_threshold=self.mastery_threshold,
            xp_without_questions=self.xp_without_questions,
        )

    def to_dict(self) -> dict[str, Any]:
        """In timeback.config.json's words (camelCase)."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "xp": self.xp}
        if self.mastery_threshold is not None:
            out["masteryThreshold"] = self.mastery_threshold
        if self.xp_without_questions:
            out["xpWithoutQuestions"] = True
        return out


@dataclass(frozen=True)
class Course:
    """One course of timeback.config.json, resolved for one environment."""

    subject: str
    grade: int | None
    code: str | None
    ids: dict[str, str]
    sensor: str
    metadata: dict[str, Any] = field(default_factory=dict)
    activities: tuple[CatalogActivity, ...] = ()

    @property
    def name(self) -> str:
        return self.code if self.code else f"{self.subject} G{self.grade}"

    def synced_id(self, environment: str) -> str:
        course_id = self.ids.get(environment)
        if not course_id:
            raise ConfigError(
                f"course {self.name!r} has no ids.{environment} in {CONFIG_FILE_NAME}: "
                "sync it to Timeback first (`timeback resources push`)"
            )
        return course_id

    def matches(self, ref: CourseRef) -> bool:
        if ref.code is not None:
            return self.code == ref.code
        return self.grade is not None and (self.subject, self.grade) == (ref.subject, ref.grade)


@dataclass(frozen=True)
class AppConfig:
    """timeback.config.json, resolved for one environment and validated as the SDK does."""

    name: str
    courses: tuple[Course, ...]
    sensor: str
    path: str | None = None  # where it was read from; None for the built-in default

    def course_for(self, ref: CourseRef, *, allow_unlisted: bool = False) -> Course:
        """The one course ``ref`` selects. ``allow_unlisted`` makes one up (local sink only)."""
        found = [c for c in self.courses if c.matches(ref)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ConfigError(f"course {ref.name!r} matches {len(found)} courses in the config")
        if allow_unlisted:
            return Course(
                subject=ref.subject,
                grade=ref.grade,
                code=ref.code,
                ids={env: f"local-{ref.name.replace(' ', '-')}" for env in ENVIRONMENTS},
                sensor=self.sensor,
            )
        where = self.path or "the built-in default config"
        raise ConfigError(f"course {ref.name!r} is not in {where}")


_ACTIVITY_KEYS = frozenset({"id", "name", "xp", "masteryThreshold", "xpWithoutQuestions"})


def _activities(raw: Any, ref: CourseRef, label: str) -> tuple[CatalogActivity, ...]:
    """A course's ``activities``: each checked as the domain checks an Activity, ids unique."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{label}: 'activities' must be a list")
    found: list[CatalogActivity] = []
    seen: set[str] = set()
    for j, item in enumerate(raw):
        where = f"{label}.activities[{j}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be an object")
        unknown = sorted(set(item) - _ACTIVITY_KEYS)
        if unknown:
            # A typo (mastery_threshold for masteryThreshold) must not silently lower a gate.
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)} (known: "
                f"{', '.join(sorted(_ACTIVITY_KEYS))})"
            )
        if item.get("xp") is None:
            raise ConfigError(
                f"{where}: 'xp' is required (the expected XP: the minutes a competent student "
                "needs); without it time alone would earn XP"
            )
        threshold = item.get("masteryThreshold")
        try:
            checked = Activity(
                id=item.get("id"),  # type: ignore[arg-type]
                name=item.get("name") or item.get("id"),  # type: ignore[arg-type]
                course=ref,
                xp=item["xp"],
                mastery_threshold=threshold,
                xp_without_questions=item.get("xpWithoutQuestions", False),
            )
        except InvalidInput as err:
            field_name = {
                "activity.mastery_threshold": "masteryThreshold",
                "activity.xp_without_questions": "xpWithoutQuestions",
            }.get(err.field, err.field.removeprefix("activity."))
            raise ConfigError(f"{where}.{field_name}: {err.problem}") from None
        if checked.id in seen:
            raise ConfigError(f"{where}: duplicate activity id {checked.id!r} in {ref.name}")
        seen.add(checked.id)
        assert checked.xp is not None
        found.append(
            CatalogActivity(
                id=checked.id,
                name=checked.name,
                xp=float(checked.xp),
                mastery_threshold=None if threshold is None else float(threshold),
                xp_without_questions=checked.xp_without_questions,
            )
        )
    return tuple(found)


def default_app_config() -> AppConfig:
    return AppConfig(name="Jupyter", courses=(), sensor=LOCAL_SENSOR)


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parsed = urlparse(url)
    if not parsed.scheme or not parsed.netloc:
        return None
    return f"{parsed.scheme}://{parsed.netloc}"


def _absolute(url: str, where: str) -> str:
    if _origin(url) is None:
        raise ConfigError(f"{where}: {url!r} is not an absolute URL")
    return url


def parse_app_config(
    data: Any, environment: str, *, path: str | None = None, sensor_override: str = ""
) -> AppConfig:
    """Resolve and validate a parsed timeback.config.json for ``environment``.

    The rules are the official server SDK's (``timeback.server.timeback``): a course needs a
    grade or a courseCode, (subject, grade) pairs and codes are unique, every course has an
    effective sensor (per-course override, course, top level, else the launchUrl's origin).
    ``tests/test_config.py`` checks that we accept and refuse the same files it does.
    """
    where = path or CONFIG_FILE_NAME
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"environment must be one of {', '.join(ENVIRONMENTS)}")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must hold a JSON object")
    raw_courses = data.get("courses", [])
    if not isinstance(raw_courses, list):
        raise ConfigError(f"{where}: 'courses' must be a list")
    top_sensor = sensor_override or data.get("sensor") or None
    top_launch = data.get("launchUrl")
    courses: list[Course] = []
    seen_pairs: set[tuple[str, int]] = set()
    seen_codes: set[str] = set()
    for i, raw in enumerate(raw_courses):
        label = f"{where}: courses[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{label} must be an object")
        override = (raw.get("overrides") or {}).get(environment) or {}
        grade = raw.get("grade")
        code = raw.get("courseCode") or None
        if grade is None and not code:
            raise ConfigError(f"{label} must have either 'grade' or 'courseCode'")
        try:
            ref = CourseRef(subject=raw.get("subject", "Other"), grade=grade, code=code)
        except InvalidInput as err:
            raise ConfigError(f"{label}: {err}") from None
        if grade is not None:
            pair = (ref.subject, grade)
            if pair in seen_pairs:
                raise ConfigError(
                    f"{where}: duplicate (subject, grade) pair {ref.subject} grade {grade}"
                )
            seen_pairs.add(pair)
        if code:
            if code in seen_codes:
                raise ConfigError(f"{where}: duplicate courseCode {code!r}")
            seen_codes.add(code)
        launch = override.get("launchUrl") or raw.get("launchUrl") or top_launch
        sensor = override.get("sensor") or raw.get("sensor") or top_sensor or _origin(launch)
        if not sensor:
            raise ConfigError(
                f"{label} ({ref.name}) has no effective sensor: set a top-level 'sensor', a "
                "per-course 'sensor', or a 'launchUrl' to derive it from"
            )
        ids = raw.get("ids") or {}
        if not isinstance(ids, dict) or not all(isinstance(v, str) for v in ids.values()):
            raise ConfigError(f"{label}: 'ids' must map environments to course ids")
        metadata = {**(raw.get("metadata") or {}), **(override.get("metadata") or {})}
        courses.append(
            Course(
                subject=ref.subject,
                grade=grade,
                code=code,
                ids=dict(ids),
                sensor=_absolute(sensor, f"{label} sensor"),
                metadata=metadata,
                activities=_activities(raw.get("activities"), ref, label),
            )
        )
    default_sensor = top_sensor or _origin(top_launch) or LOCAL_SENSOR
    name = data.get("name") or "Timeback App"
    if not isinstance(name, str):
        raise ConfigError(f"{where}: 'name' must be a string")
    return AppConfig(
        name=name,
        courses=tuple(courses),
        sensor=_absolute(default_sensor, f"{where} sensor"),
        path=path,
    )


def load_app_config(
    path: str | os.PathLike[str] | None,
    environment: str,
    *,
    search: tuple[str | os.PathLike[str], ...] = (),
    sensor_override: str = "",
    name_override: str = "",
) -> AppConfig:
    """Read timeback.config.json from ``path`` or the first of ``search`` that has one.

    With neither, the built-in default (good for the local sink) is used.
    """
    candidates = [Path(path)] if path else [Path(d) / CONFIG_FILE_NAME for d in search]
    for candidate in candidates:
        if not candidate.exists():
            if path:
                raise ConfigError(f"{candidate}: no such file")
            continue
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{candidate}: cannot be read ({err})") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"{candidate}: invalid JSON ({err})") from None
        config = parse_app_config(
            data, environment, path=str(candidate), sensor_override=sensor_override
        )
        break
    else:
        config = default_app_config()
        if sensor_override:
            config = AppConfig(config.name, (), _absolute(sensor_override, "sensor"))
    if name_override:
        config = AppConfig(name_override, config.courses, config.sensor, config.path)
    return config
