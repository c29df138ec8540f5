"""The pages' queries (relay/views.py) on a real relay store, fed by ingest as a hub would."""

from __future__ import annotations

import csv
import io
import re

import pytest

from timeback_jupyter.relay import charts, views
from timeback_jupyter.relay.access import Viewer, read_scope
from timeback_jupyter.relay.users import HubUser

from .conftest import ADA, BOB, completion, envelope, run_id, tse

CARL = HubUser("carl")


async def feed(relay, clock):
    """ada: a completed quiz (9/10) and a paused lesson long ago, with one window cut as
    overlapping; bob: working on the lesson right now; carl: nothing."""
    now = clock.t
    quiz, lesson, again = run_id(), run_id(), run_id()
    await relay.ingest(ADA, envelope(tse(quiz, now - 215), tse(quiz, now - 200)))
    await relay.ingest(ADA, envelope(completion(quiz, now - 199, total=10, correct=9)))
    await relay.ingest(ADA, envelope(tse(lesson, now - 3000, slug="fractions-lesson")))
    # the same wall-clock window again, from a second tab: cut
    await relay.ingest(ADA, envelope(tse(again, now - 3000, slug="fractions-lesson")))
    bobs = run_id()
    await relay.ingest(BOB, envelope(tse(bobs, now - 20, slug="fractions-lesson")))
    await relay.ingest(BOB, envelope(tse(bobs, now - 5, slug="fractions-lesson")))
    return quiz


def column(view, slug):
    return next(i for i, c in enumerate(view.columns) if c.slug == slug)


@pytest.mark.asyncio
async def test_the_overview_gives_each_cell_its_state_time_xp_and_accuracy(relay, clock):
    await feed(relay, clock)
    view = views.overview(relay.db, relay.catalog, "class-a", ["ada", "bob", "carl"], clock.t)
    quiz, lesson = column(view, "fractions-quiz"), column(view, "fractions-lesson")
    xp = relay.record(ADA)["completions"][0]["xp"]

    ada_quiz = view.cells[("ada", quiz)]
    assert (ada_quiz.state, ada_quiz.active_seconds, ada_quiz.xp) == ("completed", 24.0, xp)
    assert ada_quiz.accuracy == pytest.approx(0.9)
    assert ada_quiz.text() == f"completed · 24s · {xp:g} XP · 90%"
    assert view.state("ada", lesson) == "paused"
    assert view.state("bob", lesson) == "working now"
    assert view.state("bob", quiz) == "not started"
    assert all(view.state("carl", i) == "not started" for i in range(len(view.columns)))
    assert view.working == [("bob", "Fractions lesson")]
    # every activity of the catalog is a column, in the catalog's order
    assert [c.slug for c in view.columns] == ["fractions-quiz", "fractions-lesson",
                                               "strict-quiz", "intro"]  # fmt: skip


@pytest.mark.asyncio
async def test_rows_sort_by_any_column_and_refuse_an_unknown_one(relay, clock):
    await feed(relay, clock)
    view = views.overview(relay.db, relay.catalog, "a", ["carl", "bob", "ada"], clock.t)
    assert [r[0] for r in view.rows()] == ["ada", "bob", "carl"]
    assert [r[0] for r in view.rows("student", descending=True)] == ["carl", "bob", "ada"]
    assert [r[0] for r in view.rows("time", descending=True)] == ["ada", "bob", "carl"]
    lesson = column(view, "fractions-lesson")
    # working now ranks above paused above not started
    assert [r[0] for r in view.rows(f"a{lesson}", descending=True)] == ["bob", "ada", "carl"]
    assert len(view.header()) == len(view.rows()[0]) == len(view.sort_keys())
    with pytest.raises(ValueError, match="cannot sort by 'nope': use one of student"):
        view.rows("nope")


@pytest.mark.asyncio
async def test_the_student_view_has_days_runs_completions_and_cuts(relay, clock):
    await feed(relay, clock)
    view = views.student(relay.db, relay.catalog, "ada", clock.t, days=7)
    assert len(view.days) == 7
    assert view.days[-1][0] == views._day(int(clock.t * 1000))
    assert sum(s for _, s in view.days) == pytest.approx(view.active_seconds)
    # the second tab's 12 s fit only in the 3 free seconds of its 15 s window: 9 s cut
    assert view.active_seconds == 39.0 and view.cut_seconds == 9.0
    # (the injected clock stands still: runs first seen at once, in either order)
    assert sorted((r["activity"], r["attempt"], r["state"]) for r in view.runs) == [
        ("Fractions lesson", 1, "paused"),
        ("Fractions lesson", 2, "paused"),
        ("Fractions quiz", 1, "completed"),
    ]
    (done,) = view.completions
    assert done["activity"] == "Fractions quiz" and done["accuracy"] == "90%"
    assert done["reasons"] and all(done["reasons"])
    assert [(c["activity"], c["forwarded"], c["cut"]) for c in view.cuts] == [
        ("Fractions lesson", "3s", "9s")
    ]
    assert views.student(relay.db, relay.catalog, "nobody", clock.t).runs == []


def test_days_split_a_span_at_midnight():
    midnight = 20_000 * views.DAY_MS
    out = views._per_day([(midnight - 4000, midnight + 6000)], 0)
    assert out == {views._day(midnight - 1): 4.0, views._day(midnight): 6.0}


def test_durations_read_as_people_write_them():
    assert [views.duration(s) for s in (0, 59.4, 61, 3600, 7322)] == [
        "0s", "59s", "1m 01s", "1h 00m", "2h 02m"
    ]  # fmt: skip


def test_the_chart_is_an_image_with_its_values_in_words():
    svg = charts.bar_chart([("2026-01-01", 90.0), ("2026-01-02", 0.0)], "Time of <ada>", "c")
    assert 'role="img"' in svg and 'aria-labelledby="c-title c-desc"' in svg
    assert "Time of &lt;ada&gt;" in svg and "<ada>" not in svg
    assert "2026-01-01: 1.5 min; 2026-01-02: 0.0 min" in svg
    assert len(re.findall("<rect ", svg)) == 2


def test_a_viewer_sees_what_the_hub_scopes_grant():
    scope = read_scope("timeback-relay")
    teacher = Viewer.from_model(
        {"name": "tina", "scopes": [f"{scope}!group=class-a", "read:users:name!user=tina"]},
        "timeback-relay",
    )
    assert teacher.groups == frozenset({"class-a"}) and teacher.teaches
    assert teacher.may_see_class("class-a") and not teacher.may_see_class("class-b")
    assert teacher.may_see_student("ada", ["class-a"])
    assert not teacher.may_see_student("bob", ["class-b"])
    student = Viewer.from_model({"name": "ada", "scopes": []}, "timeback-relay")
    assert not student.teaches and not student.may_see_class("class-a")
    assert student.may_see_student("ada", []) and not student.may_see_student("bob", [])
    # a scope of another service grants nothing here
    other = Viewer.from_model({"name": "x", "scopes": ["custom:other:read"]}, "timeback-relay")
    assert other.groups == frozenset()
    for everything in ({"name": "p", "admin": True}, {"name": "p", "scopes": [scope]}):
        assert Viewer.from_model(everything, "timeback-relay").may_see_class("any")


def test_csv_of_rows_round_trips():
    # what the export writes is the rows as text: commas and quotes survive
    rows = [["a,b", 'say "hi"', "completed · 24s"]]
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    assert list(csv.reader(io.StringIO(out.getvalue()))) == rows
