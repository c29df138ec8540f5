"""Every knob in one traitlets Configurable, plus ``timeback.config.json`` in Timeback's format.

Set knobs as ``c.Timeback.<name>`` in ``jupyter_server_config.py``. Credentials never become
traits: they are read from the environment under the names the official clients use and are
only ever shown masked.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyter_core.paths import jupyter_data_dir
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from .model import CourseRef, InvalidInput
from .xp import XpPolicy

ENVIRONMENTS = ("staging", "production")
CONFIG_FILE_NAME = "timeback.config.json"
# Used by the local sink when no timeback.config.json names a sensor: an absolute URL, as
# Timeback requires, under a name nobody resolves.
LOCAL_SENSOR = "https://timeback-jupyter.local"
# OneRoster hosts the official SDK builds actor and course IRIs from (timeback-core 0.4).
ONEROSTER_BASE_URLS = {
    "staging": "https://api.staging.alpha-1edtech.ai",
    "production": "https://api.alpha-1edtech.ai",
}
ROSTERING_PATH = "/ims/oneroster/rostering/v1p2"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says where and why."""


class Timeback(Configurable):
    """Configuration of timeback-jupyter (``c.Timeback.*``)."""

    sink = Enum(
        ["local", "timeback"],
        default_value="local",
        help="Where events go: 'local' keeps them validated in the store (no credentials "
        "needed); 'timeback' sends them to the Timeback Caliper API.",
    ).tag(config=True)

    environment = Enum(
        list(ENVIRONMENTS),
        help="Timeback environment. Defaults to $TIMEBACK_ENV, else staging.",
    ).tag(config=True)

    @default("environment")
    def _default_environment(self) -> str:
        env = os.environ.get("TIMEBACK_ENV", "staging").strip().lower()
        # The official SDK maps 'local' to staging services; so do we.
        return "production" if env == "production" else "staging"

    base_url = Unicode(
        "", help="Caliper API base URL, overriding the environment's (tests, proxies)."
    ).tag(config=True)
    auth_url = Unicode("", help="OAuth2 token URL, overriding the environment's.").tag(config=True)
    oneroster_base_url = Unicode(
        "", help="OneRoster base URL for actor and course IRIs, overriding the environment's."
    ).tag(config=True)

    config_file = Unicode(
        "",
        help="Path of timeback.config.json (Timeback's app config). Empty: look in the "
        "server's root directory, then the current directory.",
    ).tag(config=True)
    sensor = Unicode("", help="Caliper sensor IRI, overriding timeback.config.json.").tag(
        config=True
    )
    app_name = Unicode("", help="App name sent as object.app.name (default: the config's).").tag(
        config=True
    )
    app_url = Unicode("", help="Launch URL of the app (the sensor derives from its origin).").tag(
        config=True
    )

    heartbeat_interval = Float(15.0, help="Seconds per heartbeat window.").tag(config=True)
    idle_after = Float(
        120.0, help="Seconds without input or a cell run after which time counts as inactive."
    ).tag(config=True)
    abandon_after = Float(
        600.0,
        help="Seconds without engagement after which a run stops heartbeating; it restarts "
        "from a clean slate on return.",
    ).tag(config=True)
    presence_ttl = Float(
        20.0,
        help="Seconds a browser's report that a notebook is visible and focused stays valid "
        "without a new one (the extension repeats it every 5 s; notebooks not in front "
        "report only their changes).",
    ).tag(config=True)

    running_cell_limit = Float(
        300.0,
        help="Seconds a running cell keeps its notebook's time active without any input from "
        "the student (typing, scrolling, a click, a new cell run, a widget); then the time is "
        "inactive until they touch something. Only while the notebook is in front; a kernel "
        "restart, death or interrupt ends the cell at once.",
    ).tag(config=True)

    store_path = Unicode(help="SQLite file holding runs, windows and the outbox.").tag(config=True)

    @default("store_path")
    def _default_store_path(self) -> str:
        return str(Path(jupyter_data_dir()) / "timeback" / "timeback.sqlite3")

    student_email = Unicode(
        "", help="The student's email. Default: $TIMEBACK_STUDENT_EMAIL, else from the hub user."
    ).tag(config=True)
    student_email_template = Unicode(
        "", help="Email built from the JupyterHub user name, e.g. '{username}@school.edu'."
    ).tag(config=True)
    student_id = Unicode(
        "", help="The student's OneRoster sourcedId, skipping the lookup by email."
    ).tag(config=True)
    count_visitors = Bool(
        False, help="Count time for visitors of a JupyterHub server, not only its owner."
    ).tag(config=True)

    batch_size = Int(50, help="Events per Caliper envelope.").tag(config=True)
    retry_initial = Float(1.0, help="First retry delay in seconds (doubles, with jitter).").tag(
        config=True
    )
    retry_max = Float(300.0, help="Longest retry delay in seconds.").tag(config=True)
    request_timeout = Float(30.0, help="Seconds before a send to Timeback is abandoned.").tag(
        config=True
    )
    metadata_write_delay = Float(
        10.0,
        help="Seconds the server waits for a browser extension to write a new run into the "
        "notebook before it writes the notebook file itself.",
    ).tag(config=True)
    drain_interval = Float(2.0, help="Seconds between outbox checks when it is empty.").tag(
        config=True
    )

    # Timeback's XP system (timeback_jupyter/xp.py): what a mastered run earns beyond or below
    # the activity's expected XP.
    xp_perfect_bonus = Float(
        0.25,
        help="Share of the expected XP added for every question right on the first attempt "
        "(0 to 1; 0.25 is the 1.25x of Playcademy's Timeback guide).",
    ).tag(config=True)
    xp_wasteful_after = Float(
        3.0,
        help="A mastered run is wasteful when its focused minutes exceed this many times the "
        "activity's expected XP (at least 1).",
    ).tag(config=True)
    xp_wasteful_share = Float(
        0.5, help="Share of the expected XP a wasteful mastered run earns (0 to 1)."
    ).tag(config=True)

    @validate("xp_perfect_bonus", "xp_wasteful_share")
    def _validate_share(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 1:
            raise TraitError(f"c.Timeback.{proposal['trait'].name} must be 0 to 1, got {value}")
        return value

    @validate("xp_wasteful_after")
    def _validate_wasteful_after(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not value >= 1:
            raise TraitError(f"c.Timeback.xp_wasteful_after must be at least 1, got {value}")
        return value

    @property
    def xp_policy(self) -> XpPolicy:
        return XpPolicy(self.xp_perfect_bonus, self.xp_wasteful_after, self.xp_wasteful_share)

    @property
    def oneroster_url(self) -> str:
        """The OneRoster base URL actor and course IRIs are built from: ``oneroster_base_url``,
        else the environment's."""
        return self.oneroster_base_url or ONEROSTER_BASE_URLS[self.environment]


@dataclass(frozen=True)
class Credentials:
    """OAuth2 client credentials. ``repr`` and ``str`` never show the secret."""

    client_id: str
    client_secret: str = field(repr=False)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Credentials | None:
        env = os.environ if environ is None else environ
        cid = env.get("TIMEBACK_API_CLIENT_ID") or env.get("TIMEBACK_CLIENT_ID") or ""
        secret = env.get("TIMEBACK_API_CLIENT_SECRET") or env.get("TIMEBACK_CLIENT_SECRET") or ""
        if not cid or not secret:
            return None
        return cls(cid, secret)

    @property
    def masked(self) -> str:
        return f"{self.client_id[:4]}… (secret set)"

    def __str__(self) -> str:
        return self.masked


@dataclass(frozen=True)
class Course:
    """One course of timeback.config.json, resolved for one environment."""

    subject: str
    grade: int | None
    code: str | None
    ids: dict[str, str]
    sensor: str
    metadata: dict[str, Any] = field(default_factory=dict)

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
