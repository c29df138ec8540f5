"""Exercises an author declares and marks from code::

    from timeback_jupyter import exercise
    exercise("q1").check(answer == 42)

Declaring makes an exercise count as a question even before it is answered; a re-run of the
cell replaces the answer, so it never counts twice. A refusal (no run, a completed run, no
server) is one line on stderr, never an exception in the student's cell.
"""

from __future__ import annotations

import sys

from .session import KernelSession, TimebackError, get_session


class Exercise:
    def __init__(self, exercise_id: str, session: KernelSession | None = None) -> None:
        self.session = session or get_session()
        (self.id,) = self.session.declare([exercise_id])

    def __repr__(self) -> str:
        return f"exercise({self.id!r})"

    def check(self, condition: object, *, quiet: bool = False) -> bool:
        """Record ``condition`` (truthy: correct) as the answer; return whether it is correct."""
        correct = bool(condition)
        self.mark(correct, quiet=quiet)
        return correct

    def mark(self, correct: bool, *, quiet: bool = False) -> bool:
        """Record the answer; return whether it was recorded."""
        try:
            self.session.mark(self.id, correct)
        except TimebackError as err:
            print(f"timeback: {self.id} not recorded: {err}", file=sys.stderr, flush=True)
            return False
        if not quiet:
            print(f"{self.id}: {'correct ✓' if correct else 'not correct yet ✗'}", flush=True)
        return True


def exercise(exercise_id: str) -> Exercise:
    """Declare the exercise ``exercise_id`` of this notebook (``.check(...)`` answers it)."""
    return Exercise(exercise_id)
