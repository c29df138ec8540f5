"""When a student may mark an activity complete, and the questions a completion reports.

Pure functions of a run (as the REST API describes it) and the exercises the author declared,
so the widget, the magic and the tests agree on one rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# One definition: the server checks the same rule again (tracker/claims.py).
from ..model import REQUIREMENTS, Requirement

__all__ = ["REQUIREMENTS", "Requirement", "blocker", "exercise_ids", "exercise_totals"]


def exercise_ids(run: Mapping[str, Any] | None, declared: Iterable[str]) -> list[str]:
    """Declared exercises first (in order), then any marked that were never declared."""
    marked = (run or {}).get("exercises") or {}
    return list(dict.fromkeys([*declared, *marked]))


def exercise_totals(
    run: Mapping[str, Any] | None, declared: Iterable[str]
) -> tuple[int, int] | None:
    """(totalQuestions, correctQuestions); an exercise declared but not answered counts as
    a question not answered correctly. None when the notebook has no exercises."""
    ids = exercise_ids(run, declared)
    if not ids:
        return None
    marked = (run or {}).get("exercises") or {}
    return len(ids), sum(1 for i in ids if marked.get(i) is True)


def _listing(ids: list[str], limit: int = 3) -> str:
    shown = ", ".join(ids[:limit])
    return shown if len(ids) <= limit else f"{shown} and {len(ids) - limit} more"


def blocker(
    run: Mapping[str, Any] | None,
    declared: Iterable[str],
    *,
    require: Requirement = "attempted",
    min_active_minutes: float = 0.0,
) -> str | None:
    """Why the run may not be completed now, in one line; None when it may."""
    if run is None:
        return "the activity has not started yet: run the notebook's first cells"
    if run.get("status") == "completed":
        return "already completed"
    marked = run.get("exercises") or {}
    ids = exercise_ids(run, declared)
    if require == "attempted":
        missing = [i for i in ids if i not in marked]
        if missing:
            return f"answer {_listing(missing)} first"
    elif require == "correct":
        wrong = [i for i in ids if marked.get(i) is not True]
        if wrong:
            return f"get {_listing(wrong)} right first"
    needed = min_active_minutes * 60.0 - float(run.get("active_seconds") or 0.0)
    if needed > 0:
        minutes = max(1, round(needed / 60.0))
        return f"keep working: about {minutes} more minute{'s' if minutes != 1 else ''} needed"
    return None
