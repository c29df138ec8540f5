"""Caliper events: the official SDK's shape, field for field, and clear errors on bad input."""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from timeback.server.handlers.activity.caliper import (
    build_activity_context,
    build_activity_metrics,
    build_oneroster_user_url,
    build_submit_event,
    build_time_spent_event,
    build_time_spent_metrics,
)
from timeback.server.handlers.activity.schema import (
    validate_heartbeat_request,
    validate_submit_request,
)
from timeback.server.timeback import AppConfig as SdkAppConfig
from timeback.server.timeback import _load_config, _resolve_course_for_env
from timeback_caliper import (
    CALIPER_DATA_VERSION,
    ActivityCompletedEvent,
    CaliperClient,
    TimebackUser,
    TimeSpentEvent,
)
from timeback_common import BEYONDAI_CALIPER_PATHS
from timeback_core import get_service_urls

from timeback_jupyter import caliper
from timeback_jupyter.caliper import (
    Actor,
    CaliperInputError,
    Target,
    activity_url,
    completion_event,
    envelope,
    iso_time,
    time_spent_event,
    validate_event,
)
from timeback_jupyter.config import (
    ONEROSTER_BASE_URLS,
    ROSTERING_PATH,
    Course,
    parse_app_config,
)
from timeback_jupyter.model import (
    Activity,
    Completion,
    CourseRef,
    InvalidInput,
    Window,
    new_run_id,
)

ENV = "staging"
SOURCED_ID = "student-sourced-id"
EMAIL = "student@example.edu"
RUN_ID = "3f2b8c1e-6d4a-4e8b-9a1c-2b7d5e9f0a11"
APP = {
    "name": "Notebook Academy",
    # A sensor with a path: the SDK keeps it in object.id, and so must we.
    "sensor": "https://nb.example.edu/lab/",
    "courses": [
        {"subject": "Math", "grade": 3, "ids": {"staging": "m3-stg", "production": "m3-prd"}},
        {"subject": "Other", "courseCode": "CS-101", "ids": {"staging": "cs-stg"}},
        {"subject": "Reading", "grade": 5, "ids": {"production": "r5-prd"}},
        {"subject": "Social Studies", "grade": 4, "ids": {"staging": "ss4-stg"}},
    ],
}
GRADE = {"subject": "Math", "grade": 3}
CODE = {"code": "CS-101"}
# The SDK puts the subject into object.id unquoted, space included; we do the same.
SPACED = {"subject": "Social Studies", "grade": 4}


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def activity(selector: dict[str, Any], slug: str = "fractions-1") -> Activity:
    return Activity(
        id=slug, name="Fractions with Like Denominators", course=CourseRef.from_dict(selector)
    )


def target(selector: dict[str, Any] = GRADE, **changes: Any) -> Target:
    app = parse_app_config(APP, ENV)
    act = changes.pop("activity", None) or activity(selector)
    course = changes.pop("course", None) or app.course_for(act.course)
    fields: dict[str, Any] = {
        "app_name": app.name,
        "sensor": course.sensor,
        "environment": ENV,
        "oneroster_base_url": ONEROSTER_BASE_URLS[ENV],
        "course": course,
        "activity": act,
    }
    fields.update(changes)
    return Target(**fields)


def actor() -> Actor:
    return Actor(id=caliper.user_url(ONEROSTER_BASE_URLS[ENV], SOURCED_ID), email=EMAIL)


def window(active: float = 14.25, inactive: float = 0.75, run_id: str = RUN_ID) -> Window:
    start = epoch("2026-01-15T10:00:00.000Z")
    return Window(run_id=run_id, start=start, end=start + 15.0, active=active, inactive=inactive)


def completion(**changes: Any) -> Completion:
    fields: dict[str, Any] = {
        "run_id": RUN_ID,
        "xp_earned": 10.0,
        "at": epoch("2026-01-15T10:12:00.000Z"),
    }
    fields.update(changes)
    return Completion(**fields)


# ---------------------------------------------------------------------------------------------
# The official SDK's side: its own validators, builders and client, as its handlers use them.


class RecordingTransport:
    """What CaliperClient posts, captured instead of sent."""

    paths = BEYONDAI_CALIPER_PATHS

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.base_url = "https://caliper.invalid"

    async def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.posts.append((path, payload))
        return {"jobId": "job-1"}

    async def close(self) -> None:
        return None


@pytest.fixture
def sdk_app(tmp_path: Path) -> SdkAppConfig:
    path = tmp_path / "timeback.config.json"
    path.write_text(json.dumps(APP), encoding="utf-8")
    raw = _load_config(str(path))
    return SdkAppConfig(
        name=raw.name,
        sensor=raw.sensor,
        launch_url=raw.launch_url,
        courses=[_resolve_course_for_env(c, ENV) for c in raw.courses],
    )


def sdk_actor(base: str, path: str) -> TimebackUser:
    return TimebackUser(
        id=build_oneroster_user_url(base_url=base, rostering_path=path, user_sourced_id=SOURCED_ID),
        type="TimebackUser",
        email=EMAIL,
    )


async def sdk_send(sensor: str, event: Any) -> dict[str, Any]:
    """The envelope the official client posts for one event (as the SDK handlers send)."""
    transport = RecordingTransport()
    client = CaliperClient(transport=transport)
    await client.events.send(sensor, [event])
    [(path, payload)] = transport.posts
    assert path == "/caliper/event"
    return payload


async def sdk_heartbeat(app: SdkAppConfig, body: dict[str, Any]) -> dict[str, Any]:
    """heartbeat_handler.py, steps 2-5, minus auth and dedupe."""
    result = validate_heartbeat_request(body, app)
    assert result.ok, result
    payload, course_config, sensor = result.payload, result.course, result.sensor
    base = get_service_urls(ENV)["oneroster"]
    rostering = "/ims/oneroster/rostering/v1p2"
    context = build_activity_context(
        activity_id=payload.id,
        activity_name=payload.name,
        course_selector=payload.course,
        course_config=course_config,
        app_name=app.name,
        api_env=ENV,
        sensor=sensor,
        oneroster_base_url=base,
        oneroster_rostering_path=rostering,
    )
    event = build_time_spent_event(
        actor=sdk_actor(base, rostering),
        activity_context=context,
        time_spent_metrics=build_time_spent_metrics(payload.elapsed_ms, payload.paused_ms),
        event_time=payload.ended_at,
        course_id=course_config["ids"][ENV],
        run_id=payload.run_id,
    )
    return await sdk_send(sensor, event)


async def sdk_submit(app: SdkAppConfig, body: dict[str, Any], attempt: int) -> dict[str, Any]:
    """submit.py record_completion, steps 5-8, with the attempt given."""
    result = validate_submit_request(body, app)
    assert result.ok, result
    payload, course_config, sensor = result.payload, result.course, result.sensor
    base = get_service_urls(ENV)["oneroster"]
    rostering = "/ims/oneroster/rostering/v1p2"
    context = build_activity_context(
        activity_id=payload.id,
        activity_name=payload.name,
        course_selector=payload.course,
        course_config=course_config,
        app_name=app.name,
        api_env=ENV,
        sensor=sensor,
        oneroster_base_url=base,
        oneroster_rostering_path=rostering,
        process=payload.process,
    )
    pct = body.get("pctComplete")
    event = build_submit_event(
        actor=sdk_actor(base, rostering),
        activity_context=context,
        activity_metrics=build_activity_metrics(payload.metrics),
        event_time=payload.ended_at,
        attempt=attempt if attempt > 0 else None,
        generated_extensions={"pctCompleteApp": pct} if pct is not None else None,
        course_id=course_config["ids"][ENV],
        run_id=body.get("runId"),
    )
    return await sdk_send(sensor, event)


def without_ids(event: dict[str, Any]) -> dict[str, Any]:
    """The event minus what differs by design: ids (random) and our extensions.runId."""
    out = json.loads(json.dumps(event))
    del out["id"]
    del out["generated"]["id"]
    out["extensions"].pop("runId", None)
    return out


def same_json(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    # Strict: key order and 10 vs 10.0 both show up in the serialized text.
    assert json.dumps(without_ids(ours)) == json.dumps(without_ids(theirs))


# ---------------------------------------------------------------------------------------------
# Golden tests


def test_constants_agree_with_the_sdk() -> None:
    for env in ("staging", "production"):
        assert ONEROSTER_BASE_URLS[env] == get_service_urls(env)["oneroster"]
    assert actor().id == build_oneroster_user_url(
        base_url=get_service_urls(ENV)["oneroster"],
        rostering_path=ROSTERING_PATH,
        user_sourced_id=SOURCED_ID,
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("selector", [GRADE, CODE, SPACED], ids=["grade", "code", "spaced"])
@pytest.mark.parametrize(
    ("elapsed_ms", "paused_ms"), [(14250, 750), (15000, 0), (0, 15000), (1, 0)]
)
async def test_heartbeat_matches_the_sdk(
    sdk_app: SdkAppConfig, selector: dict[str, Any], elapsed_ms: int, paused_ms: int
) -> None:
    body = {
        "id": "fractions-1",
        "name": "Fractions with Like Denominators",
        "course": selector,
        "runId": RUN_ID,
        "startedAt": "2026-01-15T10:00:00.000Z",
        "endedAt": "2026-01-15T10:00:15.000Z",
        "elapsedMs": elapsed_ms,
        "pausedMs": paused_ms,
    }
    theirs = (await sdk_heartbeat(sdk_app, body))["data"][0]
    ours = time_spent_event(
        window(elapsed_ms / 1000, paused_ms / 1000), RUN_ID, actor(), target(selector)
    )
    same_json(ours, theirs)
    assert ours["extensions"]["runId"] == RUN_ID
    assert ours["session"] == theirs["session"] == f"urn:uuid:{RUN_ID}"
    assert [i["type"] for i in ours["generated"]["items"]] == (
        ["active", "inactive"] if paused_ms else ["active"]
    )


COMPLETIONS = {
    "xp only": ({"xpEarned": 12}, None, {"xp_earned": 12.0}),
    "fractional xp": ({"xpEarned": 7.5}, None, {"xp_earned": 7.5}),
    "questions": (
        {"xpEarned": 10, "totalQuestions": 10, "correctQuestions": 8},
        None,
        {"xp_earned": 10.0, "total_questions": 10, "correct_questions": 8},
    ),
    "mastered": (
        {"xpEarned": 3, "masteredUnits": 1},
        None,
        {"xp_earned": 3.0, "mastered_units": 1},
    ),
    "pct": ({"xpEarned": 4}, 67, {"xp_earned": 4.0, "pct_complete": 67.0}),
    "fractional pct": ({"xpEarned": 4}, 66.5, {"xp_earned": 4.0, "pct_complete": 66.5}),
    "everything": (
        {"xpEarned": 80, "totalQuestions": 10, "correctQuestions": 10, "masteredUnits": 2},
        100,
        {
            "xp_earned": 80.0,
            "total_questions": 10,
            "correct_questions": 10,
            "mastered_units": 2,
            "pct_complete": 100.0,
        },
    ),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("selector", [GRADE, CODE], ids=["grade", "code"])
@pytest.mark.parametrize("case", list(COMPLETIONS))
async def test_completion_matches_the_sdk(
    sdk_app: SdkAppConfig, selector: dict[str, Any], case: str
) -> None:
    metrics, pct, ours_fields = COMPLETIONS[case]
    body: dict[str, Any] = {
        "id": "fractions-1",
        "name": "Fractions with Like Denominators",
        "course": selector,
        "runId": RUN_ID,
        "endedAt": "2026-01-15T10:12:00.000Z",
        "metrics": metrics,
    }
    if pct is not None:
        body["pctComplete"] = pct
    theirs = (await sdk_submit(sdk_app, body, attempt=2))["data"][0]
    ours = completion_event(completion(**ours_fields), RUN_ID, 2, actor(), target(selector))
    same_json(ours, theirs)
    assert ours["generated"]["attempt"] == 2
    assert ours["extensions"] == {"runId": RUN_ID, "courseId": theirs["extensions"]["courseId"]}


@pytest.mark.asyncio
async def test_envelope_matches_what_the_official_client_posts(sdk_app: SdkAppConfig) -> None:
    ours_event = time_spent_event(window(), RUN_ID, actor(), target())
    sent = await sdk_send(target().sensor, TimeSpentEvent.model_validate(ours_event))
    ours = envelope([ours_event], target().sensor, epoch("2026-01-15T10:00:16.000Z"))
    assert list(ours) == list(sent) == ["sensor", "sendTime", "dataVersion", "data"]
    assert ours["sensor"] == sent["sensor"]
    assert ours["dataVersion"] == sent["dataVersion"] == CALIPER_DATA_VERSION
    # Our event survives the official client's own serialization unchanged.
    assert sent["data"] == ours["data"] == [ours_event]


# ---------------------------------------------------------------------------------------------
# Shape details


def test_envelope_shape_is_exact() -> None:
    events = [
        time_spent_event(window(), RUN_ID, actor(), target()),
        completion_event(completion(), RUN_ID, 1, actor(), target()),
    ]
    env = envelope(events, "https://nb.example.edu", epoch("2026-01-15T10:00:16.250Z"))
    assert env == {
        "sensor": "https://nb.example.edu",
        "sendTime": "2026-01-15T10:00:16.250Z",
        "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2",
        "data": events,
    }
    assert json.loads(json.dumps(env)) == env


@pytest.mark.parametrize(
    ("events", "sensor", "field"),
    [
        ([], "https://nb.example.edu", "events"),
        ("not a list", "https://nb.example.edu", "events"),
        (["x"], "https://nb.example.edu", "events[0]"),
        ([{"type": "TimeSpentEvent"}], "nb.example.edu", "sensor"),
        ([{"type": "TimeSpentEvent"}], "", "sensor"),
    ],
)
def test_envelope_refuses_bad_input(events: Any, sensor: str, field: str) -> None:
    with pytest.raises(CaliperInputError, match=rf"^{field.replace('[', r'\[')}: "):
        envelope(events, sensor, 0.0)


def test_event_time_is_the_window_end_in_milliseconds() -> None:
    event = time_spent_event(window(), RUN_ID, actor(), target())
    assert event["eventTime"] == "2026-01-15T10:00:15.000Z"
    done = completion_event(completion(), RUN_ID, 1, actor(), target())
    assert done["eventTime"] == "2026-01-15T10:12:00.000Z"


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (epoch("2026-01-15T10:00:15.000Z") - 0.0004, "2026-01-15T10:00:15.000Z"),
        (epoch("2026-01-15T10:00:15.000Z") + 0.1234, "2026-01-15T10:00:15.123Z"),
        (epoch("2026-12-31T23:59:59.999Z") + 0.0004, "2026-12-31T23:59:59.999Z"),
        (epoch("2026-12-31T23:59:59.999Z") + 0.0006, "2027-01-01T00:00:00.000Z"),
    ],
)
def test_iso_time(t: float, text: str) -> None:
    assert iso_time(t) == text


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, True, "10", 1e20])
def test_iso_time_refuses_bad_times(bad: Any) -> None:
    with pytest.raises(CaliperInputError, match="^when: "):
        iso_time(bad, "when")


@settings(max_examples=200, deadline=None)
@given(
    length=st.floats(min_value=0.0, max_value=3600.0),
    active_share=st.floats(min_value=0.0, max_value=1.0),
    inactive_share=st.floats(min_value=0.0, max_value=1.0),
    start=st.floats(min_value=0.0, max_value=4e9),
)
def test_any_window_makes_a_valid_event(
    length: float, active_share: float, inactive_share: float, start: float
) -> None:
    active = length * active_share
    inactive = (length - active) * inactive_share
    w = Window(run_id=RUN_ID, start=start, end=start + length, active=active, inactive=inactive)
    event = time_spent_event(w, RUN_ID, actor(), target())
    validate_event(event)
    TimeSpentEvent.model_validate(event)
    items = {i["type"]: i["value"] for i in event["generated"]["items"]}
    assert items["active"] == round(active * 1000) / 1000
    assert ("inactive" in items) == (round(inactive * 1000) > 0)
    if "inactive" in items:
        assert items["inactive"] == round(inactive * 1000) / 1000
    assert abs(epoch(event["eventTime"]) - w.end) <= 0.0005 + 1e-6
    assert json.loads(json.dumps(event, allow_nan=False)) == event


def test_round_trip_through_the_models_is_lossless() -> None:
    for event, model in (
        (time_spent_event(window(), RUN_ID, actor(), target(CODE)), TimeSpentEvent),
        (
            completion_event(
                completion(total_questions=3, correct_questions=2, pct_complete=50),
                RUN_ID,
                3,
                actor(),
                target(CODE),
            ),
            ActivityCompletedEvent,
        ),
    ):
        dumped = model.model_validate(event).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        assert dumped == event


def test_xp_keeps_fractions_and_drops_a_zero_fraction() -> None:
    items = completion_event(completion(xp_earned=2.5), RUN_ID, 1, actor(), target())["generated"][
        "items"
    ]
    assert items == [{"type": "xpEarned", "value": 2.5}]
    items = completion_event(completion(xp_earned=2.0), RUN_ID, 1, actor(), target())["generated"][
        "items"
    ]
    assert items == [{"type": "xpEarned", "value": 2}]
    assert isinstance(items[0]["value"], int)


def test_pct_complete_is_clamped_by_the_model_and_sent_in_generated_extensions() -> None:
    event = completion_event(completion(pct_complete=250), RUN_ID, 1, actor(), target())
    assert event["generated"]["extensions"] == {"pctCompleteApp": 100}
    assert (
        "extensions"
        not in completion_event(completion(), RUN_ID, 1, actor(), target())["generated"]
    )


def test_activity_url() -> None:
    grade, code = target(GRADE), target(CODE)
    assert activity_url("https://a.example", grade.activity, grade.course) == (
        "https://a.example/activities/Math/g3/fractions-1"
    )
    assert activity_url("https://a.example/x/", code.activity, code.course) == (
        "https://a.example/x/activities/CS-101/fractions-1"
    )
    odd = activity(GRADE, slug="a.b~c_d-e")
    assert activity_url("https://a.example", odd, grade.course).endswith("/g3/a.b~c_d-e")


@pytest.mark.parametrize("sensor", ["nb.example.edu", "/lab", "", "https://"])
def test_activity_url_needs_an_absolute_sensor(sensor: str) -> None:
    t = target()
    with pytest.raises(CaliperInputError, match="^sensor: "):
        activity_url(sensor, t.activity, t.course)


def test_activity_url_refuses_a_course_the_activity_does_not_select() -> None:
    other = target(CODE).course
    with pytest.raises(CaliperInputError, match="^activity.course: "):
        activity_url("https://a.example", activity(GRADE), other)


# ---------------------------------------------------------------------------------------------
# Event ids


def test_event_ids_are_stable_when_given() -> None:
    fixed = f"urn:uuid:{uuid.uuid4()}"
    first = time_spent_event(window(), RUN_ID, actor(), target(), event_id=fixed)
    again = time_spent_event(window(), RUN_ID, actor(), target(), event_id=fixed)
    assert first["id"] == fixed
    assert first == again  # generated.id too: a rebuilt event is the same event
    done = completion_event(completion(), RUN_ID, 1, actor(), target(), event_id=fixed)
    assert done["id"] == fixed
    other = time_spent_event(
        window(), RUN_ID, actor(), target(), event_id=f"urn:uuid:{uuid.uuid4()}"
    )
    assert other["generated"]["id"] != first["generated"]["id"]


def test_event_ids_are_unique_uuid4_urns_when_not_given() -> None:
    ids: set[str] = set()
    for _ in range(50):
        event = time_spent_event(window(), RUN_ID, actor(), target())
        for value in (event["id"], event["generated"]["id"]):
            assert value.startswith("urn:uuid:")
            assert uuid.UUID(value.removeprefix("urn:uuid:")).version == 4
            ids.add(value)
    assert len(ids) == 100


@pytest.mark.parametrize("bad", ["", "   ", "no-scheme", "urn: spaced"])
def test_a_given_event_id_must_be_an_iri(bad: str) -> None:
    with pytest.raises(CaliperInputError, match="^event_id: "):
        time_spent_event(window(), RUN_ID, actor(), target(), event_id=bad)


# ---------------------------------------------------------------------------------------------
# Malformed input


def raises(exc: type[Exception], field: str) -> Any:
    return pytest.raises(exc, match=rf"^{field.replace('.', r'\.')}: ")


def test_bad_subject() -> None:
    with raises(InvalidInput, "course.subject"):
        CourseRef(subject="Maths", grade=3)
    # config.Course does not check; a hand-made one is caught when the target is made.
    bad = Course(subject="Maths", grade=3, code=None, ids={ENV: "x"}, sensor="https://a.b")
    with raises(CaliperInputError, "course.subject"):
        target(course=bad)


def test_non_uuid_run_id() -> None:
    with raises(InvalidInput, "window.run_id"):
        window(run_id="run-1")
    with raises(CaliperInputError, "run_id"):
        time_spent_event(window(), "run-1", actor(), target())
    with raises(CaliperInputError, "run_id"):
        completion_event(completion(), "not a uuid", 1, actor(), target())


def test_run_id_must_be_the_window_s() -> None:
    with raises(CaliperInputError, "run_id") as info:
        time_spent_event(window(), new_run_id(), actor(), target())
    assert "window.run_id" in str(info.value)
    # The urn form and upper case name the same run.
    event = time_spent_event(window(), f"urn:uuid:{RUN_ID.upper()}", actor(), target())
    assert event["session"] == f"urn:uuid:{RUN_ID}"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"active": -1.0}, "window.active"),
        ({"active": math.nan}, "window.active"),
        ({"inactive": math.inf}, "window.inactive"),
        ({"inactive": -0.5}, "window.inactive"),
    ],
)
def test_negative_or_nan_time(fields: dict[str, float], field: str) -> None:
    with raises(InvalidInput, field):
        window(**fields)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"xp_earned": -1}, "xp_earned"),
        ({"xp_earned": math.nan}, "xp_earned"),
        ({"total_questions": -1, "correct_questions": 0}, "total_questions"),
        ({"total_questions": 3, "correct_questions": 4}, "correct_questions"),
        ({"total_questions": 3}, "total_questions"),
        ({"correct_questions": 3}, "total_questions"),
        ({"mastered_units": 1.5}, "mastered_units"),
        ({"pct_complete": math.nan}, "pct_complete"),
    ],
)
def test_bad_completion_metrics(fields: dict[str, Any], field: str) -> None:
    with raises(InvalidInput, field):
        completion(**fields)


@pytest.mark.parametrize("attempt", [0, -1, True, 1.0, None])
def test_attempt_must_be_a_positive_integer(attempt: Any) -> None:
    with raises(CaliperInputError, "attempt"):
        completion_event(completion(), RUN_ID, attempt, actor(), target())


@pytest.mark.parametrize(
    ("make", "exc", "field"),
    [
        (lambda: Actor(id="", email=EMAIL), CaliperInputError, "actor.id"),
        (lambda: Actor(id="https://x/users/1", email="  "), CaliperInputError, "actor.email"),
        (lambda: activity(GRADE, slug=""), InvalidInput, "activity.id"),
        (lambda: target(app_name=""), CaliperInputError, "app_name"),
        (lambda: target(oneroster_base_url="api.example"), CaliperInputError, "oneroster_base_url"),
        (lambda: target(environment="dev"), CaliperInputError, "environment"),
    ],
)
def test_empty_or_bad_ids(make: Any, exc: type[Exception], field: str) -> None:
    with raises(exc, field):
        make()


def test_missing_synced_id() -> None:
    reading = activity({"subject": "Reading", "grade": 5})
    with raises(CaliperInputError, "course.ids.staging") as info:
        target(activity=reading)
    assert "Reading G5" in str(info.value)
    assert target(activity=reading, environment="production").course_id == "r5-prd"


@pytest.mark.parametrize("sensor", ["nb.example.edu", "/relative/path", ""])
def test_relative_sensor(sensor: str) -> None:
    with raises(CaliperInputError, "sensor"):
        target(sensor=sensor)


def test_target_course_must_match_the_activity() -> None:
    with raises(CaliperInputError, "activity.course"):
        target(course=target(CODE).course)


def test_errors_are_value_errors_and_invalid_input() -> None:
    err = CaliperInputError("sensor", "is wrong")
    assert isinstance(err, ValueError)
    assert isinstance(err, InvalidInput)
    assert (err.field, str(err)) == ("sensor", "sensor: is wrong")


# ---------------------------------------------------------------------------------------------
# validate_event


def mutated(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(event))
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return out


@pytest.mark.parametrize(
    ("kind", "path", "value", "field"),
    [
        ("tse", "type", "GradeEvent", "type"),
        ("tse", "actor", KeyError, "actor"),
        ("tse", "actor.email", "", "actor.email"),
        ("tse", "object.subject", "Maths", "object.subject"),
        ("tse", "generated.items.0.type", "busy", "generated.items.0.type"),
        ("tse", "generated.items.0.value", math.nan, "generated.items.0.value"),
        ("tse", "eventTime", "yesterday", "eventTime"),
        ("tse", "eventTime", "2026-13-45T10:00:00Z", "eventTime"),
        ("tse", "@context", "http://example.com", "@context"),
        ("ace", "generated.attempt", 0, "generated.attempt"),
        ("ace", "generated.items.0.type", "score", "generated.items.0.type"),
        ("ace", "action", "Started", "action"),
    ],
)
def test_validate_event_names_the_bad_field(kind: str, path: str, value: Any, field: str) -> None:
    good = (
        time_spent_event(window(), RUN_ID, actor(), target())
        if kind == "tse"
        else completion_event(completion(), RUN_ID, 1, actor(), target())
    )
    validate_event(good)
    with raises(CaliperInputError, field):
        validate_event(mutated(good, path, value))


@pytest.mark.parametrize("bad", [None, [], "event", 3])
def test_validate_event_refuses_non_objects(bad: Any) -> None:
    with raises(CaliperInputError, "event"):
        validate_event(bad)
