import math
import uuid

import pytest

from timeback_jupyter.model import (
    Activity,
    Completion,
    CourseRef,
    InvalidInput,
    Run,
    Window,
    finite,
    parse_run_id,
    require_number,
)

RUN = "3f2b8c1e-6d4a-4e8b-9a1c-2b7d5e9f0a11"


def test_run_id_canonical_forms():
    assert parse_run_id(RUN.upper()) == RUN
    assert parse_run_id(f"urn:uuid:{RUN}") == RUN
    assert parse_run_id(f"  {RUN} ") == RUN


@pytest.mark.parametrize(
    "bad", ["", "   ", None, 42, "not-a-uuid", RUN.replace("-", ""), "{" + RUN + "}"]
)
def test_run_id_rejects_anything_but_a_hyphenated_uuid(bad):
    with pytest.raises(InvalidInput, match="run_id"):
        parse_run_id(bad)


def test_course_ref_names_and_validation():
    assert CourseRef("Math", grade=3).name == "Math G3"
    assert CourseRef("Other", code="CS-101").name == "CS-101"
    with pytest.raises(InvalidInput, match=r"course\.subject: 'Maths' is not one of"):
        CourseRef("Maths", grade=3)
    with pytest.raises(InvalidInput, match=r"course\.grade: must be between -1 and 13"):
        CourseRef("Math", grade=14)
    with pytest.raises(InvalidInput, match=r"course\.grade: must be an integer"):
        CourseRef("Math", grade="3")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="needs a grade"):
        CourseRef("Math")
    with pytest.raises(InvalidInput, match=r"course\.code"):
        CourseRef("Math", code="  ")


def test_activity_round_trips_through_metadata_dict():
    activity = Activity("fractions-1", "Fractions", CourseRef("Math", grade=3), stateful=True)
    assert Activity.from_dict(activity.to_dict()) == activity
    # the model name is accepted as the metadata spells it
    data = {"id": "q1", "name": "Quiz", "course": {"code": "CS-101"}, "model": "stateful"}
    assert Activity.from_dict(data).stateful is True


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {"id": "has space", "name": "x", "course": {"subject": "Math", "grade": 3}},
            "activity.id",
        ),
        ({"id": "", "name": "x", "course": {"subject": "Math", "grade": 3}}, "activity.id"),
        ({"id": "a", "name": "x", "course": "Math"}, "activity.course"),
        (
            {"id": "a", "name": "x", "course": {"subject": "Math", "grade": 3}, "stateful": "yes"},
            "activity.stateful",
        ),
        ("not an object", "activity"),
    ],
)
def test_activity_rejects_malformed_metadata(data, field):
    with pytest.raises(InvalidInput) as err:
        Activity.from_dict(data)
    assert err.value.field == field


def test_window_refuses_time_counted_twice():
    Window(RUN, 0.0, 15.0, 10.0, 5.0)
    with pytest.raises(InvalidInput, match="exceeds the wall-clock"):
        Window(RUN, 0.0, 15.0, 10.0, 5.5)
    with pytest.raises(InvalidInput, match="window.active: must not be negative"):
        Window(RUN, 0.0, 15.0, -1.0, 0.0)
    with pytest.raises(InvalidInput, match="window.inactive: must be finite"):
        Window(RUN, 0.0, 15.0, 1.0, math.nan)
    with pytest.raises(InvalidInput, match="before window.start"):
        Window(RUN, 15.0, 0.0, 0.0, 0.0)


def test_completion_rules():
    done = Completion(RUN, 3.0, at=10.0, total_questions=10, correct_questions=8, pct_complete=250)
    assert done.pct_complete == 100.0
    with pytest.raises(InvalidInput, match="go together"):
        Completion(RUN, 1.0, at=1.0, total_questions=3)
    with pytest.raises(InvalidInput, match="go together"):
        Completion(RUN, 1.0, at=1.0, correct_questions=3)
    with pytest.raises(InvalidInput, match="9 correct is more than 3 questions"):
        Completion(RUN, 1.0, at=1.0, total_questions=3, correct_questions=9)
    with pytest.raises(InvalidInput, match="xp_earned: must not be negative"):
        Completion(RUN, -1.0, at=1.0)
    with pytest.raises(InvalidInput, match="xp_earned: must be finite"):
        Completion(RUN, math.nan, at=1.0)
    with pytest.raises(InvalidInput, match="total_questions: must be a whole number"):
        Completion(RUN, 1.0, at=1.0, total_questions=2.5, correct_questions=1)
    with pytest.raises(InvalidInput, match="mastered_units: must be an integer"):
        Completion(RUN, 1.0, at=1.0, mastered_units=True)


def test_activity_xp_without_questions():
    course = CourseRef("Math", grade=3)
    assert Activity("a", "A", course).to_dict().get("xp_without_questions") is None
    marked = Activity.from_dict({"id": "a", "course": {"code": "C"}, "xp_without_questions": True})
    assert marked.xp_without_questions and marked.to_dict()["xp_without_questions"] is True
    with pytest.raises(InvalidInput, match="activity.xp_without_questions: must be true or false"):
        Activity("a", "A", course, xp_without_questions="yes")  # type: ignore[arg-type]


def test_run_validation():
    activity = Activity("a", "A", CourseRef("Math", grade=3))
    run = Run(str(uuid.uuid4()).upper(), activity, student="abc")
    assert run.id == run.id.lower()
    with pytest.raises(InvalidInput, match="run.attempt"):
        Run(RUN, activity, student="abc", attempt=0)
    with pytest.raises(InvalidInput, match="run.status"):
        Run(RUN, activity, student="abc", status="done")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="run.student"):
        Run(RUN, activity, student="")


def test_an_int_beyond_any_float_is_not_a_number_we_take():
    assert not finite(10**400) and finite(10**300) and not finite(math.inf)
    with pytest.raises(InvalidInput, match="must be finite"):
        require_number(10**400, "xp")
