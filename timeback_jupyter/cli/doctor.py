"""``jupyter timeback doctor``: check the configuration end to end, one line per check.

Config and courses, the store, the student, then (for the timeback sink, or whenever
credentials are present) credentials, an OAuth2 token, the student's OneRoster id and a sample
event through Timeback's validate endpoint, which checks without storing. A check that needs
an earlier one that failed is skipped with the reason. Exit status 1 if any check failed.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
from timeback_caliper import CaliperClient, CaliperEnvelope
from timeback_caliper.lib.transport import Transport
from timeback_common import TokenManager

from .. import caliper
from ..config import AppConfig, ConfigError, Course, Timeback
from ..connection import Connection
from ..identity import ActorResolver, IdentityError, Student, actor_for
from ..model import Activity, CourseRef, Window
from ..store import Store, StoreError
from ..store.owner import network_filesystem, network_warning
from .base import Command
from .notebook_check import check_notebooks

OK, FAIL, SKIP, WARN = "\u2713", "\u2717", "-", "!"
SAMPLE_ACTIVITY = "timeback-doctor-sample"


@dataclass
class Checks:
    lines: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, mark: str, name: str, text: str) -> None:
        self.lines.append((mark, name, " ".join(str(text).split())))
        print(f"{mark} {name}: {self.lines[-1][2]}", flush=True)

    @property
    def failed(self) -> int:
        return sum(1 for mark, _, _ in self.lines if mark == FAIL)

    @property
    def warned(self) -> int:
        return sum(1 for mark, _, _ in self.lines if mark == WARN)


# Takes the client secret (and its Basic form) out of text that came from elsewhere.
Scrub = Callable[[str], str]


class _Transport(Transport):
    """The official Caliper transport, remembering the last answer to a POST."""

    last_answer: Any = None

    async def post(
        self, path: str, data: dict[str, Any] | None = None, *, headers: Any = None
    ) -> dict[str, Any]:
        self.last_answer = None
        self.last_answer = await super().post(path, data, headers=headers)
        return self.last_answer


@dataclass(frozen=True)
class Endpoints:
    transport: _Transport
    token_manager: TokenManager | None
    token_url: str


def caliper_endpoints(connection: Connection) -> Endpoints:
    """The official transport and token manager the timeback sink uses (same URLs, and the
    token the student lookup on ``connection`` uses too)."""
    provider = connection.provider()
    endpoint = provider.get_endpoint("caliper")
    manager = provider.get_token_manager("caliper")
    transport = _Transport(
        base_url=endpoint.base_url,
        token_manager=manager,
        paths=provider.get_paths("caliper"),
        timeout=provider.timeout,
    )
    return Endpoints(transport, manager, endpoint.auth_url or "")


def sample_course(app: AppConfig, environment: str, local: bool) -> Course | None:
    """A course to build the sample event with: the first one synced for ``environment``."""
    for course in app.courses:
        if course.ids.get(environment):
            return course
    if local:
        return app.course_for(CourseRef("Math", 3), allow_unlisted=True)
    return None


def sample_event(cfg: Timeback, app: AppConfig, course: Course, student: Student) -> dict[str, Any]:
    """One TimeSpentEvent as the tracker would build it; validated, never sent."""
    oneroster = cfg.oneroster_url
    ref = CourseRef(course.subject, course.grade, course.code)
    activity = Activity(SAMPLE_ACTIVITY, "timeback doctor sample", ref)
    target = caliper.Target(app.name, course.sensor, cfg.environment, oneroster, course, activity)
    run_id = str(uuid.uuid4())
    now = time.time()
    window = Window(run_id, now - 15, now, 12.0, 3.0)
    return caliper.time_spent_event(
        window, run_id, actor_for(student, oneroster, local=True), target
    )


class DoctorCommand(Command):
    """Check the configuration end to end: config, store, student, credentials, token, and a
    sample event through Timeback's validate endpoint."""

    name = "jupyter-timeback-doctor"
    verb = "doctor"
    description = (
        "Check the configuration end to end, one line per check: config and courses, the "
        "store is writable, the student, credentials present, a token obtainable, the "
        "student's Timeback id, and a sample event accepted by Timeback's validate endpoint "
        "(nothing is stored there). With NOTEBOOK arguments, checks each notebook's "
        "metadata.timeback instead, naming every problem. Exits non-zero if any check fails."
    )
    examples = """
    jupyter timeback doctor
    TIMEBACK_CLIENT_ID=... TIMEBACK_CLIENT_SECRET=... jupyter timeback doctor
    jupyter timeback doctor quiz.ipynb lesson.ipynb   # check the notebooks' metadata.timeback
    """

    def run(self) -> int:
        if self.extra_args:
            # an author's check: the notebooks' metadata, not this server's configuration
            failed = check_notebooks(self.extra_args)
            total = len(self.extra_args)
            if failed:
                print(f"{failed} of {total} notebooks have problems")
                return 1
            print(f"all {total} notebooks passed" if total > 1 else "the notebook passed")
            return 0
        checks = Checks()
        asyncio.run(self._check(checks))
        total = len([c for c in checks.lines if c[0] != SKIP])
        if checks.failed:
            print(f"{checks.failed} of {total} checks failed")
            return 1
        warned = f" ({checks.warned} with a warning)" if checks.warned else ""
        print(f"all {total} checks passed{warned}")
        return 0

    async def _check(self, checks: Checks) -> None:
        cfg = self.settings
        local = cfg.sink == "local"
        files = ", ".join(self.loaded_config_files) or "no config file"
        checks.add(OK, "config", f"sink {cfg.sink}, environment {cfg.environment} ({files})")

        app = self._check_app_config(checks, cfg, local)
        self._check_store(checks)
        student = self._check_student(checks)

        credentials = self.credentials()
        if credentials is None:
            if local:
                checks.add(SKIP, "credentials", "none; not needed by the local sink")
                self._check_local_event(checks, cfg, app, student)
                return
            checks.add(
                FAIL,
                "credentials",
                "none: set TIMEBACK_CLIENT_ID and TIMEBACK_CLIENT_SECRET (or "
                "TIMEBACK_API_CLIENT_ID / TIMEBACK_API_CLIENT_SECRET) in the server's environment",
            )
            for name in ("token", "student id", "sample event"):
                checks.add(SKIP, name, "skipped: no credentials")
            return
        checks.add(OK, "credentials", credentials.masked)
        connection = Connection.from_config(cfg, credentials)
        scrub = connection.scrub
        endpoints = caliper_endpoints(connection)
        transport = endpoints.transport
        client = CaliperClient(transport=transport)
        try:
            token_ok = await self._check_token(checks, endpoints, scrub)
            if student is not None and token_ok:
                student = await self._check_student_id(checks, cfg, connection, student, scrub)
            elif student is not None:
                checks.add(SKIP, "student id", "skipped: no token")
            if not token_ok:
                checks.add(SKIP, "sample event", "skipped: no token")
            elif app is None or student is None:
                checks.add(SKIP, "sample event", "skipped: no usable config or student")
            else:
                await self._check_validate(checks, cfg, app, student, client, transport, scrub)
        finally:
            await client.close()

    def _check_app_config(self, checks: Checks, cfg: Timeback, local: bool) -> AppConfig | None:
        try:
            app = self.app_config()
        except ConfigError as err:
            checks.add(FAIL, "timeback.config.json", str(err))
            return None
        if app.path is None:
            where = ", ".join(self.search_dirs())
            if local:
                checks.add(OK, "timeback.config.json", f"none in {where}; built-in default")
            else:
                checks.add(
                    FAIL,
                    "timeback.config.json",
                    f"none in {where}: the timeback sink needs the app's courses (set "
                    "c.Timeback.config_file or put one in the server's root dir)",
                )
            return app
        count = len(app.courses)
        courses = f"{count} course{'s' if count != 1 else ''}"
        checks.add(OK, "timeback.config.json", f"{app.path}: app {app.name!r}, {courses}")
        unsynced = [c.name for c in app.courses if not c.ids.get(cfg.environment)]
        if unsynced:
            checks.add(
                SKIP if local else FAIL,
                "courses",
                f"no ids.{cfg.environment} for {', '.join(unsynced)}: their activities cannot "
                "be reported (sync them to Timeback first)",
            )
        elif app.courses:
            checks.add(OK, "courses", f"all {len(app.courses)} have ids.{cfg.environment}")
        return app

    def _check_store(self, checks: Checks) -> None:
        self._check_store_file(checks)
        # A warning, not a failure: the server records there too, but the admin should move it.
        fstype = network_filesystem(str(self.store_path))
        if fstype is not None:
            checks.add(WARN, "store disk", network_warning(str(self.store_path), fstype))

    def _check_store_file(self, checks: Checks) -> None:
        path = self.store_path
        if path.is_dir():
            checks.add(FAIL, "store", f"{path} is a directory, not a store file")
            return
        if path.exists():
            try:
                with Store(path, busy_timeout=self.busy_timeout) as store:
                    stats = store.stats()
            except StoreError as err:
                checks.add(FAIL, "store", str(err))
                return
            checks.add(
                OK,
                "store",
                f"{path} writable ({stats['runs']} runs, {stats['pending']} pending, "
                f"{stats['dead']} dead letters)",
            )
            return
        ancestor = next((p for p in path.parents if p.exists()), Path("/"))
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            checks.add(FAIL, "store", f"{path} cannot be created: {ancestor} is not writable")
            return
        checks.add(OK, "store", f"{path} will be created on first use ({ancestor} writable)")

    def _check_student(self, checks: Checks) -> Student | None:
        try:
            student = self.student()
        except IdentityError as err:
            checks.add(FAIL, "student", str(err))
            return None
        checks.add(OK, "student", student.email)
        return student

    async def _check_token(self, checks: Checks, endpoints: Endpoints, scrub: Scrub) -> bool:
        manager, token_url = endpoints.token_manager, endpoints.token_url
        if manager is None:
            checks.add(FAIL, "token", "the Caliper endpoint has no token URL configured")
            return False
        try:
            await manager.get_token()
        except Exception as err:
            checks.add(FAIL, "token", scrub(f"from {token_url}: {type(err).__name__}: {err}"))
            return False
        checks.add(OK, "token", f"obtained from {token_url}")
        return True

    async def _check_student_id(
        self,
        checks: Checks,
        cfg: Timeback,
        connection: Connection,
        student: Student,
        scrub: Scrub,
    ) -> Student:
        if student.sourced_id:
            checks.add(OK, "student id", f"sourcedId {student.sourced_id} (configured)")
            return student
        resolver = ActorResolver.from_config(cfg, connection.credentials, connection=connection)
        try:
            sourced_id = await resolver.sourced_id(student.email)
        except IdentityError as err:
            checks.add(SKIP if cfg.sink == "local" else FAIL, "student id", scrub(str(err)))
            return student
        finally:
            await resolver.aclose()
        checks.add(OK, "student id", f"sourcedId {sourced_id} (found by email in OneRoster)")
        return Student(student.email, sourced_id)

    def _build_sample(
        self, checks: Checks, cfg: Timeback, app: AppConfig, student: Student
    ) -> dict[str, Any] | None:
        local = cfg.sink == "local"
        course = sample_course(app, cfg.environment, local)
        if course is None:
            checks.add(
                FAIL,
                "sample event",
                f"no course with ids.{cfg.environment} in the app config to build it with",
            )
            return None
        try:
            event = sample_event(cfg, app, course, student)
            caliper.validate_event(event)
        except (caliper.CaliperInputError, ConfigError, IdentityError) as err:
            checks.add(FAIL, "sample event", f"cannot be built: {err}")
            return None
        return event

    def _check_local_event(
        self, checks: Checks, cfg: Timeback, app: AppConfig | None, student: Student | None
    ) -> None:
        if app is None or student is None:
            checks.add(SKIP, "sample event", "skipped: no usable config or student")
            return
        if self._build_sample(checks, cfg, app, student) is not None:
            checks.add(
                OK, "sample event", "validates with the official timeback-caliper models (local)"
            )

    async def _check_validate(
        self,
        checks: Checks,
        cfg: Timeback,
        app: AppConfig,
        student: Student,
        client: CaliperClient,
        transport: _Transport,
        scrub: Scrub,
    ) -> None:
        event = self._build_sample(checks, cfg, app, student)
        if event is None:
            return
        envelope = caliper.envelope([event], event_sensor(app, event), time.time())
        where = f"{transport.base_url}{transport.paths.validate or ''}"
        try:
            result = await client.events.validate(CaliperEnvelope.model_validate(envelope))
            status, message = result.status, result.message or _first(result.errors)
        except pydantic.ValidationError:
            # Answered, in a shape the client's result model refuses (errors as strings):
            # read the answer as it came rather than ask again.
            raw = transport.last_answer if isinstance(transport.last_answer, dict) else {}
            status, message = raw.get("status"), raw.get("message") or _first(raw.get("errors"))
        except Exception as err:
            checks.add(FAIL, "sample event", scrub(f"{where}: {type(err).__name__}: {err}"))
            return
        if status == "success":
            checks.add(OK, "sample event", f"accepted by {where} (validated, not stored)")
        else:
            checks.add(FAIL, "sample event", scrub(f"rejected by {where}: {message or status}"))


def event_sensor(app: AppConfig, event: dict[str, Any]) -> str:
    """The sensor of the course the sample was built for (its object id's origin)."""
    for course in app.courses:
        if event["object"]["id"].startswith(course.sensor.rstrip("/") + "/"):
            return course.sensor
    return app.sensor


def _first(errors: Any) -> str | None:
    if isinstance(errors, list) and errors:
        return str(errors[0])
    return None
