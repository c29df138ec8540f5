"""What the kernel's session asks of a backend (the server's, or the local recorder), and the
types both answer with. Its own module, so the local recorder needs nothing of the session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..model import Activity
from .results import CompletionView, RunAnswer, RunView, StartView


class TimebackError(Exception):
    """A refusal or failure, worded for the student in one line."""


class NoActivity(TimebackError):
    """The notebook declares no activity and none was given."""


@dataclass(frozen=True)
class Current:
    """Where this kernel's notebook stands: its run (None before a start) and how it records."""

    mode: Literal["server", "local"]
    path: str | None
    run: RunView | None
    where: str
    problem: str | None = None
    # why the notebook's metadata.timeback cannot be used, each naming every problem it found
    problems: tuple[str, ...] = ()


class Backend(Protocol):
    mode: Literal["server", "local"]

    def current(self) -> Current: ...

    def start(self, activity: Activity | None, *, new_attempt: bool) -> StartView: ...

    def end(self) -> RunAnswer: ...

    def complete(self, metrics: dict[str, Any]) -> CompletionView: ...

    def exercise(self, exercise_id: str, correct: bool) -> RunAnswer: ...

    def close(self) -> None: ...
