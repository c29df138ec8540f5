"""The kernel's one connection to timeback, shared by the magic, exercises and widgets.

The backend is chosen once per kernel, at first use: the Jupyter server's timeback extension
when this kernel has a ticket from it, else a local recorder (:mod:`.standalone`) and a one-line
notice saying so. Every refusal reaches the caller as :class:`TimebackError`, one line to show.
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from ..model import Activity, InvalidInput, require_text
from .activities import ConfigActivityError, activity_for
from .backend import Backend, Current, NoActivity, TimebackError
from .bridge import TICKET_WAIT, Bridge, ServerRefused, ServerUnavailable, connection_file
from .policy import exercise_totals
from .results import CompletionView, RunAnswer, RunView, StartView

log = logging.getLogger("timeback_jupyter.kernel")

START_HINT = (
    "give one with `%timeback start ID --name NAME --subject SUBJECT --grade N` or declare it "
    "in the notebook's metadata or in timeback.config.json"
)


class View(Protocol):
    """Something showing the run (a completion widget), refreshed after every change."""

    def show(self, current: Current | None, problem: str | None = None) -> None: ...


class ServerBackend:
    """The kernel routes of the Jupyter server that started this kernel."""

    mode: Literal["server", "local"] = "server"

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def _call(self, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        try:
            return fn(*args)
        except (ServerRefused, ServerUnavailable) as err:
            raise TimebackError(str(err)) from None

    def current(self) -> Current:
        data = self._call(self.bridge.get, "run")
        raw = data.get("status")
        status: dict[str, Any] = raw if isinstance(raw, dict) else {}
        where = f"through the Jupyter server ({status.get('sink', 'unknown')} sink)"
        run = cast(RunView | None, data.get("run"))  # the server's JSON, as it documents it
        problems = tuple(str(p) for p in data.get("problems") or ())
        return Current("server", data.get("path"), run, where, status.get("problem"), problems)

    def start(self, activity: Activity | None, *, new_attempt: bool) -> StartView:
        body: dict[str, Any] = {}
        if activity is not None:
            body["activity"] = activity.to_dict()
        if new_attempt:
            body["new_attempt"] = True
        try:
            return cast(StartView, self.bridge.post("run", body))
        except ServerRefused as err:
            # The server's answer when the notebook's metadata declares no activity.
            if err.status == 404 and activity is None and "declares no" in str(err):
                raise NoActivity(str(err)) from None
            raise TimebackError(str(err)) from None
        except ServerUnavailable as err:
            raise TimebackError(str(err)) from None

    def end(self) -> RunAnswer:
        return cast(RunAnswer, self._call(self.bridge.post, "end", {}))

    def complete(self, metrics: dict[str, Any]) -> CompletionView:
        return cast(CompletionView, self._call(self.bridge.post, "complete", metrics))

    def exercise(self, exercise_id: str, correct: bool) -> RunAnswer:
        answer = self._call(
            self.bridge.post, "exercises", {"exercise": exercise_id, "correct": correct}
        )
        return cast(RunAnswer, answer)

    def close(self) -> None:
        self.bridge.close()


class KernelSession:
    def __init__(
        self,
        shell: Any = None,
        *,
        choose: Callable[[KernelSession], Backend] | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.shell = shell
        self._choose = choose or _default_backend
        self._backend: Backend | None = None
        self.declared: dict[str, None] = {}  # exercises declared by the author, in order
        self._views: weakref.WeakSet[View] = weakref.WeakSet()
        self._hooked = False
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self._choose(self)
        return self._backend

    # ---- operations --------------------------------------------------------------------------

    def current(self) -> Current:
        return self.backend.current()

    def start(self, activity: Activity | None = None, *, new_attempt: bool = False) -> StartView:
        """Start or resume the notebook's run: ``activity``, else the declared one."""
        backend = self.backend
        try:
            answer = backend.start(activity, new_attempt=new_attempt)
        except NoActivity:
            path = backend.current().path
            declared = self._config_activity(path)
            if declared is None:
                raise TimebackError(
                    f"no activity is declared for {path or 'this kernel'}: {START_HINT}"
                ) from None
            answer = backend.start(declared, new_attempt=new_attempt)
        self.refresh_views()
        return answer

    def _config_activity(self, path: str | None) -> Activity | None:
        try:
            found = activity_for(path, Path.cwd())
        except ConfigActivityError as err:
            raise TimebackError(str(err)) from None
        return None if found is None else found[0]

    def ensure_run(self) -> RunView:
        """The notebook's run: started (or resumed after an end) from its declared activity
        when none is open; a completed run stays what it is."""
        run = self.current().run
        if run is not None and (run.get("live") or run.get("status") == "completed"):
            return run
        return self.start()["run"]

    def declare(self, exercise_ids: Iterable[str]) -> list[str]:
        """Exercises the notebook asks; InvalidInput for an id that is not one."""
        if isinstance(exercise_ids, str):
            raise InvalidInput("exercises", "must be a list of ids, not one string")
        ids = [require_text(e, "exercise", 200) for e in exercise_ids]
        for exercise_id in ids:
            self.declared.setdefault(exercise_id, None)
        return ids

    def mark(self, exercise_id: str, correct: bool) -> RunView:
        """Record an exercise's latest answer; a re-run replaces it, never counts twice."""
        try:
            (exercise_id,) = self.declare([exercise_id])
        except InvalidInput as err:
            raise TimebackError(str(err)) from None
        if not isinstance(correct, bool):
            raise TimebackError(f"correct: must be True or False, got {correct!r}")
        self.ensure_run()
        run = self.backend.exercise(exercise_id, correct)["run"]
        self.refresh_views()
        return run

    def complete(self, metrics: dict[str, Any]) -> CompletionView:
        """Complete the run once; ``metrics`` as the REST API takes them (xp, total, ...).

        An ended run is completed as it is (its time is what counts); only a notebook with no
        run at all gets one started first."""
        run = self.current().run
        if run is None:
            run = self.start()["run"]
        body = {key: value for key, value in metrics.items() if value is not None}
        if "total" not in body and "correct" not in body:
            totals = exercise_totals(run, self.declared)
            if totals is not None:
                body["total"], body["correct"] = totals
        answer = self.backend.complete(body)
        self.refresh_views()
        return answer

    def end(self) -> RunAnswer:
        current = self.current()
        if current.run is None or not current.run.get("live"):
            raise TimebackError(
                f"no run is open for {current.path or 'this kernel'}: nothing to end"
            )
        answer = self.backend.end()
        self.refresh_views()
        return answer

    # ---- views -------------------------------------------------------------------------------

    def watch(self, view: View) -> None:
        self._views.add(view)
        if not self._hooked and self.shell is not None:
            # Active time grows while the student works: views catch up after every cell.
            self.shell.events.register("post_run_cell", self._after_cell)
            self._hooked = True

    def _after_cell(self, *_: Any) -> None:
        try:
            self.refresh_views()
        except Exception:  # a view must never break the student's cell
            log.exception("timeback: refreshing the completion widgets failed")

    def refresh_views(self) -> None:
        views = list(self._views)
        if not views:
            return
        try:
            current: Current | None = self.current()
            problem = None
        except TimebackError as err:
            current, problem = None, str(err)
        for view in views:
            view.show(current, problem)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def _default_backend(session: KernelSession) -> Backend:
    try:
        bridge = Bridge(connection_file())
        # Only a kernel of a notebook session waits for its ticket (the server writes it right
        # after the kernel starts); a console or nbclient kernel would wait for nothing.
        bridge.ticket(wait=TICKET_WAIT if os.environ.get("JPY_SESSION_NAME") else 0.0)
        return ServerBackend(bridge)
    except ServerUnavailable as why:
        reason = str(why)
    from .standalone import LocalBackend  # the core is imported only in this case

    try:
        backend = LocalBackend(shell=session.shell)
    except TimebackError as err:
        raise TimebackError(f"{reason}, and recording locally failed: {err}") from None
    session.say(
        f"timeback: {reason}; recording locally in {backend.store_path} "
        "(nothing is sent to Timeback from this kernel)"
    )
    return backend


_session: KernelSession | None = None


def get_session() -> KernelSession:
    """This kernel's session, made at first use."""
    global _session
    if _session is None:
        shell = None
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:
            pass
        _session = KernelSession(shell)
    return _session
