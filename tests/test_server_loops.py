"""The extension's background work runs only when there is something to do: with no run open
nothing ticks, reconciles or looks at the outbox; a session made starts its notebook's run at
once; an event written wakes the drainer; a run ticks while it is not paused, and stops when
every run is paused or ended. Counted in calls, not in CPU time."""

import asyncio

import pytest

from .conftest import QUIZ, wait_for, write_notebook
from .test_server import open_notebook, started


@pytest.fixture
def timeback_config(timeback_config):
    # Windows of 1 s, checkpoints every 0.5 s: a live run ticks about twice a second.
    return {**timeback_config, "heartbeat_interval": 1.0, "checkpoint_interval": 0.5}


async def _quiet(ext):
    """Wait for the start-up's own work (the first tick, the first catch-up, recovery)."""
    await wait_for(lambda: ext.ticker.ticks >= 1, what="the first tick")
    await wait_for(lambda: ext.reconciler.runs >= 1, what="the first reconcile")
    await asyncio.sleep(0.3)


async def test_with_no_run_open_nothing_runs(jp_serverapp):
    ext = await started(jp_serverapp)
    await _quiet(ext)
    ticks, reconciles, looks = ext.ticker.ticks, ext.reconciler.runs, ext.drainer.looks
    # Three seconds: six checkpoint intervals, three windows, thirty drain_intervals.
    await asyncio.sleep(3.0)
    assert ext.ticker.ticks == ticks
    assert ext.reconciler.runs == reconciles
    assert ext.drainer.looks == looks


async def test_a_session_made_is_reconciled_at_once_and_its_run_ticks(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    await _quiet(ext)
    ticks, reconciles = ext.ticker.ticks, ext.reconciler.runs
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    await open_notebook(jp_fetch, path)  # no cell run: only the session says it is open
    # The fallback is a minute away: only the session's creation can have started the run.
    assert ext.reconciler.fallback >= 60
    run_id = await wait_for(lambda: ext.tracker.run_at(path), timeout=10, what="the run")
    assert ext.reconciler.runs > reconciles
    # A live run not paused: ticks come (windows of 1 s, checkpoints every 0.5 s), at most
    # one a tick period apart.
    ticks = ext.ticker.ticks
    await asyncio.sleep(2.0)
    assert 2 <= ext.ticker.ticks - ticks <= 2.0 / ext.ticker.period + 1
    await wait_for(lambda: ext.store.get_run(run_id).active_seconds > 0, what="a window")


async def test_an_event_written_wakes_the_drainer(jp_serverapp, jp_fetch, jp_root_dir):
    ext = await started(jp_serverapp)
    await _quiet(ext)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    await open_notebook(jp_fetch, path)
    run_id = await wait_for(lambda: ext.tracker.run_at(path), timeout=10, what="the run")
    assert ext.drainer.quiet_interval >= 60  # an empty outbox is looked at once a minute
    looks = ext.drainer.looks
    # Completing writes the run's completion event: delivered (kept by the local sink) well
    # before any fallback look would have found it.
    await jp_fetch("timeback", "api", "runs", run_id, "complete", method="POST", body="{}")
    await wait_for(lambda: ext.store.depth() == 0, timeout=5, what="delivery")
    assert ext.drainer.looks > looks


async def test_ticks_stop_once_no_run_is_left(jp_serverapp, jp_fetch, jp_root_dir):
    ext = await started(jp_serverapp)
    await _quiet(ext)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    await open_notebook(jp_fetch, path)
    run_id = await wait_for(lambda: ext.tracker.run_at(path), timeout=10, what="the run")
    await jp_fetch("timeback", "api", "runs", run_id, "end", method="POST", body="{}")
    # One more tick at most clears this server's checkpoint rows; then nothing.
    await asyncio.sleep(1.5)
    ticks = ext.ticker.ticks
    await asyncio.sleep(2.0)
    assert ext.ticker.ticks == ticks
    assert ext.store.open_windows(besides="") == []
