"""The live view under a relay's pace (``c.Relay.send_every``): a student working on reads
"working now" at every moment between two paced sends (``cells.live_window``), on both
backends; and against a real JupyterHub, a paced relay's pages say how fresh they are."""

from __future__ import annotations

import time
import uuid

import pytest

from timeback_jupyter.relay import views
from timeback_jupyter.relay.cells import LIVE_SECONDS, live_window
from timeback_jupyter.testing.standin import time_spent_events

from . import test_relay_pages as pages_tests
from .conftest import ADA, envelope, run_id, tse
from .hub import PREFIX, SCOPE, Hub, RelayProcess, free_port

standin = pages_tests.standin
table_rows, login = pages_tests.table_rows, pages_tests.login
pytestmark = pytest.mark.slow

HEARTBEAT = 15.0
DRAIN = 1.0  # seconds from a window's close (or a hold's end) to the relay having it


async def states_between_sends(relay, now: float, pace: float, window: float) -> set[str]:
    """A student works for ten minutes; their server is paced: the first window goes when it
    closes, then everything closed goes every ``pace`` s. The student's state on the overview
    every 5 s, each time with what the relay has by then."""
    start = now - 600
    run = run_id()
    ends = [start + HEARTBEAT * (i + 1) for i in range(int(600 // HEARTBEAT))]
    sends = [ends[0] + DRAIN + k * pace for k in range(int(600 // pace) + 1)]
    forwarded, seen = 0, set()
    probe = sends[0]
    while probe <= now:
        due = [e for e in ends[forwarded:] if e <= max(s for s in sends if s <= probe) - DRAIN]
        if due:
            events = [tse(run, end, slug="fractions-lesson") for end in due]
            answer = await relay.ingest(ADA, envelope(*events))
            assert answer.to_dict()["refused"] == 0
            forwarded += len(due)
        view = views.overview(relay.db, relay.catalog, "c", ["ada"], probe, live_seconds=window)
        lesson = next(i for i, c in enumerate(view.columns) if c.slug == "fractions-lesson")
        seen.add(view.state("ada", lesson))
        probe += 5
    return seen


@pytest.mark.asyncio
@pytest.mark.parametrize("pace", [0, 60, 120, 300])
async def test_a_paced_student_working_on_is_never_shown_paused(relay, clock, pace):
    window = live_window(pace)
    assert window == LIVE_SECONDS + pace
    assert await states_between_sends(relay, clock.t, max(pace, HEARTBEAT), window) == {
        "working now"
    }


@pytest.mark.asyncio
async def test_without_the_pace_in_the_window_a_paced_student_reads_paused(relay, clock):
    """Why the window grows with the pace: 90 s alone is shorter than a 120 s pace."""
    seen = await states_between_sends(relay, clock.t, 120, LIVE_SECONDS)
    assert seen == {"working now", "paused"}


@pytest.mark.asyncio
async def test_the_student_page_counts_a_run_live_by_the_same_window(relay, clock):
    run = run_id()
    await relay.ingest(ADA, envelope(tse(run, clock.t - 100, slug="fractions-lesson")))
    [paused] = views.student(relay.db, relay.catalog, "ada", clock.t).runs
    [live] = views.student(relay.db, relay.catalog, "ada", clock.t, live_seconds=150).runs
    assert (paused["state"], live["state"]) == ("paused", "working now")


# -- the pages of a paced relay, through a real hub ------------------------------------------

PACE = 120


@pytest.fixture(scope="module")
def paced_hub(tmp_path_factory, standin):
    hub = Hub(tmp_path_factory.mktemp("hub"), free_port())
    with open(hub.tmp / "jupyterhub_config.py", "a") as config:
        config.write(pages_tests.PAGES_CONFIG)
    relay = RelayProcess(
        tmp_path_factory.mktemp("relay"), hub, standin, f"--Relay.send_every={PACE}"
    )
    try:
        relay.start(via_hub=False)
        hub.start()
        yield hub
    finally:
        relay.stop()
        hub.stop()


def test_a_paced_relays_pages_say_how_fresh_they_are(paced_hub):
    """ada's newest second reached the relay 100 s ago: past 90 s, within 90 + the pace."""
    token = paced_hub.token("ada", [SCOPE, "users:activity!user=ada"])
    events = time_spent_events(str(uuid.uuid4()), 1, start=time.time() - 115)
    answer = paced_hub.send(token, events)
    assert answer.status_code == 200 and answer.json()["send_every"] == PACE
    client, page = login(paced_hub, "tina", "classes/class-a")
    try:
        assert page.status_code == 200, page.text
        text = " ".join(page.text.split())
        assert f"in the last {LIVE_SECONDS + PACE:.0f} seconds" in text
        assert f"send their time every {PACE} seconds" in text
        assert f"up to {PACE + 15} seconds behind" in text
        [row] = table_rows(page.text)
        assert row[0] == "ada" and "working now" in row[1]
        live = client.get(f"{PREFIX}classes/class-a/live")  # what the page's script swaps in
        assert live.status_code == 200 and "working now" in live.json()["rows"]
    finally:
        client.close()
