"""Checking Caliper envelopes with the official ``timeback_caliper`` models.

A test that passes against the stand-in sent what Timeback accepts: every event is validated
by the model Timeback's own client uses for its type.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from timeback_caliper import CALIPER_DATA_VERSION, ActivityCompletedEvent, TimeSpentEvent

_MODELS = {"TimeSpentEvent": TimeSpentEvent, "ActivityEvent": ActivityCompletedEvent}


def validate_envelope(envelope: Any) -> list[str]:
    """Problems with an envelope and each of its events, via the official models."""
    if not isinstance(envelope, dict):
        return ["envelope: must be a JSON object"]
    problems = []
    if not isinstance(envelope.get("sensor"), str) or not envelope["sensor"].strip():
        problems.append("sensor: must be a non-empty string")
    send_time = envelope.get("sendTime")
    try:
        datetime.fromisoformat(str(send_time).replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"sendTime: {send_time!r} is not an ISO datetime")
    if envelope.get("dataVersion") != CALIPER_DATA_VERSION:
        problems.append(f"dataVersion: must equal {CALIPER_DATA_VERSION}")
    data = envelope.get("data")
    if not isinstance(data, list) or not data:
        problems.append("data: must be a non-empty list")
        return problems
    for i, event in enumerate(data):
        kind = event.get("type") if isinstance(event, dict) else None
        model = _MODELS.get(kind) if isinstance(kind, str) else None
        if model is None:
            problems.append(f"data[{i}].type: {kind!r} is not a Timeback event type")
            continue
        try:
            model.model_validate(event)
        except ValidationError as err:
            for issue in err.errors():
                loc = ".".join(str(p) for p in issue["loc"])
                problems.append(f"data[{i}].{loc}: {issue['msg']}")
    return problems
