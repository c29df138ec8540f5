"""The runtime event path against the official one, for random inputs.

``caliper.events`` writes each event as a dict directly (no pydantic), ``caliper.reference``
builds it through ``timeback_caliper``'s factories and models (the path the product used before
and the SDK's own). For random windows, completions, attempts, actors and targets the two must
be the same JSON (keys sorted, and in the same order too) and both validate with the official
models. The sinks' quick check (``caliper.is_built_shape``) must never accept what the
official models refuse.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from timeback_caliper import CALIPER_DATA_VERSION, ActivityCompletedEvent, TimeSpentEvent

from timeback_jupyter import caliper
from timeback_jupyter.caliper import (
    Actor,
    CaliperInputError,
    Target,
    check_event,
    completion_event,
    envelope,
    is_built_shape,
    official_completion_event,
    official_envelope,
    official_time_spent_event,
    time_spent_event,
    validate_event,
)
from timeback_jupyter.config import ONEROSTER_BASE_URLS, Course
from timeback_jupyter.model import (
    SUBJECTS,
    Activity,
    Completion,
    CourseRef,
    InvalidInput,
    Window,
    new_run_id,
)

GOLDEN = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Printable text with spaces, accents, slashes and quotes: what a name or id may hold.
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
).filter(lambda s: s.strip() != "")
SLUG = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._~-]{0,30}\Z")
HOST = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){1,2}\Z")
PATH = st.sampled_from(["", "/", "/lab", "/lab/", "/hub/user/x/", "/a%20b"])


@st.composite
def actors(draw: st.DrawFn) -> Actor:
    base = draw(st.sampled_from(sorted(ONEROSTER_BASE_URLS.values())))
    return Actor(id=caliper.user_url(base, draw(TEXT)), email=draw(TEXT))


@st.composite
def targets(draw: st.DrawFn) -> Target:
    env = draw(st.sampled_from(["staging", "production"]))
    subject = draw(st.sampled_from(SUBJECTS))
    by_code = draw(st.booleans())
    code = draw(TEXT) if by_code else None
    grade = None if by_code else draw(st.integers(-1, 13))
    ref = CourseRef(subject=subject, code=code) if by_code else CourseRef(subject, grade)
    sensor = f"https://{draw(HOST)}{draw(PATH)}"
    course = Course(
        subject=subject,
        grade=grade,
        code=ref.code,
        ids={env: draw(TEXT).strip()},
        sensor=sensor,
    )
    return Target(
        app_name=draw(TEXT),
        sensor=sensor,
        environment=env,
        oneroster_base_url=ONEROSTER_BASE_URLS[env],
        course=course,
        activity=Activity(id=draw(SLUG), name=draw(TEXT), course=ref),
    )


@st.composite
def windows(draw: st.DrawFn, run_id: str) -> Window:
    start = draw(st.floats(0, 4e9))
    length = draw(st.floats(0, 3600))
    active = length * draw(st.floats(0, 1))
    inactive = (length - active) * draw(st.floats(0, 1))
    return Window(run_id=run_id, start=start, end=start + length, active=active, inactive=inactive)


NUMBER = st.one_of(st.integers(0, 10_000), st.floats(0, 10_000))


@st.composite
def completions(draw: st.DrawFn, run_id: str) -> Completion:
    total = draw(st.one_of(st.none(), st.integers(1, 200)))
    correct = None if total is None else draw(st.integers(0, total))
    try:
        return Completion(
            run_id=run_id,
            xp_earned=draw(NUMBER),
            at=draw(st.floats(0, 4e9)),
            total_questions=total,
            correct_questions=correct,
            mastered_units=draw(st.one_of(st.none(), st.integers(0, 50))),
            pct_complete=draw(st.one_of(st.none(), st.floats(0, 300), st.integers(0, 300))),
        )
    except InvalidInput:
        # Completion's own rules (model.py) decide what a completion is; only valid ones
        # become events.
        reject()


def text_of(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, allow_nan=False)


def same(fast: dict[str, Any], official: dict[str, Any]) -> None:
    assert text_of(fast) == text_of(official)
    # Stricter than asked: the same key order too, so the outbox holds the SDK's bytes.
    assert json.dumps(fast) == json.dumps(official)


EVENT_IDS = st.one_of(st.uuids().map(lambda u: f"urn:uuid:{u}"), st.just("https://x.example/e/1"))


@GOLDEN
@given(data=st.data(), actor=actors(), target=targets(), event_id=EVENT_IDS)
def test_a_window_is_the_official_event(
    data: st.DataObject, actor: Actor, target: Target, event_id: str
) -> None:
    run_id = new_run_id()
    window = data.draw(windows(run_id))
    fast = time_spent_event(window, run_id, actor, target, event_id=event_id)
    official = official_time_spent_event(window, run_id, actor, target, event_id=event_id)
    same(fast, official)
    TimeSpentEvent.model_validate(fast)
    validate_event(fast)
    assert is_built_shape(fast)


@GOLDEN
@given(
    data=st.data(),
    actor=actors(),
    target=targets(),
    attempt=st.integers(1, 10_000),
    event_id=EVENT_IDS,
)
def test_a_completion_is_the_official_event(
    data: st.DataObject, actor: Actor, target: Target, attempt: int, event_id: str
) -> None:
    run_id = new_run_id()
    done = data.draw(completions(run_id))
    fast = completion_event(done, run_id, attempt, actor, target, event_id=event_id)
    official = official_completion_event(done, run_id, attempt, actor, target, event_id=event_id)
    same(fast, official)
    ActivityCompletedEvent.model_validate(fast)
    validate_event(fast)
    assert is_built_shape(fast)


@settings(max_examples=50, deadline=None)
@given(actor=actors(), target=targets())
def test_fresh_ids_differ_only_in_the_ids(actor: Actor, target: Target) -> None:
    run_id = new_run_id()
    window = Window(run_id=run_id, start=0.0, end=15.0, active=10.0, inactive=5.0)
    fast = time_spent_event(window, run_id, actor, target)
    official = official_time_spent_event(window, run_id, actor, target)
    for event in (fast, official):
        for urn in (event["id"], event["generated"]["id"]):
            assert urn.startswith("urn:uuid:")
            assert str(uuid.UUID(urn[9:])) == urn[9:]
            assert uuid.UUID(urn[9:]).version == 4
    assert fast["id"] != fast["generated"]["id"]
    for event in (fast, official):
        del event["id"], event["generated"]["id"]
    same(fast, official)


@settings(max_examples=50, deadline=None)
@given(actor=actors(), target=targets(), send_time=st.floats(0, 4e9), n=st.integers(1, 5))
def test_an_envelope_is_the_official_envelope(
    actor: Actor, target: Target, send_time: float, n: int
) -> None:
    run_id = new_run_id()
    window = Window(run_id=run_id, start=0.0, end=15.0, active=15.0, inactive=0.0)
    events = [time_spent_event(window, run_id, actor, target) for _ in range(n)]
    fast = envelope(events, target.sensor, send_time)
    assert json.dumps(fast) == json.dumps(official_envelope(events, target.sensor, send_time))
    assert fast["dataVersion"] == CALIPER_DATA_VERSION == caliper.CALIPER_DATA_VERSION


def test_events_do_not_share_the_cached_parts() -> None:
    target = Target(
        app_name="App",
        sensor="https://nb.example.edu",
        environment="staging",
        oneroster_base_url=ONEROSTER_BASE_URLS["staging"],
        course=Course("Math", 3, None, {"staging": "m3"}, "https://nb.example.edu"),
        activity=Activity(id="a", name="A", course=CourseRef("Math", 3)),
    )
    actor = Actor(id="https://x.example/users/1", email="s@example.edu")
    run_id = new_run_id()
    window = Window(run_id=run_id, start=0.0, end=15.0, active=15.0, inactive=0.0)
    first = time_spent_event(window, run_id, actor, target)
    first["object"]["app"]["name"] = "changed"
    first["object"]["subject"] = "Reading"
    second = time_spent_event(window, run_id, actor, target)
    assert second["object"]["app"]["name"] == "App"
    assert second["object"]["subject"] == "Math"


# ---------------------------------------------------------------------------------------------
# The sinks' quick check: a shortcut for our own events, never a hole.

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.sampled_from(["active", "xpEarned", "TimebackUser", "2026-01-15T10:00:15.000Z"]),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += paths(value, (*prefix, i))
    return out


def mutate(event: dict[str, Any], path: tuple[Any, ...], value: Any, delete: bool) -> None:
    node: Any = event
    for part in path[:-1]:
        node = node[part]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value


def official_accepts(event: Any) -> bool:
    try:
        validate_event(event)
    except CaliperInputError:
        return False
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    actor=actors(),
    target=targets(),
    kind=st.sampled_from(["window", "completion"]),
    changes=st.integers(1, 3),
)
def test_the_quick_check_accepts_nothing_the_official_models_refuse(
    data: st.DataObject, actor: Actor, target: Target, kind: str, changes: int
) -> None:
    run_id = new_run_id()
    if kind == "window":
        event = time_spent_event(data.draw(windows(run_id)), run_id, actor, target)
    else:
        event = completion_event(data.draw(completions(run_id)), run_id, 1, actor, target)
    for _ in range(changes):
        where = data.draw(st.sampled_from(paths(event)))
        delete = data.draw(st.booleans()) and not isinstance(where[-1], int)
        mutate(event, where, data.draw(JSON_LEAF), delete)
    if is_built_shape(event):
        assert official_accepts(event), event
    # Whatever the shortcut says, check_event answers as the official models do.
    try:
        check_event(event)
        accepted = True
    except CaliperInputError:
        accepted = False
    assert accepted == official_accepts(event)


def test_the_quick_check_refuses_what_our_builder_never_writes() -> None:
    run_id = new_run_id()
    window = Window(run_id=run_id, start=0.0, end=15.0, active=15.0, inactive=0.0)
    actor = Actor(id="https://x.example/users/1", email="s@example.edu")
    target = Target(
        app_name="App",
        sensor="https://nb.example.edu",
        environment="staging",
        oneroster_base_url=ONEROSTER_BASE_URLS["staging"],
        course=Course("Math", 3, None, {"staging": "m3"}, "https://nb.example.edu"),
        activity=Activity(id="a", name="A", course=CourseRef("Math", 3)),
    )
    good = time_spent_event(window, run_id, actor, target)
    assert is_built_shape(good)
    for path, value in [
        (("eventTime",), "2026-01-15T10:00:15Z"),  # valid, but not how we write it
        (("generated", "items", 0, "value"), math.inf),
        (("generated", "items", 0, "value"), True),
        (("object", "subject"), ["Math"]),
        (("type",), ["TimeSpentEvent"]),
        (("extensions", "extra"), 1),
    ]:
        event = json.loads(json.dumps(good))
        mutate(event, path, value, False)
        assert not is_built_shape(event), path


@settings(max_examples=500, deadline=None)
@given(t=st.one_of(st.floats(0, 253_402_300_799.999), st.integers(0, 253_402_300_799)))
def test_iso_time_writes_what_datetime_writes(t: float) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=round(t * 1000))
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    assert caliper.iso_time(t) == expected


@pytest.mark.parametrize("t", [253_402_300_800.0, 1e20, 10**30])
def test_iso_time_past_year_9999_is_out_of_range(t: float) -> None:
    with pytest.raises(CaliperInputError, match="out of range"):
        caliper.iso_time(t, "when")
