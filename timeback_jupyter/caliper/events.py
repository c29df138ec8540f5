"""Windows and completions as Caliper events: the runtime path, at the cost of a few dicts.

Every input is checked where it is made (``model.Window``/``Completion``, ``Actor``, ``Target``)
or here (ids, run id, attempt, times), so the event written from them is valid by construction:
no model parses it again. What it writes is the official SDK's output, key for key and in its
order: :mod:`.reference` builds the same event through ``timeback_caliper``'s factories and
models, and ``tests/test_caliper_golden.py`` holds the two equal (and the result valid with the
official models) for random windows, completions, actors and targets. The target's part of an
event (``object``, ``extensions.courseId``) is made once per target (``Target.event_object``),
and a target lives as long as its run.

No SDK import here: building an event costs no pydantic and a kernel's standalone recorder
does not pay the SDK's import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..model import Completion, Window
from .inputs import (
    CALIPER_DATA_VERSION,
    BuiltEvent,
    checked_attempt,
    checked_run_id,
    completion_metrics,
    event_ids,
    json_number,
    seconds,
)
from .targets import Actor, CaliperInputError, Target, absolute_url, iso_ms, iso_time


def _object(target: Target) -> dict[str, Any]:
    # A fresh copy per event: events are handed to callers who may change them.
    o = target.event_object
    return {
        **o,
        "app": dict(o["app"]),
        "course": dict(o["course"]),
        "activity": dict(o["activity"]),
    }


def _head(kind: str, action: str, the_id: str, actor: Actor, target: Target) -> BuiltEvent:
    if not isinstance(actor, Actor):
        raise CaliperInputError("actor", "must be a caliper.Actor")
    if not isinstance(target, Target):
        raise CaliperInputError("target", "must be a caliper.Target")
    return BuiltEvent(
        {
            "@context": CALIPER_DATA_VERSION,
            "id": the_id,
            "type": kind,
            "action": action,
            "actor": {"id": actor.id, "type": "TimebackUser", "email": actor.email},
            "object": _object(target),
        }
    )


def time_spent_event(
    window: Window,
    run_id: str,
    actor: Actor,
    target: Target,
    *,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One heartbeat window as a TimeSpentEvent (a JSON-able dict, a :class:`BuiltEvent`)."""
    if not isinstance(window, Window):
        raise CaliperInputError("window", "must be a model.Window")
    run = checked_run_id(run_id, window.run_id, "window.run_id")
    active, inactive = seconds(window.active), seconds(window.inactive)
    when = iso_time(window.end, "window.end")
    return _time_spent(run, when, active, inactive, actor, target, event_id)


def time_spent_event_ms(
    run_id: str,
    start_ms: int,
    end_ms: int,
    active_ms: int,
    inactive_ms: int,
    actor: Actor,
    target: Target,
    *,
    event_id: str | None = None,
) -> dict[str, Any]:
    """:func:`time_spent_event` of a window in whole milliseconds (the relay's, which reads and
    cuts windows in them): the same event and the same checks as of ``Window(run_id, start_ms /
    1000, ...)``, without making the Window (its checks on floats were a tenth of the relay's
    rules for a heartbeat)."""
    if not (
        type(start_ms) is int
        and type(end_ms) is int
        and type(active_ms) is int
        and type(inactive_ms) is int
        and 0 <= start_ms <= end_ms
        and active_ms >= 0
        and inactive_ms >= 0
        and active_ms + inactive_ms <= end_ms - start_ms
    ):
        raise CaliperInputError(
            "window",
            f"not a window in whole milliseconds: start {start_ms!r}, end {end_ms!r}, "
            f"active {active_ms!r}, inactive {inactive_ms!r}",
        )
    run = checked_run_id(run_id, run_id, "window.run_id")
    try:
        when = iso_ms(end_ms)
    except OverflowError:
        raise CaliperInputError("window.end", f"{end_ms / 1000!r} is out of range") from None
    return _time_spent(run, when, active_ms / 1000, inactive_ms / 1000, actor, target, event_id)


def _time_spent(
    run: str,
    event_time: str,  # the window's end, ISO 8601 in ms
    active: float,
    inactive: float,
    actor: Actor,
    target: Target,
    event_id: str | None,
) -> dict[str, Any]:
    items: list[dict[str, Any]] = [{"type": "active", "value": active}]
    if inactive > 0:
        items.append({"type": "inactive", "value": inactive})
    the_id, metrics_id = event_ids(event_id)
    event = _head("TimeSpentEvent", "SpentTime", the_id, actor, target)
    event["eventTime"] = event_time
    event["profile"] = "TimebackProfile"
    event["generated"] = {
        "id": metrics_id,
        "type": "TimebackTimeSpentMetricsCollection",
        "items": items,
    }
    event["session"] = f"urn:uuid:{run}"
    event["extensions"] = {"runId": run, "courseId": target.course_id}
    return event


def completion_event(
    completion: Completion,
    run_id: str,
    attempt: int,
    actor: Actor,
    target: Target,
    *,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A run's completion as an ActivityEvent/Completed (a JSON-able dict, a BuiltEvent)."""
    if not isinstance(completion, Completion):
        raise CaliperInputError("completion", "must be a model.Completion")
    run = checked_run_id(run_id, completion.run_id, "completion.run_id")
    checked_attempt(attempt)
    the_id, metrics_id = event_ids(event_id)
    event = _head("ActivityEvent", "Completed", the_id, actor, target)
    event["eventTime"] = iso_time(completion.at, "completion.at")
    event["profile"] = "TimebackProfile"
    generated: dict[str, Any] = {
        "id": metrics_id,
        "type": "TimebackActivityMetricsCollection",
        "items": [{"type": kind, "value": v} for kind, v in completion_metrics(completion)],
        "attempt": attempt,
    }
    if completion.pct_complete is not None:
        generated["extensions"] = {"pctCompleteApp": json_number(completion.pct_complete)}
    event["generated"] = generated
    event["session"] = f"urn:uuid:{run}"
    event["extensions"] = {"runId": run, "courseId": target.course_id}
    return event


def envelope(events: list[dict[str, Any]], sensor: str, send_time: float) -> dict[str, Any]:
    """One Caliper envelope holding ``events`` as the official client posts it
    (:func:`.reference.official_envelope` is the same through the SDK's model)."""
    if not isinstance(events, list) or not events:
        raise CaliperInputError("events", "must be a non-empty list of events")
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise CaliperInputError(f"events[{i}]", "must be an event dict")
    return {
        "sensor": absolute_url(sensor, "sensor"),
        "sendTime": iso_time(send_time, "send_time"),
        "dataVersion": CALIPER_DATA_VERSION,
        "data": [dict(e) for e in events],
    }


@dataclass(frozen=True, slots=True)
class StoredEnvelope:
    """An envelope of events kept as the JSON text the outbox stored, not parsed: what a sink
    that only checks needs (the local sink: just the events in ``unchecked``, the indexes of
    those no builder of ours made), and a body to post as it is (:meth:`text`)."""

    sensor: str
    send_time: str
    texts: list[str]
    unchecked: list[int]

    def text(self) -> str:
        """The envelope's JSON: the stored texts spliced in, no event parsed or dumped again
        (parsed, equal to :func:`envelope` of the parsed events)."""
        head = {"sensor": self.sensor, "sendTime": self.send_time}
        head["dataVersion"] = CALIPER_DATA_VERSION
        text = json.dumps(head, separators=(",", ":"))
        return f'{text[:-1]},"data":[{",".join(self.texts)}]}}'


def stored_envelope(
    texts: list[str], sensor: str, send_time: float, unchecked: list[int]
) -> StoredEnvelope:
    """:func:`envelope` for events as stored (JSON texts), with the same checks of its head."""
    if not isinstance(texts, list) or not texts or not all(type(t) is str for t in texts):
        raise CaliperInputError("events", "must be a non-empty list of stored events")
    return StoredEnvelope(
        absolute_url(sensor, "sensor"), iso_time(send_time, "send_time"), texts, list(unchecked)
    )
