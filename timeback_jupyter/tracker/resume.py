"""Which run a notebook gets when it starts: the one it names, the one begun at its path, or a
new attempt, with the reason when the one it names cannot be resumed."""

from __future__ import annotations

import logging
from collections.abc import Container
from typing import Any

from ..model import Activity, InvalidInput, Run, new_run_id, parse_run_id
from ..store import Store
from .notebooks import NotebookRuns

log = logging.getLogger("timeback_jupyter.tracker")


class RunChooser:
    """For one student: ``live`` holds the run ids open on this server right now."""

    def __init__(
        self, store: Store, student: str, live: Container[str], notebooks: NotebookRuns
    ) -> None:
        self.store = store
        self.student = student
        self.live = live
        self.notebooks = notebooks

    def choose(
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
                        student=self.student,
                        attempt=candidate["attempt"],
                        started_at=now,
                        origin=path,
                    )
                    # keeps its attempt unless this store has that number already
                    run = self.store.insert_attempt(run)
                    return run, True, ""
                if existing.status == "completed":
                    note = "the run in the notebook is completed: a new attempt starts"
                elif existing.id in self.live:
                    # A copy that lost its origin, opened beside the original: one run must
                    # not belong to two notebooks (ending one would end the other's).
                    elsewhere = self.notebooks.path_of(existing.id)
                    note = f"the run in the notebook is open in {elsewhere}: a new attempt starts"
                elif existing.student != self.student or existing.activity.id != activity.id:
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
            student=self.student,
            attempt=self.store.next_attempt(activity.id, self.student),
            started_at=now,
            origin=path,
        )
        # numbered again in the insert's transaction: another process may have taken it
        run = self.store.insert_attempt(run)
        return run, False, note

    def _unsaved_run_at(self, activity: Activity, path: str) -> Run | None:
        """The open run begun in this notebook when its runId never reached the file.

        The runId is in the file only once saved: a notebook closed unsaved, or a server
        killed before the save, would otherwise leave a stateful run open and start another.
        """
        run = self.store.open_run_at(activity.id, self.student, path)
        if run is None:
            return None
        if run.id in self.live:
            # Live in another notebook here (this path's own live run never gets this far):
            # the same run must not be timed twice, so this notebook gets a new attempt.
            log.info(
                "notebook %s has no runId; run %s begun here is live in %s: a new attempt starts",
                path,
                run.id,
                self.notebooks.path_of(run.id),
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
        if meta.get("student") != self.student:
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
