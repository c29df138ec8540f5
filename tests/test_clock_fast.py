"""The clock's short way for a signal to the active run (``runs.go_on``) changes nothing: the
same windows and segments as the general way, and the second-by-second reference's figures,
for sessions of cells run close together (the case it is for)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import timeback_jupyter.clock.engagement as engagement
from timeback_jupyter.clock import EngagementClock

from .test_clock import (
    SMALL,
    T0,
    Reference,
    cell_limits,
    cell_operations,
    check_invariants,
    play_script,
    run_id,
    scripts,
)

REAL = {"heartbeat_interval": 15.0, "idle_after": 120.0, "abandon_after": 600.0,
        "presence_ttl": 20.0, "running_cell_limit": 300.0}  # fmt: skip
# Cells a second or less apart, sometimes a pause long enough to lapse, a window end between.
close_gaps = st.one_of(st.floats(0.0, 1.5, allow_nan=False), st.sampled_from([0.0, 14.9, 130.0]))


def counting(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every answer of the short way, for the test to see it was taken."""
    taken: list[bool] = []
    go_on = engagement.go_on

    def counted(*args: Any) -> bool:
        taken.append(go_on(*args))
        return taken[-1]

    monkeypatch.setattr(engagement, "go_on", counted)
    return taken


def never(*args: Any) -> bool:
    return False


def test_cells_in_quick_succession_take_the_short_way(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = counting(monkeypatch)
    segments: list[tuple[str, float, float, str]] = []
    clock = EngagementClock(**REAL, on_segment=lambda *seg: segments.append(seg))
    rid = run_id(0, 0)
    clock.open(rid, "s0", T0)
    for i in range(100):  # a cell every 0.3 s for 30 s: two windows
        clock.signal(rid, T0 + 0.3 * i, "execute_start")
        clock.signal(rid, T0 + 0.3 * i + 0.1, "execute_end")
    windows = clock.tick(T0 + 30.0)
    assert sum(taken) >= 190  # all but the calls at a window's end
    assert [(w.start - T0, w.end - T0, w.active, w.inactive) for w in windows] == [
        (0.0, 15.0, 15.0, 0.0), (15.0, 30.0, 15.0, 0.0),
    ]  # fmt: skip
    assert sum(s[2] - s[1] for s in segments) == pytest.approx(30.0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts(close_gaps, cell_operations, min_size=12))
def test_the_short_way_hands_out_what_the_general_way_does(
    script: list[tuple[float, tuple[Any, ...]]],
) -> None:
    short = play_script(script, REAL, base=T0)  # the deterministic test shows it is taken
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engagement, "go_on", never)
        general = play_script(script, REAL, base=T0)
    assert short.windows == general.windows
    assert short.segments == general.segments
    check_invariants(short, REAL)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts(st.integers(-1, 3), cell_operations, min_size=12), cell_limits)
def test_close_cells_match_the_second_by_second_reference(
    script: list[tuple[int, tuple[Any, ...]]], limit: int
) -> None:
    knobs = {**SMALL, "running_cell_limit": limit}
    out = play_script(script, knobs, reference=Reference(**knobs))
    check_invariants(out, knobs)
