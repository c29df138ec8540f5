"""Runs + clock + store + events: the one place where signals become events.

Server handlers and the kernel watcher call the tracker; nothing else writes the outbox. It knows
nothing of Jupyter: a notebook is just a path string that a run is bound to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import caliper
from .clock import EngagementClock
from .config import AppConfig, ConfigError, Timeback
from .identity import Student
from .model import (
    Activity,
    Completion,
    InvalidInput,
    Run,
    Window,
    cap_xp,
    new_run_id,
    parse_run_id,
)
from .notebook_metadata import CURRENT_VERSION
from .store import Store

log = logging.getLogger("timeback_jupyter.tracker")

# metadata_for writes the current version of the notebook metadata schema, whatever it reads.
METADATA_SCHEMA_VERSION = CURRENT_VERSION
# Windows written per store transaction: one commit for a few windows instead of one each.
RECORD_BATCH = 50


class TrackerError(Exception):
    """A request the tracker refuses; ``status`` is the HTTP status a handler should answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class StartResult:
    run: Run
    resumed: bool
    # Why a new run was made when metadata named one (shown to the student, never an error).
    note: str = ""


@dataclass
class CompletionResult:
    run: Run
    event: dict[str, Any]
    already_completed: bool
    xp_earned: float
    xp_capped: bool
    metrics: dict[str, Any] = field(default_factory=dict)


class Tracker:
    def __init__(
        self,
        *,
        store: Store,
        settings: Timeback,
        app_config: AppConfig,
        student: Student,
        actor: caliper.Actor,
        clock: EngagementClock | None = None,
        now: Callable[[], float] = time.time,
        notify: Callable[[], None] = lambda: None,
        notebook_changed: Callable[[str], None] = lambda path: None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.app_config = app_config
        self.student = student
        self.actor = actor
        self.clock = clock or EngagementClock(
            heartbeat_interval=settings.heartbeat_interval,
            idle_after=settings.idle_after,
            abandon_after=settings.abandon_after,
            presence_ttl=settings.presence_ttl,
        )
        self._now = now
        self._notify = notify
        # Told the notebook path whose run started, ended, completed or had an exercise marked,
        # whoever asked: a browser showing that notebook may not be asking right now.
        self._notebook_changed = notebook_changed
        self._targets: dict[str, caliper.Target] = {}
        self._path_of: dict[str, str] = {}  # live run id -> notebook path
        self._run_at: dict[str, str] = {}  # notebook path -> live run id
        # notebook path -> its run that was ended or completed while the notebook stayed open:
        # nothing restarts it behind the student's back, only an explicit start does
        self._closed_at: dict[str, str] = {}
        self._unrecorded: list[tuple[Window, caliper.Target]] = []

    # ---- targets -------------------------------------------------------------------------

    def target_for(self, activity: Activity) -> caliper.Target:
        """Where the activity's events go; a course unknown to the config only works locally."""
        env = self.settings.environment
        local = self.settings.sink == "local"
        try:
            course = self.app_config.course_for(activity.course, allow_unlisted=local)
            if local and not course.ids.get(env):
                # Kept locally, a course not yet synced to Timeback still gets a stable id.
                course = replace(course, ids={**course.ids, env: f"local-{course.name}"})
            return caliper.Target(
                app_name=self.app_config.name,
                sensor=course.sensor,
                environment=env,
                oneroster_base_url=self.oneroster_base_url,
                course=course,
                activity=activity,
            )
        except (ConfigError, InvalidInput) as err:
            raise TrackerError(str(err), 409) from None

    @property
    def oneroster_base_url(self) -> str:
        return self.settings.oneroster_url

    # ---- run lifecycle -------------------------------------------------------------------

    def start(
        self,
        activity: Activity,
        *,
        path: str | None = None,
        metadata_run: Any = None,
        now: float | None = None,
    ) -> StartResult:
        """Start or resume the run of ``activity`` in the notebook at ``path``.

        Idempotent per notebook: the browser, the kernel and the server may all ask.
        """
        now = self._now() if now is None else now
        if path is not None and path in self._run_at:
            live = self.store.get_run(self._run_at[path])
            if live is not None and live.activity.id == activity.id:
                return StartResult(live, resumed=True)
            self.end(self._run_at[path], now=now)
        target = self.target_for(activity)
        if path is not None:
            self._closed_at.pop(path, None)
        run, resumed, note = self._resume_or_create(activity, path, metadata_run, now)
        self._targets[run.id] = target
        self.clock.open(run.id, self.student.key, now)
        if path is not None:
            self._run_at[path] = run.id
            self._path_of[run.id] = path
            self._notebook_changed(path)
        return StartResult(run, resumed, note)

    def _resume_or_create(
        self, activity: Activity, path: str | None, metadata_run: Any, now: float
    ) -> tuple[Run, bool, str]:
        note = ""
        if activity.stateful and metadata_run is not None:
            candidate, note = self._resumable(activity, path, metadata_run)
            if candidate is not None:
                existing = self.store.get_run(candidate["id"])
                if existing is None:
                    # The notebook came from another server: keep its runId and attempt.
                    run = Run(
                        id=candidate["id"],
                        activity=activity,
                        student=self.student.key,
                        attempt=candidate["attempt"],
                        started_at=now,
                        origin=path,
                    )
                    self.store.insert_run(run)
                    return run, True, ""
                if existing.status == "completed":
                    note = "the run in the notebook is completed: a new attempt starts"
                elif existing.id in self._targets:
                    # A copy that lost its origin, opened beside the original: one run must
                    # not belong to two notebooks (ending one would end the other's).
                    note = (
                        f"the run in the notebook is open in {self._path_of.get(existing.id)}: "
                        "a new attempt starts"
                    )
                elif existing.student != self.student.key or existing.activity.id != activity.id:
                    note = "the run in the notebook belongs to another student or activity"
                else:
                    self.store.set_run_status(existing.id, "active", now)
                    existing.status = "active"
                    return existing, True, ""
            if note:
                log.warning("notebook %s: %s", path, note)
        elif activity.stateful and path is not None:
            # No run metadata at all (refused metadata above keeps its new attempt).
            found = self._unsaved_run_at(activity, path)
            if found is not None:
                self.store.set_run_status(found.id, "active", now)
                found.status = "active"
                return found, True, ""
        run = Run(
            id=new_run_id(),
            activity=activity,
            student=self.student.key,
            attempt=self.store.next_attempt(activity.id, self.student.key),
            started_at=now,
            origin=path,
        )
        self.store.insert_run(run)
        return run, False, note

    def _unsaved_run_at(self, activity: Activity, path: str) -> Run | None:
        """The open run begun in this notebook when its runId never reached the file.

        The runId is in the file only once saved: a notebook closed unsaved, or a server
        killed before the save, would otherwise leave a stateful run open and start another.
        """
        run = self.store.open_run_at(activity.id, self.student.key, path)
        if run is None:
            return None
        if run.id in self._targets:
            # Live in another notebook here (this path's own live run never gets this far):
            # the same run must not be timed twice, so this notebook gets a new attempt.
            log.info(
                "notebook %s has no runId; run %s begun here is live in %s: a new attempt starts",
                path,
                run.id,
                self._path_of.get(run.id),
            )
            return None
        log.info(
            "notebook %s has no runId: resumed run %s (attempt %d) from the store",
            path,
            run.id,
            run.attempt,
        )
        return run

    def _resumable(
        self, activity: Activity, path: str | None, meta: Any
    ) -> tuple[dict[str, Any] | None, str]:
        """The run named by notebook metadata if this student may resume it, else why not."""
        if not isinstance(meta, dict):
            return None, "metadata.timeback.run is not an object: ignored"
        try:
            run_id = parse_run_id(meta.get("id"), "metadata.timeback.run.id")
        except InvalidInput as err:
            return None, f"{err}: ignored"
        if meta.get("student") != self.student.key:
            return None, "the run in the notebook belongs to another student"
        if meta.get("status") == "completed":
            return None, "the run in the notebook is completed: a new attempt starts"
        origin = meta.get("origin")
        if path is not None and isinstance(origin, str) and origin and origin != path:
            return None, f"the notebook is a copy of {origin}: a new attempt starts"
        attempt = meta.get("attempt", 1)
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            attempt = 1
        return {"id": run_id, "attempt": attempt}, ""

    def run_at(self, path: str) -> str | None:
        return self._run_at.get(path)

    def path_of(self, run_id: str) -> str | None:
        return self._path_of.get(run_id)

    def closed_at(self, path: str) -> str | None:
        """The run last ended or completed in the notebook at ``path`` while it stayed open."""
        return self._closed_at.get(path)

    def reopen(self, path: str) -> None:
        """The notebook was closed: opening it again starts or resumes a run as usual."""
        self._closed_at.pop(path, None)

    def live_runs(self) -> list[str]:
        return list(self._targets)

    def rename(self, old_path: str, new_path: str) -> None:
        """Keep a live run bound to its notebook across a rename."""
        run_id = self._run_at.pop(old_path, None)
        if run_id is not None:
            self._run_at[new_path] = run_id
            self._path_of[run_id] = new_path
            # else a notebook created later at the old path would resume it (open_run_at)
            self.store.move_run(run_id, new_path)
        closed = self._closed_at.pop(old_path, None)
        if closed is not None:
            self._closed_at[new_path] = closed

    def get(self, run_id: str) -> Run:
        try:
            run_id = parse_run_id(run_id)
        except InvalidInput as err:
            raise TrackerError(str(err), 400) from None
        run = self.store.get_run(run_id)
        if run is None:
            raise TrackerError(f"unknown run {run_id}", 404)
        return run

    def _live(self, run_id: str) -> caliper.Target:
        target = self._targets.get(run_id)
        if target is None:
            run = self.get(run_id)
            raise TrackerError(f"run {run.id} is {run.status}, not open on this server", 409)
        return target

    # ---- signals -------------------------------------------------------------------------

    def signal(self, run_id: str, kind: str, now: float | None = None) -> None:
        self._live(run_id)
        self.clock.signal(run_id, self._now() if now is None else now, kind)

    def presence(
        self,
        run_id: str,
        source: str,
        *,
        visible: bool,
        focused: bool,
        idle_seconds: float | None = None,
        now: float | None = None,
    ) -> None:
        self._live(run_id)
        now = self._now() if now is None else now
        # idle since before the clock's epoch is simply idle, not a negative instant
        last_input = None if idle_seconds is None else max(0.0, now - max(0.0, idle_seconds))
        self.clock.presence(
            run_id, source, now, visible=visible, focused=focused, last_input=last_input
        )

    def leave(self, run_id: str, source: str, now: float | None = None) -> None:
        self._live(run_id)
        self.clock.leave(run_id, source, self._now() if now is None else now)

    # ---- windows -------------------------------------------------------------------------

    def tick(self, now: float | None = None, *, record: bool = True) -> list[Window]:
        """Close every window due by ``now`` and put its event in the outbox.

        Windows the store could not take (locked, full disk) are kept and written first next
        time, so a store that fails for a while loses no time. With ``record=False`` they are
        only queued: the caller writes them with :meth:`record_pending`, a few at a time.
        """
        windows = self.clock.tick(self._now() if now is None else now)
        self._unrecorded += [(w, self._targets[w.run_id]) for w in windows if not w.empty]
        if record:
            self._record(None)
        return windows

    def record_pending(self, limit: int) -> int:
        """Write up to ``limit`` queued windows, oldest first; how many are still queued.

        Building an event with the official models costs a fraction of a millisecond, so the
        server writes hundreds of windows in slices and lets the event loop serve requests
        between them.
        """
        self._record(None, limit)
        return len(self._unrecorded)

    def _record(self, window: Window | None, limit: int | None = None) -> None:
        if window is not None and not window.empty:
            self._unrecorded.append((window, self._targets[window.run_id]))
        written = 0
        while self._unrecorded and (limit is None or written < limit):
            size = RECORD_BATCH if limit is None else min(RECORD_BATCH, limit - written)
            batch = self._unrecorded[:size]
            items = [
                (w, caliper.time_spent_event(w, w.run_id, self.actor, target), target.sensor)
                for w, target in batch
            ]
            self.store.record_windows(items)  # all or none: on failure kept for later
            del self._unrecorded[: len(batch)]
            written += len(batch)
        if written:
            self._notify()

    @property
    def unrecorded(self) -> int:
        """Windows closed but not yet in the store (the store is failing)."""
        return len(self._unrecorded)

    def end(self, run_id: str, now: float | None = None) -> Run:
        """Flush the open window and stop tracking; a stateful run can be resumed later."""
        now = self._now() if now is None else now
        run = self.get(run_id)
        if run.id in self._targets:
            self.tick(now)  # windows the clock closed since the last tick come first
            self._record(self.clock.close(run.id, now))
            self._forget(run.id)
            if run.status == "active":
                self.store.set_run_status(run.id, "ended", now)
        return self.get(run.id)

    def end_all(self, now: float | None = None) -> None:
        for run_id in list(self._targets):
            self.end(run_id, now)

    def _forget(self, run_id: str) -> None:
        self._targets.pop(run_id, None)
        path = self._path_of.pop(run_id, None)
        if path is not None and self._run_at.get(path) == run_id:
            del self._run_at[path]
            self._closed_at[path] = run_id
            self._notebook_changed(path)

    def exercise(self, run_id: str, exercise_id: str, correct: bool) -> Run:
        run = self.get(run_id)
        if run.status == "completed":
            raise TrackerError(f"run {run.id} is completed: exercises can no longer change", 409)
        if not isinstance(correct, bool):
            raise TrackerError("correct: must be true or false", 400)
        exercise_id = exercise_id.strip() if isinstance(exercise_id, str) else ""
        if not exercise_id or len(exercise_id) > 200:
            raise TrackerError("exercise: required (a non-empty id up to 200 characters)", 400)
        self.store.set_exercise(run.id, exercise_id, correct)
        path = self._path_of.get(run.id)
        if path is not None:
            self._notebook_changed(path)
        return self.get(run.id)

    def complete(
        self,
        run_id: str,
        *,
        xp_earned: Any = None,
        total_questions: Any = None,
        correct_questions: Any = None,
        mastered_units: Any = None,
        pct_complete: Any = None,
        now: float | None = None,
    ) -> CompletionResult:
        """Flush, then write the run's one ActivityCompletedEvent. A repeat answers the first."""
        now = self._now() if now is None else now
        run = self.get(run_id)
        first = self.store.get_completion(run.id)
        if first is not None:
            return self._completion_result(run, first, already=True, capped=False)
        if total_questions is None and correct_questions is None and run.exercises:
            # Exercises marked in the notebook are the questions unless the caller says more.
            total_questions = len(run.exercises)
            correct_questions = sum(1 for ok in run.exercises.values() if ok)
        target = self._targets.get(run.id) or self.target_for(run.activity)
        if run.id in self._targets:
            self.tick(now)
            self._record(self.clock.flush(run.id, now))
            run = self.get(run.id)
        try:
            xp, capped = cap_xp(xp_earned, run.active_seconds)
            completion = Completion(
                run_id=run.id,
                xp_earned=xp,
                at=now,
                total_questions=total_questions,
                correct_questions=correct_questions,
                mastered_units=mastered_units,
                pct_complete=pct_complete,
            )
        except InvalidInput as err:
            raise TrackerError(str(err), 400) from None
        event = caliper.completion_event(completion, run.id, run.attempt, self.actor, target)
        created, stored = self.store.record_completion(completion, event, target.sensor)
        if run.id in self._targets:
            self.clock.close(run.id, now)
            self._forget(run.id)
        self._notify()
        run = self.get(run.id)
        return self._completion_result(run, stored, already=not created, capped=capped)

    def _completion_result(
        self, run: Run, event: dict[str, Any], *, already: bool, capped: bool
    ) -> CompletionResult:
        items = {i["type"]: i["value"] for i in event.get("generated", {}).get("items", [])}
        pct = event.get("generated", {}).get("extensions", {}).get("pctCompleteApp")
        if pct is not None:
            items["pctComplete"] = pct
        return CompletionResult(
            run=run,
            event=event,
            already_completed=already,
            xp_earned=items.get("xpEarned", 0),
            xp_capped=capped,
            metrics=items,
        )

    # ---- views ---------------------------------------------------------------------------

    def describe(self, run: Run, now: float | None = None) -> dict[str, Any]:
        """A run as the REST API and the status bar show it."""
        now = self._now() if now is None else now
        live = run.id in self._targets
        state = run.status if not live else "paused"
        window_active = window_inactive = 0.0
        if live:
            snap = self.clock.state(run.id, now)
            state, window_active, window_inactive = (
                snap.state,
                snap.window_active,
                snap.window_inactive,
            )
        return {
            "id": run.id,
            "activity": run.activity.to_dict(),
            "attempt": run.attempt,
            "status": run.status,
            "state": state,
            "live": live,
            "path": self._path_of.get(run.id),
            "active_seconds": round(run.active_seconds + window_active, 3),
            "inactive_seconds": round(run.inactive_seconds + window_inactive, 3),
            "exercises": dict(run.exercises),
            "started_at": run.started_at,
            "ended_at": run.ended_at,
        }

    def today(self, since: float, now: float | None = None) -> dict[str, float]:
        """The student's time since ``since`` (their local midnight): closed and open windows."""
        now = self._now() if now is None else now
        active, inactive = self.store.time_since(self.student.key, since)
        for run_id in self._targets:
            snap = self.clock.state(run_id, now)
            active += snap.window_active
            inactive += snap.window_inactive
        return {"active_seconds": round(active, 3), "inactive_seconds": round(inactive, 3)}

    def metadata_for(self, run: Run, path: str | None) -> dict[str, Any]:
        """What the notebook keeps so the student resumes days later (no email, no secret):
        ``metadata.timeback`` in the current schema version (``notebook_metadata/schemas``),
        the author's expected XP included. Writers merge it into the notebook's section."""
        return {
            "schema_version": METADATA_SCHEMA_VERSION,
            "activity": run.activity.to_dict(),
            "run": {
                "id": run.id,
                "student": run.student,
                "status": run.status,
                "attempt": run.attempt,
                "origin": path or run.origin,
            },
        }
