"""What running an activity notebook recorded, and the assertions a course author makes on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..kernel.results import RunView
from .kernel import CompletionWidget


class NotebookNotCompleted(AssertionError):
    """The notebook did not complete its activity as the test expected; the message says why."""


@dataclass(frozen=True)
class Cell:
    """One code cell as it ran."""

    index: int  # its position in the notebook, counting every cell from 0
    source: str
    stdout: str
    stderr: str
    error: str | None  # "NameError: name 'x' is not defined", None when it ran
    traceback: str


@dataclass(frozen=True)
class Completed:
    """The completion Timeback received (the ActivityEvent's metrics)."""

    event_id: str
    xp_earned: float
    total_questions: int | None
    correct_questions: int | None
    mastered_units: int | None
    pct_complete: float | None


@dataclass(frozen=True)
class NotebookRecord:
    """A notebook run top to bottom in a real kernel of a real Jupyter server.

    ``events`` are the Caliper events of the notebook's run as the stand-in Timeback accepted
    them, in order; it validated each with the official ``timeback_caliper`` models and refuses
    an invalid one (the run helper then fails), so every event here is one Timeback accepts.
    """

    path: str  # the notebook's path as the Jupyter server names it
    cells: tuple[Cell, ...]  # the code cells that ran, up to the first error
    run: RunView | None  # the notebook's run at the end; None if none started
    events: tuple[dict[str, Any], ...]
    widgets: tuple[CompletionWidget, ...]  # the notebook's completion widgets at the end

    @property
    def error(self) -> Cell | None:
        """The cell that raised, if one did."""
        return next((cell for cell in self.cells if cell.error is not None), None)

    @property
    def completion(self) -> Completed | None:
        found = [e for e in self.events if e.get("type") == "ActivityEvent"]
        if not found:
            return None
        event = found[-1]
        items = {i["type"]: i["value"] for i in event["generated"]["items"]}

        def whole(key: str) -> int | None:
            return None if items.get(key) is None else int(items[key])

        return Completed(
            event_id=event["id"],
            xp_earned=float(items.get("xpEarned", 0.0)),
            total_questions=whole("totalQuestions"),
            correct_questions=whole("correctQuestions"),
            mastered_units=whole("masteredUnits"),
            pct_complete=None if items.get("pctComplete") is None else float(items["pctComplete"]),
        )

    @property
    def completed(self) -> bool:
        return self.completion is not None

    @property
    def time_spent(self) -> tuple[dict[str, Any], ...]:
        """The run's heartbeats (TimeSpentEvents)."""
        return tuple(e for e in self.events if e.get("type") == "TimeSpentEvent")

    @property
    def active_seconds(self) -> float:
        """Active time Timeback received for the run."""
        return sum(
            float(item["value"])
            for event in self.time_spent
            for item in event["generated"]["items"]
            if item["type"] == "active"
        )

    def summary(self) -> str:
        """Where the notebook got to, in a few lines: what an author reads when a test fails."""
        lines = []
        if self.run is None:
            lines.append(
                "no run started: the notebook declares no activity (its metadata "
                "'timeback.activity', or 'jupyter.activities' in timeback.config.json) and no "
                "cell started one (%timeback start)"
            )
        else:
            run = self.run
            lines.append(
                f"run {run['id']} of {run['activity']['id']} (attempt {run['attempt']}): "
                f"{run['status']}, {run['active_seconds']:g} s active"
            )
            answers = ", ".join(
                f"{name} {'correct' if ok else 'incorrect'}"
                for name, ok in run["exercises"].items()
            )
            lines.append(f"exercises answered: {answers or 'none'}")
        done = self.completion
        if done is not None:
            lines.append(
                f"completed: {done.correct_questions} of {done.total_questions} correct, "
                f"{done.xp_earned:g} XP"
            )
        if self.error is not None:
            cell = self.error
            lines.append(f"cell {cell.index} raised {cell.error}:\n{cell.traceback.strip()}")
        for widget in self.widgets:
            said = widget.message or "(nothing)"
            lines.append(f"the completion widget ({widget.button!r} button) says: {said}")
        lines += [
            line
            for cell in self.cells
            for line in cell.stderr.splitlines()
            if line.startswith("timeback:")
        ]
        return "\n".join(lines)

    def assert_completed(self, *, correct: int | None = None, total: int | None = None) -> None:
        """The run completed and Timeback received its completion, with ``correct`` of
        ``total`` questions correct when they are given; else :class:`NotebookNotCompleted`
        saying why (the cell that raised, what the completion widget says, ...)."""
        __tracebackhide__ = True
        done = self.completion
        if done is None:
            raise NotebookNotCompleted(
                f"{self.path} did not complete its activity\n{self.summary()}"
            )
        got = (done.correct_questions, done.total_questions)
        if (correct is not None and got[0] != correct) or (total is not None and got[1] != total):
            expected = f"{'?' if correct is None else correct} of {'?' if total is None else total}"
            raise NotebookNotCompleted(
                f"{self.path} completed with {got[0]} of {got[1]} correct, not {expected}\n"
                f"{self.summary()}"
            )
