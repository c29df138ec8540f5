"""The relay's cheaper ways to the same events: a window in whole milliseconds without a
``model.Window``, uuid5 ids spelled out. Each is held equal to the plain way, byte for byte."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timeback_jupyter.caliper import (
    Actor,
    CaliperInputError,
    Target,
    time_spent_event,
    time_spent_event_ms,
)
from timeback_jupyter.caliper.inputs import uuid5_urn
from timeback_jupyter.model import InvalidInput, Window, new_run_id

from .test_caliper_golden import EVENT_IDS, GOLDEN, actors, targets


@st.composite
def ms_windows(draw: st.DrawFn) -> tuple[int, int, int, int]:
    start = draw(st.integers(0, 4_000_000_000_000))
    length = draw(st.integers(0, 600_000))
    active = draw(st.integers(0, length))
    inactive = draw(st.integers(0, length - active))
    return start, start + length, active, inactive


@GOLDEN
@given(window=ms_windows(), actor=actors(), target=targets(), event_id=EVENT_IDS)
def test_a_window_in_milliseconds_is_the_same_event(
    window: tuple[int, int, int, int], actor: Actor, target: Target, event_id: str
) -> None:
    start, end, active, inactive = window
    run_id = new_run_id()
    fast = time_spent_event_ms(run_id, *window, actor, target, event_id=event_id)
    plain = time_spent_event(
        Window(run_id, start / 1000, end / 1000, active / 1000, inactive / 1000),
        run_id,
        actor,
        target,
        event_id=event_id,
    )
    assert json.dumps(fast) == json.dumps(plain)
    assert type(fast) is type(plain)


@pytest.mark.parametrize(
    "window",
    [
        (-1, 15_000, 1_000, 0),  # before the epoch
        (15_000, 0, 0, 0),  # ends before it starts
        (0, 15_000, 12_000, 3_001),  # more than its length
        (0, 15_000, -1, 0),
        (0, 15_000, 0, -1),
        (0, 15_000.0, 1_000, 0),  # not whole milliseconds
        (0, 15_000, True, 0),
    ],
)
def test_a_window_in_milliseconds_refuses_what_a_window_refuses(window: tuple) -> None:
    start, end, active, inactive = window
    run_id = new_run_id()
    actor = Actor(id="https://x.example/ims/oneroster/rostering/v1p2/users/u", email="u@x.edu")
    target = Target.__new__(Target)  # never reached: the window is refused first
    with pytest.raises(CaliperInputError):
        time_spent_event_ms(run_id, *window, actor, target)
    if all(type(v) is int for v in window):
        with pytest.raises(InvalidInput):
            Window(run_id, start / 1000, end / 1000, active / 1000, inactive / 1000)


def test_a_window_in_milliseconds_refuses_a_run_id_that_is_not_one() -> None:
    actor = Actor(id="https://x.example/ims/oneroster/rostering/v1p2/users/u", email="u@x.edu")
    with pytest.raises(CaliperInputError, match="run_id"):
        time_spent_event_ms("not-a-run", 0, 15_000, 1_000, 0, actor, Target.__new__(Target))


@given(namespace=st.uuids(), name=st.text(st.characters(exclude_categories=("Cs",))))
def test_uuid5_urn_is_uuid5(namespace: uuid.UUID, name: str) -> None:
    assert uuid5_urn(namespace.bytes, name) == f"urn:uuid:{uuid.uuid5(namespace, name)}"
