"""Recording in the kernel itself when no Jupyter server extension is there (plain `jupyter
console`, nbclient, another frontend).

It reuses the core (store, tracker, clock, Caliper events) with the local sink's rules in a
SQLite file of its own, ``<Jupyter data dir>/timeback/standalone.sqlite3``: events are built and
validated and wait in that file's outbox; nothing is sent from a kernel, which holds no
credentials. Time comes from cell runs (the kernel sees no browser). Only imported in that case.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

from jupyter_core.paths import jupyter_data_dir

from .. import identity
from ..config import ConfigError, Timeback
from ..core import build_core
from ..model import Activity
from ..store import StoreError
from ..tracker import TrackerError
from .activities import find_config
from .backend import Current, NoActivity, TimebackError

log = logging.getLogger("timeback_jupyter.kernel")

STORE_NAME = "standalone.sqlite3"


def default_store_path() -> Path:
    return Path(jupyter_data_dir()) / "timeback" / STORE_NAME


def notebook_path(shell: Any, environ: dict[str, str] | os._Environ[str]) -> str | None:
    """The notebook's path when the frontend tells the kernel (VS Code, a Jupyter session)."""
    ns = getattr(shell, "user_ns", None) or {}
    for value in (ns.get("__vsc_ipynb_file__"), environ.get("JPY_SESSION_NAME")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


class LocalBackend:
    mode: Literal["server", "local"] = "local"

    def __init__(
        self,
        *,
        shell: Any = None,
        store_path: str | os.PathLike[str] | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        env = dict(os.environ if environ is None else environ)
        self.store_path = str(store_path or default_store_path())
        self.path = notebook_path(shell, env)
        # The same file %timeback start reads activities from: the first one upwards.
        found = find_config(Path.cwd())
        settings = Timeback(
            sink="local", store_path=self.store_path, config_file=str(found) if found else ""
        )
        try:
            # No credentials: a kernel holds none, and nothing is sent from here.
            core = build_core(settings, environ=env, credentials=None)
        except (identity.IdentityError, ConfigError, StoreError) as err:
            raise TimebackError(str(err)) from None
        self.store = core.store
        self.tracker = core.tracker()
        self.run_id: str | None = None  # the live run
        self.closed: str | None = None  # else the run last ended or completed in this kernel
        if shell is not None:
            shell.events.register("pre_run_cell", self._cell_started)
            shell.events.register("post_run_cell", self._cell_ended)
        atexit.register(self.close)

    def _guarded(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (TrackerError, StoreError) as err:
            raise TimebackError(str(err)) from None

    # ---- signals from the shell ------------------------------------------------------------

    def _signal(self, kind: str) -> None:
        if self.run_id is None or self.run_id not in self.tracker.live_runs():
            return
        try:
            self.tracker.signal(self.run_id, kind)
            self.tracker.tick()
        except Exception as err:  # a failing store must never break a cell
            log.warning("timeback: recording a cell failed: %s", err)

    def _cell_started(self, *_: Any) -> None:
        self._signal("execute_start")

    def _cell_ended(self, *_: Any) -> None:
        self._signal("execute_end")

    # ---- the backend -----------------------------------------------------------------------

    def _run(self) -> str | None:
        return self.run_id or self.closed

    def current(self) -> Current:
        run_id = self._run()
        run = None
        if run_id is not None:
            run = self.tracker.describe(self._guarded(self.tracker.get, run_id))
        return Current("local", self.path, run, f"locally in {self.store_path}")

    def start(self, activity: Activity | None, *, new_attempt: bool) -> dict[str, Any]:
        closed = None if self.closed is None else self._guarded(self.tracker.get, self.closed)
        if activity is None:
            # Without a server there is no notebook metadata: the kernel's last activity, if any.
            if closed is None:
                raise NoActivity("no activity given")
            activity = closed.activity
        if (
            closed is not None
            and closed.status == "completed"
            and closed.activity.id == activity.id
            and not new_attempt
        ):
            # As the server does: starting again must not make a second completion.
            return {
                "run": self.tracker.describe(closed),
                "resumed": False,
                "note": "this notebook's run is completed; ask for a new attempt to start one",
            }
        if self.run_id is not None and self.run_id in self.tracker.live_runs():
            live = self._guarded(self.tracker.get, self.run_id)
            if live.activity.id == activity.id:
                return {"run": self.tracker.describe(live), "resumed": True, "note": ""}
            self._guarded(self.tracker.end, self.run_id)
        metadata_run = None
        if activity.stateful:
            # The notebook's metadata is out of reach: resume this student's latest open run.
            latest = self._guarded(self.store.latest_run, activity.id, self.tracker.student.key)
            if latest is not None and latest.status != "completed":
                metadata_run = {
                    "id": latest.id,
                    "student": latest.student,
                    "status": latest.status,
                    "attempt": latest.attempt,
                }
        result = self._guarded(
            self.tracker.start, activity, metadata_run=metadata_run, now=time.time()
        )
        self.run_id, self.closed = result.run.id, None
        return {
            "run": self.tracker.describe(result.run),
            "resumed": result.resumed,
            "note": result.note,
        }

    def _open(self) -> str:
        run_id = self._run()
        if run_id is None:
            raise TimebackError("no run is open in this kernel: start one first")
        return run_id

    def end(self) -> dict[str, Any]:
        run = self._guarded(self.tracker.end, self._open())
        self.run_id, self.closed = None, run.id
        return {"run": self.tracker.describe(run)}

    def complete(self, metrics: dict[str, Any]) -> dict[str, Any]:
        run_id = self._open()
        result = self._guarded(
            self.tracker.complete,
            run_id,
            xp_earned=metrics.get("xp"),
            total_questions=metrics.get("total"),
            correct_questions=metrics.get("correct"),
            mastered_units=metrics.get("mastered"),
            pct_complete=metrics.get("pct"),
            require=metrics.get("require"),
            min_active_minutes=metrics.get("min_active_minutes"),
        )
        self.run_id, self.closed = None, result.run.id
        return {"run": self.tracker.describe(result.run), **result.answer()}

    def exercise(self, exercise_id: str, correct: bool) -> dict[str, Any]:
        run = self._guarded(self.tracker.exercise, self._open(), exercise_id, correct)
        return {"run": self.tracker.describe(run)}

    def close(self) -> None:
        """Flush the open window into the outbox (kernel shutdown), then close the store."""
        with contextlib.suppress(Exception):
            self.tracker.end_all()
        with contextlib.suppress(Exception):
            self.store.close()
