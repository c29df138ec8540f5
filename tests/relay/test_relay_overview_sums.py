"""The overview's cells as the database sums them (relay/overview.py) against the same cells
summed here run by run from the stored rows, as the module's docstring states them; and the
accuracy of the latest completion, on SQLite and PostgreSQL (``relay``)."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from timeback_jupyter.relay import filters, views
from timeback_jupyter.relay.cells import LIVE_SECONDS
from timeback_jupyter.relay.schema import active_spans, completions, received, runs
from timeback_jupyter.relay.users import HubUser

from .conftest import ADA, completion, envelope, run_id, tse

DAY = 86_400.0
SLUGS = ("fractions-quiz", "fractions-lesson", "strict-quiz")


def _cell_of(view, student, slug):
    return view.cells[(student, next(i for i, c in enumerate(view.columns) if c.slug == slug))]


@pytest.mark.asyncio
async def test_the_accuracy_is_the_latest_recorded_completion_that_has_questions(relay, clock):
    """Three quiz runs completed one after the other: 6/10, then 9/10, then one without
    questions (which leaves the 9/10 standing); two lessons completed in one envelope (the
    same ``at``): the later run id's is the latest, as the relay ordered them before."""
    now = clock.t
    # the first completed has the highest run id, the latest the lowest: the order is ``at``'s
    first, second = "ffffffff-ffff-4fff-bfff-fffffffffffe", "00000000-0000-4000-8000-000000000002"
    bare = run_id()
    for k, (run, total, correct) in enumerate(
        ((first, 10, 6), (second, 10, 9), (bare, None, None))
    ):
        clock.t = now - 3000 + k * 600
        await relay.ingest(ADA, envelope(tse(run, clock.t - 100)))
        await relay.ingest(ADA, envelope(completion(run, clock.t, total=total, correct=correct)))
    low, high = "00000000-0000-4000-8000-000000000001", "ffffffff-ffff-4fff-bfff-ffffffffffff"
    clock.t = now - 1000
    await relay.ingest(ADA, envelope(
        tse(high, now - 1300, slug="fractions-lesson"),
        tse(low, now - 1200, slug="fractions-lesson"),
        completion(high, now - 1150, total=4, correct=1, slug="fractions-lesson"),
        completion(low, now - 1100, total=4, correct=3, slug="fractions-lesson"),
    ))  # fmt: skip
    clock.t = now
    view = views.overview(relay.db, relay.catalog, "class-a", ["ada"], now)
    quiz = _cell_of(view, "ada", "fractions-quiz")
    xp = {c["run_id"]: c["xp"] for c in relay.record(ADA)["completions"]}
    assert (quiz.state, quiz.runs, quiz.completions) == ("completed", 3, 3)
    assert quiz.accuracy == pytest.approx(0.9)
    assert quiz.xp == pytest.approx(xp[first] + xp[second] + xp[bare])
    assert quiz.active_seconds == 36.0
    lesson = _cell_of(view, "ada", "fractions-lesson")
    assert lesson.completions == 2 and lesson.accuracy == pytest.approx(0.25)  # run id f... last
    assert _cell_of(view, "ada", "strict-quiz").text() == "not started"


# -- the same cells, summed run by run --------------------------------------------------------


def _reference(relay, names, now, period):
    """{(student, slug): (state, runs, active s, completions, xp, accuracy)}: every run and
    completion read into Python and summed one by one (what the overview did before the
    database summed them)."""
    lo, hi = (None, None) if period is None else (period.start_ms, period.end_ms)
    with relay.db.read() as conn:
        run_rows = conn.execute(sa.select(runs).where(runs.c.user_name.in_(names))).all()
        done_rows = conn.execute(
            sa.select(completions).where(completions.c.user_name.in_(names))
        ).all()
        span_rows = conn.execute(
            sa.select(
                active_spans.c.start_ms,
                active_spans.c.end_ms,
                received.c.user_name,
                received.c.run_id,
            )
            .join(received, received.c.key == active_spans.c.event_key)
            .where(active_spans.c.user_name.in_(names))
        ).all()
    if period is not None:
        done_rows = [c for c in done_rows if lo <= c.at * 1000 < hi]
    done = {(c.user_name, c.run_id): c for c in done_rows}
    live_shown = period is None or period.contains(now)
    live = {
        (s.user_name, s.run_id)
        for s in span_rows
        if live_shown and s.end_ms >= (now - LIVE_SECONDS) * 1000
    }
    ms: dict[tuple[str, str], int] = {}
    for s in span_rows:
        start, end = (
            (s.start_ms, s.end_ms) if period is None else (max(s.start_ms, lo), min(s.end_ms, hi))
        )
        if end > start:
            ms[(s.user_name, s.run_id)] = ms.get((s.user_name, s.run_id), 0) + end - start
    cells: dict[tuple[str, str], dict] = {}
    for r in run_rows:
        key = (r.user_name, r.run_id)
        active = r.active_ms if period is None else ms.get(key, 0)
        started = period is None or period.contains(r.first_seen)
        if not (started or active or key in done or key in live):
            continue
        cell = cells.setdefault(
            (r.user_name, r.activity),
            {"live": False, "runs": 0, "ms": 0, "done": [], "xp": 0.0},
        )
        cell["runs"] += 1
        cell["ms"] += active
        cell["live"] = cell["live"] or key in live
        if key in done:
            cell["done"].append(done[key])
    out = {}
    for key, cell in cells.items():
        ordered = sorted(cell["done"], key=lambda c: (c.at, c.run_id))
        shares = [
            c.outcome["correct_questions"] / c.outcome["total_questions"]
            for c in ordered
            if c.outcome.get("total_questions") and c.outcome.get("correct_questions") is not None
        ]
        state = "working now" if cell["live"] else "completed" if ordered else "paused"
        out[key] = (state, cell["runs"], cell["ms"] / 1000, len(ordered),
                    sum(c.xp for c in ordered), shares[-1] if shares else None)  # fmt: skip
    return out


async def _random_class(relay, clock, rng):
    """Three students' runs of three activities over the week before now, some completed
    (with and without questions), some cut as overlapping, two across a midnight, one run
    live; each envelope reaches the relay a second after its last event."""
    now = clock.t
    for name in ("ada", "bob", "carl"):
        user = HubUser(name)
        at = now - 8 * DAY
        for _ in range(rng.randint(4, 9)):
            run, slug = run_id(), rng.choice(SLUGS)
            windows = [tse(run, at + 15 * (w + 1), slug=slug) for w in range(rng.randint(1, 6))]
            end = at + 15 * len(windows)
            clock.t = end + 1
            await relay.ingest(user, envelope(*windows))
            if rng.random() < 0.6:
                total = rng.choice((None, 4, 10))
                right = None if total is None else rng.randint(0, total)
                clock.t = end + rng.choice((2, 3600))
                await relay.ingest(
                    user,
                    envelope(completion(run, clock.t - 1, total=total, correct=right, slug=slug)),
                )
            at = clock.t + rng.uniform(600, DAY)  # may cross a midnight
            if at > now - 600:
                break
    # a run across the midnight of Jan 12/13, sent after it: on Jan 12 it only has time
    midnight = 1_768_262_400.0
    for name in ("ada", "carl"):
        run = run_id()
        clock.t = midnight + 31
        windows = [tse(run, midnight + 15 * k) for k in (-1, 0, 1, 2)]
        await relay.ingest(HubUser(name), envelope(*windows))
    live = run_id()
    for w in (3, 2, 1):
        clock.t = now - 15 * w + 1
        await relay.ingest(HubUser("bob"), envelope(tse(live, now - 15 * w, slug="strict-quiz")))
    clock.t = now


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [1, 2])
async def test_the_databases_sums_are_the_runs_summed_one_by_one(relay, clock, seed):
    await _random_class(relay, clock, random.Random(seed))
    names = ["ada", "bob", "carl", "dora"]  # dora has nothing
    columns = views.catalog_columns(relay.catalog)
    days = [f"2026-01-{d:02d}" for d in range(6, 17)]
    queries = [{}, {"week": ["2026-W03"]}, {"week": ["2026-W02"]},
               *({"day": [d]} for d in days)]  # fmt: skip
    compared = 0
    for query in queries:
        chosen = filters.parse(query, columns)
        view = views.overview(relay.db, relay.catalog, "c", names, clock.t, chosen)
        expected = _reference(relay, names, clock.t, chosen.period)
        empty = "not started" if chosen.period is None else "nothing in period"
        for student in names:
            for i, column in enumerate(view.columns):
                cell = view.cells[(student, i)]
                want = expected.get((student, column.slug))
                if want is None:
                    assert (cell.state, cell.runs, cell.completions) == (empty, 0, 0), query
                    assert cell.active_seconds == 0 and cell.xp == 0 and cell.accuracy is None
                    continue
                state, run_count, seconds, done, xp, share = want
                got = (cell.state, cell.runs, cell.active_seconds, cell.completions)
                assert got == (state, run_count, seconds, done), (query, student, column.slug)
                assert cell.xp == pytest.approx(xp) and cell.accuracy == pytest.approx(share)
                compared += 1
        working = sorted({(s, c.name) for (s, i), cell in view.cells.items()
                          for c in [view.columns[i]] if cell.state == "working now"})  # fmt: skip
        assert view.working == working
    assert compared > 30  # the class is not empty: cells with something in them were compared
