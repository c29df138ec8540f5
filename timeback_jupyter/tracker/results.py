"""What the tracker answers with, and how it refuses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..model import Run


class TrackerError(Exception):
    """A request the tracker refuses; ``status`` is the HTTP status a handler should answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class StartResult:
    run: Run
    resumed: bool
    # Why a new run was made when metadata named one (shown to the student, never an error).
    note: str = ""


@dataclass
class CompletionResult:
    run: Run
    event: dict[str, Any]
    already_completed: bool
    xp_earned: float
    # the XP policy's outcome and its reasons (timeback_jupyter.xp.XpOutcome.to_dict); None for
    # a completion recorded before the policy kept it
    xp_outcome: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def xp_capped(self) -> bool:
        """An explicit claim was cut to what the policy allows."""
        return bool((self.xp_outcome or {}).get("capped"))

    @classmethod
    def from_event(
        cls,
        run: Run,
        event: dict[str, Any],
        *,
        already: bool,
        outcome: dict[str, Any] | None = None,
    ) -> CompletionResult:
        """The result as the stored event says it: a repeat answers what the first one sent."""
        generated = event.get("generated", {})
        items = {i["type"]: i["value"] for i in generated.get("items", [])}
        pct = generated.get("extensions", {}).get("pctCompleteApp")
        if pct is not None:
            items["pctComplete"] = pct
        return cls(
            run=run,
            event=event,
            already_completed=already,
            xp_earned=items.get("xpEarned", 0),
            xp_outcome=outcome,
            metrics=items,
        )

    def answer(self) -> dict[str, Any]:
        """The completion answer, less the run (each face describes it)."""
        return {
            "already_completed": self.already_completed,
            "xp_earned": self.xp_earned,
            "xp_capped": self.xp_capped,
            "xp_outcome": self.xp_outcome,
            "metrics": self.metrics,
            "event_id": self.event.get("id"),
        }
