"""What the drainer sends through, and the envelope checks every sink makes first."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..caliper import CALIPER_DATA_VERSION
from .errors import RejectedError


@runtime_checkable
class Sink(Protocol):
    name: str

    async def send(self, envelope: dict[str, Any]) -> None: ...

    async def exists(self, event_id: str) -> bool | None: ...

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
