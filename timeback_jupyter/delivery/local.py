"""The embedded default sink: checked locally, nothing sent."""

from __future__ import annotations

import json
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
        _check(enumerate(data))
        self.accepted += len(data)
        return None

    def accept_stored(self, envelope: caliper.StoredEnvelope) -> None:
        """:meth:`send` for a batch as the outbox stored it (the drainer's path for this
        class, on its store thread): an event our builder made and the store marked so was
        checked where it was built and is accepted unparsed; only the others are parsed and
        checked. Never suspends, so it is a plain call."""
        texts = envelope.texts
        _check((i, _parsed(texts[i])) for i in envelope.unchecked)
        self.accepted += len(texts)

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


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # not JSON: refused below as not an event


def _check(events: Any) -> None:
    """Every ``(index, event)`` through :func:`caliper.check_event`; RejectedError naming each
    bad one (by id, else by index)."""
    problems: list[str] = []
    bad: list[str] = []
    for i, event in events:
        try:
            caliper.check_event(event)
        except caliper.CaliperInputError as err:
            event_id = event.get("id") if isinstance(event, dict) else None
            bad.append(event_id if isinstance(event_id, str) else f"#{i}")
            problems.append(f"event {event_id or i}: {err}")
    if problems:
        raise RejectedError("; ".join(problems), event_ids=bad)
