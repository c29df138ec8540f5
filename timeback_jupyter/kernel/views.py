"""Runs and completions as the short text the magic prints and the widget shows."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from .policy import exercise_ids


def duration(seconds: float) -> str:
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def course_name(activity: Mapping[str, Any]) -> str:
    course = activity.get("course") or {}
    return course.get("code") or f"{course.get('subject', 'Other')} G{course.get('grade')}"


def activity_line(activity: Mapping[str, Any]) -> str:
    model = "stateful" if activity.get("stateful") else "single-session"
    return f"{activity.get('name')} ({activity.get('id')}, {course_name(activity)}, {model})"


def exercises_line(run: Mapping[str, Any] | None, declared: Iterable[str]) -> str | None:
    ids = exercise_ids(run, declared)
    if not ids:
        return None
    marked = (run or {}).get("exercises") or {}
    answered = sum(1 for i in ids if i in marked)
    correct = sum(1 for i in ids if marked.get(i) is True)
    return f"{answered} of {len(ids)} exercises answered, {correct} correct"


def run_line(run: Mapping[str, Any], declared: Iterable[str] = ()) -> str:
    state = run.get("status") if run.get("status") != "active" else run.get("state")
    parts = [
        activity_line(run.get("activity") or {}),
        f"attempt {run.get('attempt')}",
        str(state),
        f"{duration(run.get('active_seconds') or 0)} active",
    ]
    exercises = exercises_line(run, declared)
    if exercises:
        parts.append(exercises)
    parts.append(f"run {run.get('id')}")
    return " · ".join(parts)


def completion_line(answer: Mapping[str, Any]) -> str:
    metrics = answer.get("metrics") or {}
    parts = [f"{number(metrics.get('xpEarned', answer.get('xp_earned', 0)))} XP"]
    if "totalQuestions" in metrics:
        parts.append(
            f"{number(metrics.get('correctQuestions'))}/{number(metrics['totalQuestions'])} "
            "questions correct"
        )
    if "masteredUnits" in metrics:
        parts.append(f"{number(metrics['masteredUnits'])} units mastered")
    if "pctComplete" in metrics:
        parts.append(f"{number(metrics['pctComplete'])}% complete")
    text = ", ".join(parts)
    outcome = answer.get("xp_outcome")
    if isinstance(outcome, Mapping) and outcome.get("reasons"):
        # why this XP, in the policy's words: "0 XP: 6/10 correct, below 80%"
        text += f" ({'; '.join(str(r) for r in outcome['reasons'])})"
    elif answer.get("xp_capped"):  # a completion recorded before the XP policy kept reasons
        text += " (XP capped at 1 per focused minute)"
    return text


def metadata_fix(path: str | None) -> str:
    """How an author fixes a notebook's metadata.timeback (the same words as the status bar)."""
    name = shlex.quote(path) if path else "NOTEBOOK"
    return (
        "correct metadata.timeback in the notebook's metadata (JupyterLab: Property Inspector, "
        f"Notebook metadata), save and reopen it; `jupyter timeback doctor {name}` checks it"
    )
