"""Real events for tests, built by :mod:`timeback_jupyter.caliper`, so they validate.

The package's modules are imported when a sample is built: the stand-in itself needs none.
"""

from __future__ import annotations

from typing import Any

SENSOR = "https://notebooks.example.edu"


def _target() -> Any:
    from timeback_jupyter import caliper
    from timeback_jupyter.config import Course
    from timeback_jupyter.model import Activity, CourseRef

    course = Course("Math", 3, None, {"staging": "math-3-stg"}, SENSOR)
    activity = Activity("fractions-1", "Fractions 1", CourseRef("Math", 3))
    return caliper.Target(
        "Jupyter", SENSOR, "staging", "https://api.staging.alpha-1edtech.ai", course, activity
    )


def _actor() -> Any:
    from timeback_jupyter import caliper

    return caliper.Actor(
        "https://api.staging.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/users/s-1",
        "student@example.edu",
    )


def time_spent_events(
    run_id: str, count: int, *, start: float = 1_768_471_200.0
) -> list[dict[str, Any]]:
    """``count`` consecutive 15 s heartbeat events of one run, in order."""
    from timeback_jupyter import caliper
    from timeback_jupyter.model import Window

    target, actor = _target(), _actor()
    return [
        caliper.time_spent_event(
            Window(run_id, start + 15 * i, start + 15 * (i + 1), 12.0, 3.0), run_id, actor, target
        )
        for i in range(count)
    ]


def completion_event(
    run_id: str, *, at: float = 1_768_472_000.0, xp: float = 5.0
) -> dict[str, Any]:
    from timeback_jupyter import caliper
    from timeback_jupyter.model import Completion

    completion = Completion(run_id, xp, at, total_questions=4, correct_questions=3)
    return caliper.completion_event(completion, run_id, 1, _actor(), _target())
