"""What a report reads from the store: runs, their windows, their completions.

Runs and completions come through :class:`~timeback_jupyter.store.Store`; the windows table has
no reader there, so it is read here over a separate read-only connection (a report never
writes, and WAL lets it read while a server records).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..model import Run, Window
from ..store import Store


@dataclass(frozen=True)
class CompletionInfo:
    """A run's completion as it was reported to Timeback (its ActivityCompletedEvent)."""

    at: float
    xp_earned: float | None
    total_questions: int | None = None
    correct_questions: int | None = None
    mastered_units: int | None = None
    pct_complete: float | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> CompletionInfo:
        generated = event.get("generated") or {}
        items = {item.get("type"): item.get("value") for item in generated.get("items") or []}
        pct = (generated.get("extensions") or {}).get("pctCompleteApp")
        when = str(event.get("eventTime", "")).replace("Z", "+00:00")
        try:
            at = datetime.fromisoformat(when).timestamp()
        except ValueError:
            at = 0.0
        return cls(
            at=at,
            xp_earned=items.get("xpEarned"),
            total_questions=_int(items.get("totalQuestions")),
            correct_questions=_int(items.get("correctQuestions")),
            mastered_units=_int(items.get("masteredUnits")),
            pct_complete=pct,
        )

    def describe(self) -> str:
        """``5 xp, 3/4 correct, 1 mastered, 80%`` (what is known)."""
        parts = []
        if self.xp_earned is not None:
            parts.append(f"{self.xp_earned:g} xp")
        if self.total_questions is not None:
            parts.append(f"{self.correct_questions}/{self.total_questions} correct")
        if self.mastered_units is not None:
            parts.append(f"{self.mastered_units} mastered")
        if self.pct_complete is not None:
            parts.append(f"{self.pct_complete:g}%")
        return ", ".join(parts) or "completed"


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Records:
    runs: list[Run]
    windows: dict[str, list[Window]]  # by run id, in time order
    completions: dict[str, CompletionInfo]  # by run id


def read_records(store: Store) -> Records:
    runs = store.list_runs()
    completions = {}
    for run in runs:
        event = store.get_completion(run.id)
        if event is not None:
            completions[run.id] = CompletionInfo.from_event(event)
    windows: dict[str, list[Window]] = {}
    for window in store.windows():
        windows.setdefault(window.run_id, []).append(window)
    return Records(runs, windows, completions)
