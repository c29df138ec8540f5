"""``CompletionButton``: the activity, exercises answered, active time and a "Mark complete"
button, made of standard ipywidgets only (no custom JavaScript), so it renders wherever
ipywidgets do: JupyterLab, Notebook 7, VS Code, Colab.

The button is disabled, with the reason beside it, while the policy does not allow completion.
After completion it shows the XP awarded and why (Timeback's XP system, decided by the server)
and stays disabled; the server remembers the completion and its outcome, so a widget made again
after a kernel restart shows them too. ``require`` and ``min_active_minutes`` are sent with the
completion: the server checks them again from the run's record.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ipywidgets as widgets

from ..model import InvalidInput
from .policy import REQUIREMENTS, Requirement, blocker
from .results import CompletionView, RunView
from .session import Current, KernelSession, TimebackError, get_session
from .views import activity_line, completion_line, duration, exercises_line

log = logging.getLogger("timeback_jupyter.kernel")


class CompletionButton(widgets.VBox):
    """Show the run and let the student complete it once.

    ``exercises``: exercise ids the notebook asks (also declared by ``exercise(id)``).
    ``require``: what completion needs: "attempted" (every exercise answered, the default),
    "correct" (every exercise answered correctly) or "nothing".
    ``min_active_minutes``: focused minutes needed before completing.
    """

    def __init__(
        self,
        *,
        exercises: Iterable[str] = (),
        require: Requirement = "attempted",
        min_active_minutes: float = 0.0,
        label: str = "Mark complete",
        session: KernelSession | None = None,
        **kwargs: Any,
    ) -> None:
        if require not in REQUIREMENTS:
            raise InvalidInput("require", f"must be one of {', '.join(REQUIREMENTS)}")
        if (
            isinstance(min_active_minutes, bool)
            or not isinstance(min_active_minutes, int | float)
            or min_active_minutes < 0
        ):
            raise InvalidInput("min_active_minutes", "must be a non-negative number")
        self.session = session or get_session()
        self.require: Requirement = require
        self.min_active_minutes = float(min_active_minutes)
        self.label = label
        self.session.declare(exercises)
        self.title = widgets.HTML()
        self.details = widgets.HTML()
        self.button = widgets.Button(description=label, icon="check", button_style="success")
        self.message = widgets.HTML()
        self.button.on_click(self._guard(self._click))
        # What completing answered, shown while the run stays completed.
        self.completion: CompletionView | None = None
        super().__init__([self.title, self.details, self.button, self.message], **kwargs)
        # `jupyter timeback strip` finds this widget's saved state by this class.
        self.add_class("timeback-completion")
        self.session.watch(self)
        self.refresh()

    # ---- state -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Fetch the run again and show it."""
        try:
            current: Current | None = self.session.current()
            problem = None
        except TimebackError as err:
            current, problem = None, str(err)
        self.show(current, problem)

    def show(self, current: Current | None, problem: str | None = None) -> None:
        run = current.run if current is not None else None
        if run is None:
            self.title.value = "<b>Timeback</b>"
            self.details.value = ""
        else:
            self.title.value = f"<b>{html.escape(activity_line(run['activity']))}</b>"
            parts = [f"{duration(run.get('active_seconds') or 0)} active"]
            exercises = exercises_line(run, self.session.declared)
            if exercises:
                parts.insert(0, exercises)
            self.details.value = html.escape(" · ".join(parts))
        if run is not None and run.get("status") == "completed":
            self._completed(run)
            return
        self.completion = None  # a result shown belongs to a completed run only
        problem = problem or (current.problem if current is not None else None)
        reason = problem or blocker(
            run,
            self.session.declared,
            require=self.require,
            min_active_minutes=self.min_active_minutes,
        )
        self.button.description = self.label
        self.button.disabled = reason is not None
        self.button.tooltip = reason or "Record this activity as completed"
        if reason is None:
            self.message.value = ""
        else:
            prefix = "Timeback is not recording" if problem else "Not yet"
            self.message.value = html.escape(f"{prefix}: {reason}")

    def _completed(self, run: RunView) -> None:
        self.button.description = "Completed"
        self.button.disabled = True
        self.button.tooltip = "This activity is completed"
        # what this click answered, else what the server remembers (a kernel restarted since)
        done: Mapping[str, Any] | None = self.completion or run.get("completion")
        result = f" · {completion_line(done)}" if done else ""
        self.message.value = html.escape(f"Completed (attempt {run.get('attempt')}){result}")

    # ---- the click ---------------------------------------------------------------------------

    def _guard(self, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        """A callback's failure shows in the widget (and the kernel log), never vanishes."""

        def guarded(button: Any) -> None:
            try:
                fn(button)
            except TimebackError as err:
                self.message.value = html.escape(f"Could not complete: {err}")
                self.button.disabled = False
            except Exception as err:
                log.exception("timeback: the completion button failed")
                self.message.value = html.escape(f"Could not complete: {type(err).__name__}: {err}")
                self.button.disabled = False

        return guarded

    def _click(self, _: Any) -> None:
        # Disabled while we ask, so a double click sends one request.
        self.button.disabled = True
        current = self.session.current()
        reason = blocker(
            current.run,
            self.session.declared,
            require=self.require,
            min_active_minutes=self.min_active_minutes,
        )
        if reason is not None and reason != "already completed":
            self.show(current)
            return
        answer = self.session.complete(
            {"require": self.require, "min_active_minutes": self.min_active_minutes or None}
        )
        self.completion = answer
        self.show(self.session.current())
