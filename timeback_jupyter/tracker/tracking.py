"""The Tracker: a student's runs through their life (start, signals, windows, end, completion).

It owns the live runs' targets and the engagement clock, and writes each window and completion
with its event in one store transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .. import caliper
from ..clock import EngagementClock
from ..config import AppConfig, ConfigError, Timeback
from ..identity import Student
from ..model import Activity, InvalidInput, Run, Window, parse_run_id
from ..notebook_metadata import CURRENT_VERSION
from ..store import DAY, Store
from ..xp import Implausible
from .checkpoints import Checkpoints
from .claims import completion_for
from .figures import run_time, time_since
from .notebooks import NotebookRuns
from .pending import PendingWindows
from .results import CompletionResult, StartResult, TrackerError
from .resume import RunChooser
from .ticks import Ticks

log = logging.getLogger("timeback_jupyter.tracker")

# metadata_for writes the current version of the notebook metadata schema, whatever it reads.
METADATA_SCHEMA_VERSION = CURRENT_VERSION


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
        notify: Callable[..., None] = lambda urgent=False: None,
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
            running_cell_limit=settings.running_cell_limit,
        )
        self._now = now
        self._notify = notify
        # Told the notebook path whose run started, ended, completed or had an exercise marked,
        # whoever asked: a browser showing that notebook may not be asking right now.
        self._notebook_changed = notebook_changed
        self._targets: dict[str, caliper.Target] = {}  # live runs: where their events go
        self._notebooks = NotebookRuns()
        self._chooser = RunChooser(store, student.key, self._targets, self._notebooks)
        self._pending = PendingWindows()  # closed windows not yet in the store
        self.checkpoints = Checkpoints(
            store, self.clock, settings.checkpoint_interval, target_of=self.target_for
        )
        self.ticks = Ticks(self.clock, self.checkpoints, self._pending, now)
        # Confirmed heartbeat events leave the store after retention_days (store/retention.py).
        store.retain(settings.retention_days * DAY)

    # ---- targets -------------------------------------------------------------------------

    def target_for(self, activity: Activity) -> caliper.Target:
        """Where the activity's events go; a course unknown to the config only works locally."""
        env = self.settings.environment
        # Through the relay, the school's catalog on the hub names the course and its ids:
        # the student's own config (if any) only labels the events, as with the local sink.
        local = self.settings.sink in ("local", "relay")
        try:
            course = self.app_config.course_for(activity.course, allow_unlisted=local)
            if local and not course.ids.get(env):
                # Kept locally, a course not yet synced to Timeback still gets a stable id.
                course = replace(course, ids={**course.ids, env: f"local-{course.name}"})
            return caliper.Target(
                app_name=self.app_config.name,
                sensor=course.sensor,
                environment=env,
                oneroster_base_url=self.settings.oneroster_url,
                course=course,
                activity=activity,
            )
        except (ConfigError, InvalidInput) as err:
            raise TrackerError(str(err), 409) from None

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
        current = self._notebooks.run_at(path) if path is not None else None
        if current is not None:
            live = self.store.get_run(current)
            if live is not None and live.activity.id == activity.id:
                return StartResult(live, resumed=True)
            self.end(current, now=now)
        target = self.target_for(activity)
        if path is not None:
            self._notebooks.reopen(path)
        run, resumed, note = self._chooser.choose(activity, path, metadata_run, now)
        self._targets[run.id] = target
        self.clock.open(run.id, self.student.key, now)
        self.ticks.called()  # the ticker may wait for a call (see Ticks)
        if path is not None:
            self._notebooks.bind(path, run.id)
            self._notebook_changed(path)
        return StartResult(run, resumed, note)

    def run_at(self, path: str) -> str | None:
        return self._notebooks.run_at(path)

    def path_of(self, run_id: str) -> str | None:
        return self._notebooks.path_of(run_id)

    def closed_at(self, path: str) -> str | None:
        """The run last ended or completed in the notebook at ``path`` while it stayed open."""
        return self._notebooks.closed_at(path)

    def reopen(self, path: str) -> None:
        """The notebook was closed: opening it again starts or resumes a run as usual."""
        self._notebooks.reopen(path)

    def live_runs(self) -> list[str]:
        return list(self._targets)

    def rename(self, old_path: str, new_path: str) -> None:
        """Keep a live run bound to its notebook across a rename."""
        run_id = self._notebooks.rename(old_path, new_path)
        if run_id is not None:
            # else a notebook created later at the old path would resume it (open_run_at)
            self.store.move_run(run_id, new_path)

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
        self.signals(run_id, [(self._now() if now is None else now, kind)])

    def signals(self, run_id: str, signals: list[tuple[float, str]]) -> None:
        """One run's consecutive signals ``(at, kind)``: each as ``signal``, or none if refused."""
        self._targets.get(run_id) or self._live(run_id)  # the check inline, its refusal apart
        self.clock.signals(run_id, signals)
        self.ticks.called()  # the ticker may wait for a call (see Ticks)

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
        self.ticks.called()  # the ticker may wait for a call (see Ticks)

    def leave(self, run_id: str, source: str, now: float | None = None) -> None:
        self._live(run_id)
        self.clock.leave(run_id, source, self._now() if now is None else now)
        self.ticks.called()  # the ticker may wait for a call (see Ticks)

    # ---- windows -------------------------------------------------------------------------

    def tick(self, now: float | None = None, *, record: bool = True) -> list[Window]:
        """Close every window due by ``now`` and put its event in the outbox; those a failing
        store could not take wait and go first next time (no time lost). ``record=False`` only
        queues them, for :meth:`record_pending` to write a few at a time."""
        now = self._now() if now is None else now
        windows = self.clock.tick(now)
        self._pending.add((w, self._targets[w.run_id]) for w in windows if not w.empty)
        if record:
            self._record()
        recovered = self.checkpoints.recovered
        self.checkpoints.step(now, self.actor)  # open windows so far: what a kill -9 can lose
        if self.checkpoints.recovered > recovered:  # a process gone's windows, now queued
            self._notify()
        return windows

    def record_pending(self, limit: int) -> int:
        """Write up to ``limit`` queued windows, oldest first; how many are still queued (each
        costs tens of µs: the server writes hundreds in slices, serving requests between)."""
        self._record(limit=limit)
        return len(self._pending)

    def _record(self, *windows: Window | None, limit: int | None = None) -> None:
        targets = self._targets
        self._pending.add((w, targets[w.run_id]) for w in windows if w and not w.empty)
        self._pending.write(self.store, self.actor, limit, self._notify)
        if self._pending:  # the store failed, or slices remain: the ticker carries on
            self.ticks.called()

    @property
    def unrecorded(self) -> int:
        """Windows closed but not yet in the store (it fails); bounded (:mod:`.pending`)."""
        return len(self._pending)

    def end(self, run_id: str, now: float | None = None) -> Run:
        """Flush the open window and stop tracking; a stateful run can be resumed later."""
        run = self.get(run_id)
        if run.id in self._targets:
            self._end([run.id], self._now() if now is None else now)
        return self.get(run.id)

    def end_all(self, now: float | None = None) -> None:
        """:meth:`end` every live run (the server stops), with one tick for all of them."""
        self._end(list(self._targets), self._now() if now is None else now)

    def _end(self, run_ids: list[str], now: float) -> None:
        if not run_ids:
            return
        self.tick(now, record=False)  # windows the clock closed since the last tick go first
        try:  # a store that fails keeps them all queued: the ticker retries them
            self._record(*[self.clock.close(run_id, now) for run_id in run_ids])
        finally:
            for run_id in run_ids:
                self._forget(run_id)  # the clock has let go of it
        for run_id in run_ids:
            if self.get(run_id).status == "active":
                self.store.set_run_status(run_id, "ended", now)

    def _forget(self, run_id: str) -> None:
        self._targets.pop(run_id, None)
        path = self._notebooks.unbind(run_id)
        if path is not None:
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
        path = self._notebooks.path_of(run.id)
        if path is not None:
            self._notebook_changed(path)
        return self.get(run.id)

    def complete(
        self,
        run_id: str,
        *,
        now: float | None = None,
        **claim: Any,
    ) -> CompletionResult:
        """Flush, check the ``claim`` (xp_earned, total_questions, correct_questions,
        mastered_units, pct_complete, require, min_active_minutes: :func:`.claims.completion_for`)
        against the run's record, award XP by Timeback's XP system and write the run's one
        ActivityCompletedEvent with the XP outcome. A repeat answers the first. Refusals: 400
        malformed, 409 contradicted by the record."""
        now = self._now() if now is None else now
        run = self.get(run_id)
        first = self.store.get_completion(run.id)
        if first is not None:
            return self._first(run, first)
        target = self._targets.get(run.id) or self.target_for(run.activity)
        if run.id in self._targets:
            self.tick(now)
            self._record(self.clock.flush(run.id, now))
            run = self.get(run.id)
        try:
            completion = completion_for(run, now, self.settings.xp_policy, **claim)
        except Implausible as err:
            raise TrackerError(str(err), 409) from None
        except InvalidInput as err:
            raise TrackerError(str(err), 400) from None
        event = caliper.completion_event(completion, run.id, run.attempt, self.actor, target)
        created, stored = self.store.record_completion(completion, event, target.sensor)
        if run.id in self._targets:
            self.clock.close(run.id, now)
            self._forget(run.id)
        self._notify(urgent=True)  # the student waits for their XP: not held by a relay's pace
        run = self.get(run.id)
        if not created:  # another caller completed it meanwhile: its outcome stands
            return self._first(run, stored)
        outcome = completion.xp_outcome
        return CompletionResult.from_event(run, stored, already=False, outcome=outcome)

    def _first(self, run: Run, event: dict[str, Any]) -> CompletionResult:
        metrics = self.store.completion_metrics(run.id) or {}
        return CompletionResult.from_event(
            run, event, already=True, outcome=metrics.get("xp_outcome")
        )

    def completion_of(self, run: Run) -> dict[str, Any] | None:
        """A completed run's completion as the answer showed it (XP outcome and metrics), for
        views made after a restart; None for a run not completed."""
        if run.status != "completed":
            return None
        event = self.store.get_completion(run.id)
        if event is None:
            return None
        return self._first(run, event).answer()

    # ---- views ---------------------------------------------------------------------------

    def describe(self, run: Run, now: float | None = None) -> dict[str, Any]:
        """A run as the REST API, the status bar, the magic and the widget show it: its time
        from every part it is in (:mod:`.figures`), so it never goes back."""
        now = self._now() if now is None else now
        live = run.id in self._targets
        time_ = run_time(run, self.clock, self._pending.windows(), live, now)
        return {
            "id": run.id,
            "activity": run.activity.to_dict(),
            "attempt": run.attempt,
            "status": run.status,
            "state": time_.state,
            "live": live,
            "path": self._notebooks.path_of(run.id),
            "active_seconds": round(time_.active, 3),
            "inactive_seconds": round(time_.inactive, 3),
            # when the server pauses it unless the student comes back (a hidden tab shows it)
            "pauses_in": None if time_.pauses_in is None else round(time_.pauses_in, 3),
            "exercises": dict(run.exercises),
            "started_at": run.started_at,
            "ended_at": run.ended_at,
            # what completing answered, so a view made after a kernel restart shows it too
            "completion": self.completion_of(run),
        }

    def today(self, since: float, now: float | None = None) -> dict[str, float]:
        """The student's time in windows that ended after ``since`` (their local midnight),
        made of the same parts as :meth:`describe`'s."""
        now = self._now() if now is None else now
        stored = self.store.time_since(self.student.key, since)
        queued = self._pending.windows()
        active, inactive = time_since(stored, self.clock, queued, self._targets, since, now)
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
