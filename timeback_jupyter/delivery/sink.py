"""What the drainer sends through, and the envelope checks every sink makes first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from ..caliper import CALIPER_DATA_VERSION
from .errors import RejectedError


@dataclass(frozen=True)
class JobOutcome:
    """What a sink learned of one of its jobs: still ``pending``, ``completed`` (its events
    are stored), ``failed``, or ``gone`` (the API no longer knows it); ``detail`` says why."""

    state: Literal["pending", "completed", "failed", "gone"]
    detail: str = ""


@runtime_checkable
class Sink(Protocol):
    """``send`` answers the id of the job that will store the envelope's events, or None
    when they are delivered as soon as accepted (the local sink). A sink that answers job ids
    sets ``jobs = True`` and tells their outcome (``job_status``, None: cannot tell now)."""

    name: str

    async def send(self, envelope: dict[str, Any]) -> str | None: ...

    async def exists(self, event_id: str) -> bool | None: ...

    async def job_status(self, job_id: str) -> JobOutcome | None: ...

    async def aclose(self) -> None: ...


def check_envelope(envelope: Any) -> list[Any]:
    if not isinstance(envelope, dict):
        raise RejectedError("envelope: must be a JSON object")
    if not isinstance(envelope.get("sensor"), str) or not envelope["sensor"].strip():
        raise RejectedError("envelope.sensor: required (a non-empty IRI)")
    if envelope.get("dataVersion") != CALIPER_DATA_VERSION:
        raise RejectedError(f"envelope.dataVersion: must be {CALIPER_DATA_VERSION}")
    if not isinstance(envelope.get("sendTime"), str) or not envelope["sendTime"]:
        raise RejectedError("envelope.sendTime: required (an ISO-8601 time)")
    data = envelope.get("data")
    if not isinstance(data, list) or not data:
        raise RejectedError("envelope.data: must be a non-empty list of events")
    return data
