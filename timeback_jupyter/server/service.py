"""What the extension does for its callers (browser, kernel, CLI), free of Jupyter.

Handlers parse a request, call one method here and answer what it returns. Notebook files come
in through a :class:`NotebookFiles` port (the contents manager in the server, a dict in tests);
a refusal is a :class:`.errors.ServiceError` carrying the HTTP status to answer it with;
listeners hear of runs that changed (``on_changed``) and notebooks renamed (``on_renamed``).

The core it drives (tracker, store, drainer) is assigned by whoever builds it, and may come
later than the service: until then, and while ``problem`` says why, nothing records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..config import Credentials, Timeback
from ..delivery import Drainer, DrainerBusy
from ..model import Activity, InvalidInput
from ..store import Store, StoreError
from ..tracker import Tracker, TrackerError
from .errors import NotebookError, ServiceError, StoreFailure
from .run_writes import RunWrites
from .status import status_of
from .tasks import TaskSet

# notebooks remembered as looked after by a browser (a server sees far fewer; see _browser_saw)
MAX_BROWSER_PATHS = 10_000


class NotebookFiles(Protocol):
    """The notebook files the service reads and writes ``metadata.timeback`` of."""

    async def read(self, path: str) -> dict[str, Any] | None:
        """The notebook's ``metadata.timeback``, None if it has none; NotebookError if the
        file cannot be read as a notebook or the section is not an object."""
        ...

    async def write(self, path: str, section: dict[str, Any]) -> bool:
        """Put ``section`` into the file's ``metadata.timeback``; False if already there."""
        ...

    def activity(self, section: dict[str, Any], path: str) -> Activity:
        """The activity the section declares; NotebookError if it is not a valid one."""
        ...


class TimebackService:
    def __init__(
        self,
        settings: Timeback,
        notebooks: NotebookFiles,
        *,
        log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        tasks: TaskSet | None = None,
        on_changed: Callable[[str], None] = lambda path: None,
        on_renamed: Callable[[str, str], None] = lambda old, new: None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.notebooks = notebooks
        self.log = log or logging.getLogger("timeback_jupyter.server")
        self.tasks = tasks or TaskSet(self.log)
        self.on_changed = on_changed
        self.on_renamed = on_renamed
        self._now = now
        self._tracker: Tracker | None = None
        # Applies what a caller holds back from the clock (the binding's held kernel signals)
        # before the tracker's clock is read or changed: see held_signals.
        self.catch_up: Callable[[], None] = lambda: None
        self.store: Store | None = None
        self.drainer: Drainer | None = None
        self.credentials: Credentials | None = None
        self.problem = ""  # why nothing records (misconfigured, student not found yet)
        self.store_error = ""  # the store failing at run time (locked, full...), until it works
        self.store_warning = ""  # on a network file system: recording, but it should move
        self.store_error_types: tuple[type[BaseException], ...] = (StoreError, sqlite3.Error)
        # notebooks a browser tab looks after, most recent last (see _browser_saw)
        self.browser_paths: dict[str, None] = {}
        # runs whose notebook the server writes itself, no browser having done it
        self.writes = RunWrites(self, notebooks, self.tasks, self.log)

    # ---- state -------------------------------------------------------------------------------

    def check_recording(self) -> Tracker:
        """The tracker; ServiceError 503 while nothing records."""
        if self.problem:
            raise ServiceError(f"timeback is not recording: {self.problem}", 503)
        if self.tracker is None:
            raise ServiceError("timeback is not recording: it has not started", 503)
        return self.tracker

    @property
    def tracker(self) -> Tracker | None:
        return self._tracker

    @tracker.setter
    def tracker(self, tracker: Tracker | None) -> None:
        self._tracker = tracker
        if tracker is not None:
            tracker.clock.before_call = lambda: self.catch_up()

    @property
    def recording(self) -> bool:
        return not self.problem and self.tracker is not None

    def now(self) -> float:
        """The service's clock (injected in tests)."""
        return self._now()

    @contextlib.contextmanager
    def _refusals(self) -> Iterator[Tracker]:
        """The tracker, with its refusals and the store's failures as ServiceErrors."""
        tracker = self.check_recording()
        try:
            yield tracker
        except TrackerError as err:
            raise ServiceError(str(err), err.status) from None
        except InvalidInput as err:
            raise ServiceError(str(err), 400) from None
        except self.store_error_types as err:
            raise StoreFailure(err) from None

    def notebook_changed(self, path: str) -> None:
        """A notebook's run started, ended, completed or changed its exercises (the tracker
        says so, whoever asked): listeners showing it hear at once."""
        self.on_changed(path)

    # ---- runs --------------------------------------------------------------------------------

    async def start(
        self,
        path: str,
        *,
        activity: Activity | dict[str, Any] | None = None,
        browser: bool = False,
        new_attempt: bool = False,
    ) -> dict[str, Any] | None:
        """Start or resume the run of the notebook at ``path``: of ``activity`` if given, else
        of the one its metadata declares. None if it declares none.

        A run completed while the notebook stayed open is answered, not restarted (a re-run
        cell, a reload), unless ``new_attempt``. A start not from a browser writes the run into
        the file after ``metadata_write_delay``, unless a browser took the notebook meanwhile.
        """
        with self._refusals() as tracker:
            if isinstance(activity, dict):
                activity = Activity.from_dict(activity)
            section: dict[str, Any] | None = None
            try:
                section = await self.notebooks.read(path)
            except NotebookError as err:
                # a notebook that does not exist gets no run: nothing would ever end it
                if activity is None or err.status == 404:
                    raise
                self.log.warning("timeback: %s (a new run starts)", err)
            if activity is None:
                if section is None or section.get("activity") is None:
                    return None
                activity = self.notebooks.activity(section, path)
            if browser:
                self._browser_saw(path)
            closed = tracker.closed_at(path)
            if closed is not None and not new_attempt:
                run = tracker.get(closed)
                if run.status == "completed" and run.activity.id == activity.id:
                    # Starting again must not make a second completion.
                    return {
                        "run": tracker.describe(run),
                        "metadata": tracker.metadata_for(run, path),
                        "resumed": False,
                        "note": "this notebook's run is completed; ask for a new attempt to "
                        "start one",
                    }
            result = tracker.start(
                activity, path=path, metadata_run=(section or {}).get("run"), now=self._now()
            )
            metadata = tracker.metadata_for(result.run, path)
            if not browser and (section or {}).get("run") != metadata["run"]:
                self.writes.later(result.run.id, path)
            return {
                "run": tracker.describe(result.run),
                "metadata": metadata,
                "resumed": result.resumed,
                "note": result.note,
            }

    def _browser_saw(self, path: str) -> None:
        # Any logged-in client may report any path: keep the most recent ones, not all.
        self.browser_paths.pop(path, None)
        self.browser_paths[path] = None
        if len(self.browser_paths) > MAX_BROWSER_PATHS:
            del self.browser_paths[next(iter(self.browser_paths))]

    async def presence(
        self,
        path: str,
        source: str,
        *,
        visible: bool,
        focused: bool,
        idle_seconds: float | None,
        leaving: bool,
    ) -> dict[str, Any] | None:
        """A browser tab's report on a notebook: its run, None if the notebook has none open."""
        with self._refusals() as tracker:
            self._browser_saw(path)
            run_id = tracker.run_at(path)
            if run_id is None:
                return None
            if leaving:
                tracker.leave(run_id, source)
            else:
                tracker.presence(
                    run_id, source, visible=visible, focused=focused, idle_seconds=idle_seconds
                )
            run = tracker.get(run_id)
            return {**tracker.describe(run), "metadata": tracker.metadata_for(run, path)}

    def get(self, run_id: str) -> dict[str, Any]:
        with self._refusals() as tracker:
            return {"run": tracker.describe(tracker.get(run_id))}

    def end(self, run_id: str) -> dict[str, Any]:
        with self._refusals() as tracker:
            return {"run": tracker.describe(tracker.end(run_id))}

    def exercise(self, run_id: str, exercise: Any, correct: Any) -> dict[str, Any]:
        with self._refusals() as tracker:
            return {"run": tracker.describe(tracker.exercise(run_id, exercise, correct))}

    def complete(self, run_id: str, **claim: Any) -> dict[str, Any]:
        """Complete the run once: the ``claim`` (:func:`..tracker.claims.completion_for`'s
        keywords, from :func:`.requests.completion_args`; ``require`` and
        ``min_active_minutes`` are the completion button's rule, checked again here) is checked
        against the run's record and XP awarded by Timeback's XP system; the answer carries the
        outcome and its reasons."""
        with self._refusals() as tracker:
            result = tracker.complete(run_id, **claim)
            return {"run": tracker.describe(result.run), **result.answer()}

    def run_of(self, path: str) -> str:
        """The run a notebook shows: open, or ended or completed while it stayed open."""
        with self._refusals() as tracker:
            run_id = tracker.run_at(path) or tracker.closed_at(path)
        if run_id is None:
            raise ServiceError(f"no run is open for {path}: start one first", 409)
        return run_id

    def describe_notebook(self, path: str) -> dict[str, Any]:
        """A notebook as its kernel sees it: its run (None if none) and the public status."""
        run = None
        if self.recording:
            with self._refusals() as tracker:
                # after an end or a completion the notebook shows that run until it restarts
                run_id = tracker.run_at(path) or tracker.closed_at(path)
                run = None if run_id is None else tracker.describe(tracker.get(run_id))
        return {"path": path, "run": run, "status": self.status(public=True)}

    async def describe_kernel_notebook(self, path: str) -> dict[str, Any]:
        """:meth:`describe_notebook`, and ``problems``: why the notebook's ``metadata.timeback``
        cannot be used, every problem named (empty when it can, or declares nothing), so
        ``%timeback status`` says what the status bar and the server log say."""
        shown = self.describe_notebook(path)
        shown["problems"] = await self.metadata_problems(path)
        return shown

    async def metadata_problems(self, path: str) -> list[str]:
        """Every problem of the notebook's ``metadata.timeback``, in the author's terms."""
        try:
            section = await self.notebooks.read(path)
            if section is not None and section.get("activity") is not None:
                self.notebooks.activity(section, path)
        except NotebookError as err:
            return [str(err)]
        return []

    # ---- kernels and files, as the binding reports them ----------------------------------------

    def open_run(self, path: str) -> str | None:
        """The run open in the notebook at ``path``, if any (None while nothing records)."""
        tracker = self.tracker
        return tracker.run_at(path) if tracker is not None and not self.problem else None

    def closed(self, path: str) -> bool:
        """The notebook's run was ended or completed while it stayed open: only an explicit
        start restarts it."""
        return self.tracker is not None and self.tracker.closed_at(path) is not None

    def signal(self, path: str, kind: str, at: float) -> bool:
        """A kernel signal for the notebook's open run; False if it has none open."""
        tracker = self.tracker
        if tracker is None or self.problem:
            return False
        run_id = tracker.run_at(path)  # open_run's, a call less: two per cell
        if run_id is None:
            return False
        try:
            tracker.signal(run_id, kind, at)
        except Exception as err:  # never into the kernel's stream: logged as a task would
            self.log.warning("timeback: %s", err)
        return True

    def signals(self, path: str, signals: list[tuple[float, str]]) -> bool:
        """A kernel's consecutive signals ``(at, kind)`` for the notebook's open run, in one
        call; False if it has none open. Refused as a whole (the clock changes nothing then),
        each is applied as :meth:`signal` applies it, with its own refusal."""
        tracker = self.tracker
        if tracker is None or self.problem:
            return False
        run_id = tracker.run_at(path)
        if run_id is None:
            return False
        try:
            tracker.signals(run_id, signals)
        except Exception:
            for at, kind in signals:
                self.signal(path, kind, at)
        return True

    def notebook_closed(self, path: str) -> None:
        """The notebook's kernel shut down: its run ends; opening it again starts one anew."""
        tracker = self.tracker
        if tracker is None:
            return
        run_id = tracker.run_at(path)
        if run_id is not None:
            with contextlib.suppress(TrackerError, *self.store_error_types):
                tracker.end(run_id)
        tracker.reopen(path)

    def rename(self, old: str, new: str) -> None:
        """The notebook (or directory) at ``old`` is now at ``new``: its runs, their pending
        writes and listeners follow it."""
        moves = {old: new}
        tracker = self.tracker
        if tracker is not None:
            for run_id in tracker.live_runs():
                path = tracker.path_of(run_id)
                if path is not None and path.startswith(old + "/"):
                    moves[path] = new + path[len(old) :]
        self.writes.rename(old, new)
        for source, target in moves.items():
            if tracker is not None:
                tracker.rename(source, target)
            if source in self.browser_paths:
                del self.browser_paths[source]
                self._browser_saw(target)
            self.on_renamed(source, target)

    # ---- delivery and status -----------------------------------------------------------------

    async def flush(self, timeout: float) -> dict[str, Any]:
        """Send the outbox now, for at most ``timeout`` seconds: what happened."""
        if self.drainer is None:
            raise ServiceError("delivery is not running", 503)
        try:
            if self.tracker is not None:
                self.tracker.tick()
        except self.store_error_types as err:
            raise StoreFailure(err) from None
        try:
            report = await self.drainer.flush(timeout=timeout)
        except DrainerBusy as err:  # another process holds the store's delivery (its lease)
            raise ServiceError(str(err), 409) from None
        return {"report": dataclasses.asdict(report), "delivery": await self.drainer.read_status()}

    def end_all(self) -> None:
        """Close every open window into the outbox (the server stops)."""
        if self.tracker is not None and self.store is not None:
            self.tracker.end_all()

    def status(
        self,
        public: bool = False,
        today_start: float | None = None,
        run_id: str | None = None,
        counts: tuple[dict[str, Any], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """What records, where to, and how delivery goes (:func:`.status.status_of`)."""
        return status_of(self, public=public, today_start=today_start, run_id=run_id, counts=counts)
