"""The embedded default sink: checked locally, nothing sent."""

from __future__ import annotations

from typing import Any

from .. import caliper
from .errors import RejectedError
from .sink import JobOutcome, check_envelope


class LocalSink:
    """The embedded default: checks every event and accepts it.

    An event of the shape our builder writes (every event of our outbox) is accepted after a
    check of a few microseconds; anything else (an old row, a hand-made envelope) goes through
    the official models, which name what is wrong (:func:`caliper.check_event`). Building an
    event is where it is checked, once; draining a batch no longer parses it again with
    pydantic, which held the event loop for milliseconds per batch.

    Nothing leaves the machine; the store keeps the accepted events (``jupyter timeback
    export``). Useful with no credentials, and as a dry run of what Timeback would receive.
    """

    name = "local"
    jobs = False  # delivered when kept: no job follows
    remote = False  # accepting has no effect outside the store: no claim needed first

    def __init__(self) -> None:
        self.accepted = 0

    async def send(self, envelope: dict[str, Any]) -> str | None:
        data = check_envelope(envelope)
        problems: list[str] = []
        bad: list[str] = []
        for i, event in enumerate(data):
            try:
                caliper.check_event(event)
            except caliper.CaliperInputError as err:
                event_id = event.get("id") if isinstance(event, dict) else None
                bad.append(event_id if isinstance(event_id, str) else f"#{i}")
                problems.append(f"event {event_id or i}: {err}")
        if problems:
            raise RejectedError("; ".join(problems), event_ids=bad)
        self.accepted += len(data)
        return None

    async def exists(self, event_id: str) -> bool | None:
        # Nothing is stored upstream; accepting an event again has no effect anywhere.
        return False

    async def job_status(self, job_id: str) -> JobOutcome | None:
        # Never asked: send answers no job id.
        return JobOutcome("gone", "the local sink has no jobs")

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return "LocalSink()"
