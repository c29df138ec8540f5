"""The class overview's filters (activity, UTC day, ISO week) and its CSV, on a real relay store
fed by ingest, on SQLite and PostgreSQL (``relay_db_url``)."""

from __future__ import annotations

import csv
import io

import pytest

from timeback_jupyter.relay import filters, views
from timeback_jupyter.relay.export import csv_text, neutralize
from timeback_jupyter.relay.filters import FilterError
from timeback_jupyter.relay.users import HubUser

from .conftest import ADA, BOB, CATALOG, catalog, completion, envelope, make_relay, run_id, tse

# The clock stands at 2026-01-15 11:00 UTC, a Thursday of ISO week 2026-W03 (Jan 12 to 18).
DAY = 86_400.0
JAN13 = 1_768_262_400.0  # 2026-01-13 00:00 UTC
JAN14, JAN15, JAN08 = JAN13 + DAY, JAN13 + 2 * DAY, JAN13 - 5 * DAY
LESSON, QUIZ = "Math G3/fractions-lesson", "Math G3/fractions-quiz"


async def feed(relay, clock):
    """ada: a lesson run across the midnight of Jan 13/14 (7 s before it, 5 s after), a quiz
    worked (24 s) and completed (9/10) on Jan 14; bob: a quiz worked on Jan 8 (12 s) and
    completed today, and the lesson he is working on right now (24 s today). Each envelope
    reaches the relay 1 s after its last event (a run's start and a completion are dated by
    the relay's clock, active time by the window it fits in)."""
    now = clock.t
    assert now == JAN15 + 11 * 3600

    async def send(user, *events, at):
        clock.t = at + 1
        await relay.ingest(user, envelope(*events))

    lesson, quiz, old, live = run_id(), run_id(), run_id(), run_id()
    await send(BOB, tse(old, JAN08 + 12 * 3600), at=JAN08 + 12 * 3600)
    await send(ADA, tse(lesson, JAN14 + 5, slug="fractions-lesson"), at=JAN14 + 5)
    nine = JAN14 + 9 * 3600
    await send(ADA, tse(quiz, nine), tse(quiz, nine + 15), at=nine + 15)
    await send(ADA, completion(quiz, nine + 60, total=10, correct=9), at=nine + 60)
    await send(BOB, completion(old, now - 1800), at=now - 1800)
    await send(BOB, tse(live, now - 20, slug="fractions-lesson"), at=now - 20)
    await send(BOB, tse(live, now - 5, slug="fractions-lesson"), at=now - 5)
    clock.t = now
    return {c["run_id"]: c["xp"] for u in (ADA, BOB) for c in relay.record(u)["completions"]}


def at(relay, clock, **query):
    chosen = filters.parse(
        {k: v if isinstance(v, list) else [v] for k, v in query.items()},
        views.catalog_columns(relay.catalog),
    )
    return views.overview(
        relay.db, relay.catalog, "class-a", ["ada", "bob", "carl"], clock.t, chosen
    )


def cell(view, student, slug):
    return view.cells[(student, next(i for i, c in enumerate(view.columns) if c.slug == slug))]


@pytest.mark.asyncio
async def test_a_day_shows_only_what_happened_in_it(relay, clock):
    xp = await feed(relay, clock)

    jan13 = at(relay, clock, day="2026-01-13")
    assert cell(jan13, "ada", "fractions-lesson").state == "paused"
    assert cell(jan13, "ada", "fractions-lesson").active_seconds == 7.0
    assert cell(jan13, "ada", "fractions-quiz").text() == "nothing in period"
    assert cell(jan13, "bob", "fractions-lesson").state == "nothing in period"
    # a past day: nobody is "working now", even bob who is
    assert jan13.working == [] and not jan13.live_shown

    jan14 = at(relay, clock, day="2026-01-14")
    assert cell(jan14, "ada", "fractions-lesson").active_seconds == 5.0
    quiz = cell(jan14, "ada", "fractions-quiz")
    assert (quiz.state, quiz.active_seconds, quiz.completions) == ("completed", 24.0, 1)
    assert quiz.accuracy == pytest.approx(0.9) and quiz.xp in xp.values()
    assert cell(jan14, "bob", "fractions-quiz").state == "nothing in period"

    today = at(relay, clock, day="2026-01-15")
    assert today.live_shown and today.working == [("bob", "Fractions lesson")]
    assert cell(today, "bob", "fractions-lesson").text() == "working now · 24s"
    # completed today, its time forwarded a week before: 0 s today, the XP today
    bobs = cell(today, "bob", "fractions-quiz")
    assert (bobs.state, bobs.active_seconds, bobs.completions) == ("completed", 0.0, 1)
    assert cell(today, "ada", "fractions-quiz").state == "nothing in period"

    later = at(relay, clock, day="2026-01-16")  # a day to come: nothing, nobody working
    assert not later.live_shown and later.working == []
    assert {c.state for c in later.cells.values()} == {"nothing in period"}


@pytest.mark.asyncio
async def test_a_week_is_monday_to_sunday_and_days_sum_to_all_time(relay, clock):
    await feed(relay, clock)
    w03 = at(relay, clock, week="2026-W03")
    assert cell(w03, "ada", "fractions-lesson").active_seconds == 12.0
    assert cell(w03, "bob", "fractions-quiz").state == "completed"
    assert cell(w03, "bob", "fractions-quiz").active_seconds == 0.0
    assert w03.working == [("bob", "Fractions lesson")]
    w02 = at(relay, clock, week="2026-W02")
    assert cell(w02, "bob", "fractions-quiz").text() == "paused · 12s"
    assert not w02.live_shown and w02.working == []
    assert cell(w02, "ada", "fractions-lesson").state == "nothing in period"

    every = at(relay, clock)
    days = [at(relay, clock, day=f"2026-01-{d:02d}") for d in range(5, 19)]
    for key, whole in every.cells.items():
        assert sum(v.cells[key].active_seconds for v in days) == whole.active_seconds, key
        assert sum(v.cells[key].xp for v in days) == whole.xp, key
        assert sum(v.cells[key].completions for v in days) == whole.completions, key
    assert every.state("bob", 0) == "completed" and every.state("carl", 0) == "not started"


@pytest.mark.asyncio
async def test_an_activity_filter_keeps_its_columns_totals_and_working_now(relay, clock):
    await feed(relay, clock)
    view = at(relay, clock, activity=[LESSON, "CS-101/intro"])
    assert [c.slug for c in view.columns] == ["fractions-lesson", "intro"]
    # sort keys name the catalog's activities, whatever the filter keeps
    assert view.sort_keys() == ["student", "a1", "a3", "time", "xp"]
    ada = next(r for r in view.rows() if r[0] == "ada")
    assert ada == ["ada", "paused · 12s", "not started", "12s", "0"]  # the quiz not counted
    assert view.working == [("bob", "Fractions lesson")]
    assert [r[0] for r in view.rows("a1", descending=True)] == ["bob", "ada", "carl"]
    quiz_only = at(relay, clock, activity=QUIZ)
    assert quiz_only.working == [] and quiz_only.live_shown
    # several filters at once: the quiz on Jan 14
    both = at(relay, clock, activity=QUIZ, day="2026-01-14", sort="time", order="desc")
    assert [r[0] for r in both.rows()] == ["ada", "bob", "carl"]
    assert both.rows()[0][1].startswith("completed · 24s · ")


def test_filters_parse_and_bad_values_say_what_to_send():
    columns = views.catalog_columns(catalog())
    ok = filters.parse({"day": [""], "week": ["2026-W03"], "activity": [QUIZ, QUIZ]}, columns)
    assert ok.activities == (QUIZ,) and ok.period.label == "2026-W03"
    assert (ok.period.end_ms - ok.period.start_ms) == 7 * views.DAY_MS
    assert ok.query() == [("activity", QUIZ), ("week", "2026-W03"), ("sort", "student"),
                          ("order", "asc")]  # fmt: skip
    assert filters.parse({"week": ["2026-W53"]}, columns).period.describe() == (
        "ISO week 2026-W53 (2026-12-28 to 2027-01-03, UTC days)"
    )
    assert filters.parse({}, columns) == filters.Filters()
    bad = {
        "day=2026-13-01": ({"day": ["2026-13-01"]}, "is not a date: send YYYY-MM-DD"),
        "day=2026-02-30": ({"day": ["2026-02-30"]}, "is not a date"),
        "day=15/01/2026": ({"day": ["15/01/2026"]}, "is not a date"),
        "week=2025-W53": ({"week": ["2025-W53"]}, "is not an ISO week: send YYYY-Www"),
        "week=2026-W00": ({"week": ["2026-W00"]}, "is not an ISO week"),
        "week=2026-W3": ({"week": ["2026-W3"]}, "is not an ISO week"),
        "both": ({"day": ["2026-01-14"], "week": ["2026-W03"]}, "by a day or by a week"),
        "two days": ({"day": ["2026-01-14", "2026-01-15"]}, "day was given 2 times"),
        "activity": ({"activity": ["Math G3/nope"]}, "no activity 'Math G3/nope' in the catalog"),
        "empty activity": ({"activity": [""]}, "no activity ''"),
        "order": ({"order": ["up"]}, "order 'up' is not asc or desc"),
        "sort": ({"sort": ["nope"]}, "cannot sort by 'nope': use one of student, a0"),
        "hidden": ({"sort": ["a9"], "activity": [LESSON]}, "cannot sort by 'a9'"),
    }
    for what, (query, message) in bad.items():
        with pytest.raises(FilterError, match=message):
            filters.parse(query, columns)
            pytest.fail(what)


def test_sorting_by_an_activity_the_filter_hides_falls_back_to_students_and_says_so():
    """The form keeps its sort while a teacher unticks the activity it sorts by: the view
    asked for, sorted by student, with a note; not an error page."""
    columns = views.catalog_columns(catalog())
    hidden = columns[0]
    chosen = filters.parse(
        {"sort": ["a0"], "order": ["desc"], "activity": [columns[1].key]}, columns
    )
    assert (chosen.sort, chosen.descending, chosen.activities) == (
        "student",
        True,
        (columns[1].key,),
    )
    assert hidden.name in chosen.note and "Sorted by student" in chosen.note
    assert filters.parse({"sort": ["a0"]}, columns).note == ""


@pytest.mark.asyncio
async def test_the_csv_neutralizes_formulas_in_names(relay_db_url, clock):
    evil = '=HYPERLINK("http://x.invalid","click")'
    data = {**CATALOG, "courses": [dict(CATALOG["courses"][0])]}
    data["courses"][0]["activities"] = [
        {"id": "fractions-quiz", "name": evil, "xp": 10},
        {"id": "fractions-lesson", "name": "+cmd|' /C calc'!A0", "xp": 5},
    ]
    relay = make_relay(relay_db_url(), clock, catalog=catalog(data))
    try:
        students = ["@SUM(1+1)", "-2+3", "\tx", "\rx", "plain", "=2+5"]
        # a class member with no email-like name records nothing, but is a row all the same
        for name in ("-2+3", "plain", "=2+5"):
            await relay.ingest(HubUser(name), envelope(tse(run_id(), clock.t - 300)))
        view = views.overview(relay.db, relay.catalog, "a", students, clock.t)
        text = csv_text(view.header(), view.rows("time", descending=True))
    finally:
        relay.db.close()
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    assert header[1] == "'" + evil + " (Math G3)" and header[2].startswith("'+cmd")
    assert sorted(r[0] for r in rows) == sorted(
        ["'@SUM(1+1)", "'-2+3", "'\tx", "'\rx", "plain", "'=2+5"]
    )
    shown = view.rows("time", descending=True)
    assert rows == [[neutralize(c) for c in r] for r in shown]
    assert all(not r[-1].startswith("-") and not r[-2].startswith("-") for r in shown)
    # only the prefix was added: the text is all there
    assert [[c.removeprefix("'") for c in r] for r in rows] == shown


def test_neutralize_is_owasps_rule():
    for risky in ("=1+1", "+1", "-1", "@x", "\t=1", "\r=1"):
        assert neutralize(risky) == "'" + risky
    for safe in ("ada", "1", "completed · 24s", "", " =1", "'quoted"):
        assert neutralize(safe) == safe
