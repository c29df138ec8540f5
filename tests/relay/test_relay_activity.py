"""The activity page's figures (relay/activity_view.py) on a real relay store, on SQLite and
PostgreSQL, from runs of known durations ingested through the real Relay."""

from __future__ import annotations

import copy
import re

import pytest

from timeback_jupyter.relay import activity_view, charts
from timeback_jupyter.relay.users import HubUser
from timeback_jupyter.xp import XpPolicy

from .conftest import CATALOG, catalog, completion, envelope, run_id, tse

WINDOW_ACTIVE = 12.0  # tse(): 12 s active in each 15 s window
# (student, windows of 12 active s, correct answers of 10): minutes = windows / 5
RUNS = {
    "ada": (10, 10),  # 2 min, perfect first attempt: full + bonus
    "bob": (20, 9),  # 4 min, mastered: full
    "carl": (30, 6),  # 6 min, 60%: zero, below 80%
    "dora": (40, 8),  # 8 min, 80% < the 90% threshold: zero, not mastered
    "eve": (175, 10),  # 35 min > 3 x 10 expected: partial, wasteful
    "zed": (50, 10),  # 10 min, a student of another class
}
CLASS = ["ada", "bob", "carl", "dora", "eve"]


async def ingest_run(
    relay, clock, name, windows, correct, *, slug="fractions-quiz", done=True, ago=60.0
):
    """One run of ``windows`` consecutive heartbeats ending ``ago`` seconds before now,
    completed with ``correct`` of 10 right (nothing cut: asserted by the view's minutes)."""
    run = run_id()
    end = clock.t - ago
    events = [tse(run, end - 15 * (windows - 1 - i), slug=slug) for i in range(windows)]
    if done:
        events.append(completion(run, end + 1, total=10, correct=correct, slug=slug))
    result = await relay.ingest(HubUser(name), envelope(*events))
    assert result.count("refused") == 0, result.events
    assert not any(e.get("cut_seconds") for e in result.events), result.events


async def feed(relay, clock):
    for name, (windows, correct) in RUNS.items():
        await ingest_run(relay, clock, name, windows, correct)
    # eve begins a second run, earlier, and leaves it: begun, not completed
    await ingest_run(relay, clock, "eve", 3, 0, done=False, ago=3000)
    # a run of another activity counts nowhere here
    await ingest_run(relay, clock, "ada", 5, 10, slug="fractions-lesson", ago=600)


def view_of(relay, students, slug="fractions-quiz"):
    course, listed = activity_view.find(relay.catalog, slug)
    return activity_view.activity(
        relay.db, course, listed, students, scope="test", policy=XpPolicy()
    )


@pytest.mark.asyncio
async def test_the_distribution_is_the_runs_the_test_made(relay, clock):
    await feed(relay, clock)
    view = view_of(relay, CLASS)
    made = sorted(RUNS[s][0] * WINDOW_ACTIVE / 60 for s in CLASS)
    assert view.minutes == pytest.approx(made) == [2, 4, 6, 8, 35]
    assert (view.completions, view.students, view.started) == (5, 5, 6)
    assert view.expected_xp == 10 and view.wasteful_minutes == 30
    assert view.quartiles() == pytest.approx((4.0, 6.0, 8.0))
    # every bin holds exactly the runs whose minutes fall in it; bins tile 0 .. past the max
    assert view.bins[0].low == 0 and view.bins[-1].high > max(made)
    for before, after in zip(view.bins, view.bins[1:], strict=False):
        assert before.high == after.low
    for b in view.bins:
        assert b.count == sum(1 for m in made if b.low <= m < b.high), b
    assert [b.count for b in view.bins] == [2, 2, 0, 0, 0, 0, 0, 1]
    assert view.width == 5 and view.wasteful_charted  # bins up to 40 min: 30 is inside
    assert (view.faster_than_expected(), view.slower_than_wasteful()) == (4, 1)
    assert "faster than the expected 10 minutes" in view.verdict()

    outcomes = [(g.kind, g.rule, g.count) for g in view.outcomes]
    assert outcomes == [
        ("full", "mastered", 1),
        ("full", "perfect_first_attempt", 1),
        ("partial", "wasteful", 1),
        ("zero", "below_80", 1),
        ("zero", "not_mastered", 1),
    ]
    wasteful = next(g for g in view.outcomes if g.rule == "wasteful")
    (reason,) = wasteful.reasons
    assert "35 focused minutes" in reason and "expected to take 10" in reason


@pytest.mark.asyncio
async def test_the_scope_is_the_students_given_or_everyone(relay, clock):
    await feed(relay, clock)
    everyone = view_of(relay, None)
    assert everyone.minutes == pytest.approx([2, 4, 6, 8, 10, 35])
    # linear between closest ranks: p25 at rank 1.25, median at 2.5, p75 at 3.75
    assert everyone.quartiles() == pytest.approx((4.5, 7.0, 9.5))
    assert everyone.students == 6
    only_zed = view_of(relay, ["zed", "nobody"])
    assert only_zed.minutes == pytest.approx([10.0]) and only_zed.started == 1
    assert "between the expected minutes and the wasteful limit" in only_zed.verdict()
    assert only_zed.width == 1 and not only_zed.wasteful_charted  # bins up to 11 min
    empty = view_of(relay, [])
    assert empty.completions == 0 and empty.quartiles() is None and empty.outcomes == []
    assert sum(b.count for b in empty.bins) == 0 and "No completions yet" in empty.verdict()


@pytest.mark.asyncio
async def test_a_median_past_the_wasteful_limit_says_so(relay, clock):
    await ingest_run(relay, clock, "eve", 175, 10)
    view = view_of(relay, None)
    assert "past the wasteful limit of 30 minutes" in view.verdict()
    assert "3.5x the expected" in view.verdict()


def test_an_unknown_or_ambiguous_activity_is_named():
    with pytest.raises(activity_view.NotFound, match="no activity 'nope'"):
        activity_view.find(catalog(), "nope")
    with pytest.raises(activity_view.NotFound, match="'intro' in course 'Math G3'"):
        activity_view.find(catalog(), "intro", "Math G3")
    course, listed = activity_view.find(catalog(), "intro", "CS-101")
    assert (course.name, listed.name) == ("CS-101", "Intro to Python")
    data = copy.deepcopy(CATALOG)
    data["courses"][1]["activities"].append({"id": "fractions-quiz", "name": "Again", "xp": 2})
    twice = catalog(data)
    with pytest.raises(activity_view.Ambiguous, match="'Math G3', 'CS-101'"):
        activity_view.find(twice, "fractions-quiz")
    assert activity_view.find(twice, "fractions-quiz", "CS-101")[1].name == "Again"


def test_bins_have_a_width_a_reader_takes_in():
    assert activity_view.bin_width(35) == 5 and activity_view.bin_width(10) == 1
    assert activity_view.bin_width(3) == 0.5 and activity_view.bin_width(600) == 60
    bins = activity_view.histogram([0.0, 0.49, 0.5, 12.0], 3)
    assert [(b.low, b.high) for b in bins[:2]] == [(0, 1), (1, 2)]  # span 12: width 1
    assert bins[0].count == 3 and bins[12].count == 1 and len(bins) == 13


def test_the_histogram_is_an_image_with_its_bins_and_marks_in_words():
    svg = charts.histogram(
        [(0, 5, 2), (5, 10, 1), (10, 15, 0)],
        [(10, "expected"), (30, "wasteful <limit>")],
        "Minutes of <quiz>",
        "h",
    )
    assert 'role="img"' in svg and 'aria-labelledby="h-title h-desc"' in svg
    assert "Minutes of &lt;quiz&gt;" in svg and "<quiz>" not in svg
    desc = re.search(r'<desc id="h-desc">(.*?)</desc>', svg).group(1)
    assert desc == (
        "0 to 5 min: 2 completions; 5 to 10 min: 1 completion; 10 to 15 min: 0 completions. "
        "expected at 10 min"
    )  # the wasteful mark is past the last bin: neither drawn nor said
    assert len(re.findall("<rect ", svg)) == 3 and svg.count('class="mark"') == 1
