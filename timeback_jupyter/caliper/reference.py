"""The reference: windows and completions built and checked with the official SDK's models.

The events come out of the official ``timeback_caliper`` factories and are serialized exactly as
its ``EventsResource.send`` does (``model_dump(mode="json", by_alias=True, exclude_none=True)``),
plus ``extensions.runId`` which Timeback's docs show and the SDK 0.4 leaves out. Building one
this way costs about a millisecond of CPU (three passes through pydantic), so the runtime path
is :mod:`.events`, which writes the same dict directly; this module is what it is held to
(``tests/test_caliper_golden.py``), and what ``doctor``, the stand-in and the sinks use to
check an event that did not come from :mod:`.events`.

Everything here is pure: no clock (times come from the Window/Completion), no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from ..model import Completion, Window
from .inputs import (
    ISO_DATETIME,
    checked_attempt,
    checked_run_id,
    completion_metrics,
    event_ids,
    json_number,
    seconds,
)
from .targets import (
    Actor,
    CaliperInputError,
    Target,
    absolute_url,
    activity_url,
    course_url,
    iso_time,
)

# The official SDK (pydantic models over httpx) takes a few hundred ms to import: far more than
# the rest of the extension. It is imported inside the functions that build or check events, so
# loading the extension (Jupyter's start) and the kernel side never pay for it; the server warms
# it in a thread once it has started (server.app._warm_imports).
if TYPE_CHECKING:
    import pydantic
    from timeback_caliper import (
        ActivityCompletedEvent,
        TimebackActivityContext,
        TimebackUser,
        TimeSpentEvent,
    )


@cache
def _event_models() -> dict[str, type[TimeSpentEvent] | type[ActivityCompletedEvent]]:
    from timeback_caliper import ActivityCompletedEvent, TimeSpentEvent

    return {"TimeSpentEvent": TimeSpentEvent, "ActivityEvent": ActivityCompletedEvent}


def _context(target: Target) -> TimebackActivityContext:
    from timeback_caliper import (
        TimebackActivity,
        TimebackActivityContext,
        TimebackApp,
        TimebackCourse,
    )

    return TimebackActivityContext(
        id=activity_url(target.sensor, target.activity, target.course),
        type="TimebackActivityContext",
        subject=target.course.subject,  # type: ignore[arg-type]  # checked against SUBJECTS
        app=TimebackApp(name=target.app_name),
        activity=TimebackActivity(name=target.activity.name),
        course=TimebackCourse(
            id=course_url(target.oneroster_base_url, target.course_id),
            name=target.course.name,
        ),
        process=True,
    )


def _user(actor: Actor) -> TimebackUser:
    from timeback_caliper import TimebackUser

    if not isinstance(actor, Actor):
        raise CaliperInputError("actor", "must be a caliper.Actor")
    return TimebackUser(id=actor.id, type="TimebackUser", email=actor.email)


def _extensions(run_id: str, target: Target) -> dict[str, object]:
    return {"runId": run_id, "courseId": target.course_id}


def _build(factory: Any, payload: Any, what: str) -> dict[str, Any]:
    from pydantic import ValidationError

    try:
        event = factory(input=payload)
    except ValidationError as err:
        raise _validation_error(err, what) from None
    data: dict[str, Any] = event.model_dump(mode="json", by_alias=True, exclude_none=True)
    validate_event(data)
    return data


def official_time_spent_event(
    window: Window,
    run_id: str,
    actor: Actor,
    target: Target,
    *,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One heartbeat window as a TimeSpentEvent (a plain JSON-able dict)."""
    from timeback_caliper import TimeSpentInput, TimeSpentMetric, create_time_spent_event

    if not isinstance(window, Window):
        raise CaliperInputError("window", "must be a model.Window")
    run = checked_run_id(run_id, window.run_id, "window.run_id")
    active, inactive = seconds(window.active), seconds(window.inactive)
    metrics = [TimeSpentMetric(type="active", value=active)]
    if inactive > 0:
        metrics.append(TimeSpentMetric(type="inactive", value=inactive))
    the_id, metrics_id = event_ids(event_id)
    payload = TimeSpentInput(
        actor=_user(actor),
        object=_context(target),
        metrics=metrics,
        event_time=iso_time(window.end, "window.end"),
        id=the_id,
        metrics_id=metrics_id,
        session=f"urn:uuid:{run}",
        extensions=_extensions(run, target),
    )
    return _build(create_time_spent_event, payload, "TimeSpentEvent")


def official_completion_event(
    completion: Completion,
    run_id: str,
    attempt: int,
    actor: Actor,
    target: Target,
    *,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A run's completion as an ActivityEvent/Completed (a plain JSON-able dict)."""
    from timeback_caliper import (
        ActivityCompletedInput,
        TimebackActivityMetric,
        create_activity_event,
    )

    if not isinstance(completion, Completion):
        raise CaliperInputError("completion", "must be a model.Completion")
    run = checked_run_id(run_id, completion.run_id, "completion.run_id")
    checked_attempt(attempt)
    metrics = [
        TimebackActivityMetric(type=kind, value=value)  # type: ignore[arg-type]
        for kind, value in completion_metrics(completion)
    ]
    generated_extensions: dict[str, object] | None = None
    if completion.pct_complete is not None:
        generated_extensions = {"pctCompleteApp": json_number(completion.pct_complete)}
    the_id, metrics_id = event_ids(event_id)
    payload = ActivityCompletedInput(
        actor=_user(actor),
        object=_context(target),
        metrics=metrics,
        attempt=attempt,
        event_time=iso_time(completion.at, "completion.at"),
        id=the_id,
        metrics_id=metrics_id,
        session=f"urn:uuid:{run}",
        extensions=_extensions(run, target),
        generated_extensions=generated_extensions,
    )
    return _build(create_activity_event, payload, "ActivityEvent")


def official_envelope(
    events: list[dict[str, Any]], sensor: str, send_time: float
) -> dict[str, Any]:
    """One Caliper envelope holding ``events`` as the official client posts it."""
    from timeback_caliper import CALIPER_DATA_VERSION, CaliperEnvelope

    if not isinstance(events, list) or not events:
        raise CaliperInputError("events", "must be a non-empty list of events")
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise CaliperInputError(f"events[{i}]", "must be an event dict")
    wrapped = CaliperEnvelope(
        sensor=absolute_url(sensor, "sensor"),
        sendTime=iso_time(send_time, "send_time"),
        dataVersion=CALIPER_DATA_VERSION,
        data=[dict(e) for e in events],
    )
    return wrapped.model_dump(mode="json", by_alias=True)


def _validation_error(err: pydantic.ValidationError, what: str) -> CaliperInputError:
    problems = []
    for issue in err.errors():
        where = ".".join(str(part) for part in issue["loc"]) or what
        problems.append(f"{where}: {issue['msg']}")
    first = err.errors()[0]["loc"] if err.errors() else ()
    field = ".".join(str(part) for part in first) or "event"
    return CaliperInputError(field, f"invalid {what} ({'; '.join(problems)})")


def validate_event(event: dict[str, Any]) -> None:
    """Parse ``event`` back through the official models; CaliperInputError says what is wrong.

    The models accept extra keys and any string as eventTime, so the few things Timeback
    relies on beyond them (context, time format, finite metric values) are checked here.
    """
    from pydantic import ValidationError
    from timeback_caliper import CALIPER_DATA_VERSION

    if not isinstance(event, Mapping):
        raise CaliperInputError("event", f"must be a JSON object, got {type(event).__name__}")
    kind = event.get("type")
    models = _event_models()
    model = models.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise CaliperInputError(
            "type", f"{kind!r} is not one of {', '.join(models)} (the events we send)"
        )
    try:
        parsed = model.model_validate(dict(event))
    except ValidationError as err:
        raise _validation_error(err, kind) from None  # type: ignore[arg-type]
    if parsed.context != CALIPER_DATA_VERSION:
        raise CaliperInputError("@context", f"must be {CALIPER_DATA_VERSION}")
    if not ISO_DATETIME.match(parsed.event_time):
        raise CaliperInputError("eventTime", f"{parsed.event_time!r} is not an ISO-8601 time")
    try:
        datetime.fromisoformat(parsed.event_time.replace("Z", "+00:00"))
    except ValueError:
        raise CaliperInputError(
            "eventTime", f"{parsed.event_time!r} is not a valid date and time"
        ) from None
    for i, item in enumerate(parsed.generated.items):
        if not math.isfinite(item.value):
            raise CaliperInputError(
                f"generated.items.{i}.value", f"{item.type} must be finite, got {item.value!r}"
            )
