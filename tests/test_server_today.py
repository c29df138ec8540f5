"""GET /timeback/api/status?today_start=...: the student's time since their local midnight."""

import time

import pytest
from tornado.httpclient import HTTPClientError

from .conftest import QUIZ, body, wait_for, write_notebook
from .test_server import kernel_client, open_notebook, started


async def test_status_reports_today(jp_serverapp, jp_fetch, jp_root_dir):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    session = await open_notebook(jp_fetch, path)
    await wait_for(lambda: ext.tracker.run_at(path), what="the run")
    client = kernel_client(jp_serverapp, session["kernel"]["id"])
    try:
        client.execute_interactive("import time; time.sleep(1.2)", timeout=30)
    finally:
        client.stop_channels()
    midnight = time.time() - 3600
    status = body(await jp_fetch("timeback", "api", "status", params={"today_start": midnight}))
    assert status["today"]["active_seconds"] > 0.5
    later = body(
        await jp_fetch("timeback", "api", "status", params={"today_start": time.time() + 60})
    )
    assert later["today"]["active_seconds"] < status["today"]["active_seconds"]
    assert "today" not in body(await jp_fetch("timeback", "api", "status"))


@pytest.mark.parametrize("bad", ["soon", "-5", "nan", "inf"])
async def test_status_rejects_a_bad_today_start(jp_serverapp, jp_fetch, bad):
    await started(jp_serverapp)
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("timeback", "api", "status", params={"today_start": bad})
    assert err.value.code == 400
    assert b"today_start: must be a time in POSIX seconds" in err.value.response.body


async def test_status_shows_the_run_and_today_at_one_instant(jp_serverapp, jp_fetch, jp_root_dir):
    """Issue 19: the panel's Today and the run's time come from one answer, taken at one
    instant, so Today is never below the time of a run begun today."""
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    session = await open_notebook(jp_fetch, path)
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run")
    client = kernel_client(jp_serverapp, session["kernel"]["id"])
    try:
        client.execute_interactive("import time; time.sleep(1.2)", timeout=30)
    finally:
        client.stop_channels()
    params = {"today_start": time.time() - 3600, "run": run_id}
    shown = body(await jp_fetch("timeback", "api", "status", params=params))
    run, today = shown["run"], shown["today"]
    assert run["id"] == run_id and run["active_seconds"] > 0.5
    assert today["active_seconds"] >= run["active_seconds"]
    assert today["inactive_seconds"] >= run["inactive_seconds"]
    assert run["unsent_seconds"] >= 0 and "pauses_in" in run
    assert isinstance(shown["as_of"], float)
    assert shown["delivery"]["slow"] is False
    unknown = body(await jp_fetch("timeback", "api", "status", params={"run": "not-a-run-id"}))[
        "run"
    ]
    assert "error" in unknown


async def test_the_kernel_route_names_every_metadata_problem(jp_serverapp, jp_fetch, jp_root_dir):
    """Issue 19: ``%timeback status`` says why a notebook records nothing, every problem."""
    from .test_kernel import connect, run_cell

    await started(jp_serverapp)
    bad = {"activity": {"id": "has spaces!", "name": "Quiz",
                        "course": {"subject": "Mathz", "grade": "three"}}}  # fmt: skip
    for name, section, wanted in (
        ("mathz.ipynb", bad, [
            "metadata.timeback.activity.course.subject: 'Mathz' is not one of Reading, ",
            "metadata.timeback.activity.course.grade: must be an integer, got 'three'",
            "metadata.timeback.activity.id: 'has spaces!' is not a slug",
        ]),
        ("scalar.ipynb", "not-a-dict", ["metadata.timeback: must be an object, got 'not-a-dict'"]),
    ):  # fmt: skip
        path = write_notebook(jp_root_dir, name, section)
        kernel_id = (await open_notebook(jp_fetch, path))["kernel"]["id"]
        client = await connect(jp_serverapp, kernel_id)
        try:
            out, err, _ = await run_cell(client, "%load_ext timeback_jupyter\n%timeback status")
        finally:
            client.stop()
        assert out == "", out  # not "recording through the Jupyter server", nor "no run yet"
        for text in wanted:
            assert text in err, err
        assert err.startswith(f"%timeback status: not recording this notebook: {name}: ")
        assert f"`jupyter timeback doctor {name}` checks it" in err
        assert "%timeback start" not in out + err


def service_with_a_clock(tmp_path):
    """A service as the server builds it, its store and tracker on an injected clock and its
    drainer not running: events stay pending until a flush."""
    from timeback_jupyter.config import Timeback, default_app_config
    from timeback_jupyter.delivery import Drainer, LocalSink
    from timeback_jupyter.identity import Student, actor_for
    from timeback_jupyter.server.service import TimebackService
    from timeback_jupyter.store import Store
    from timeback_jupyter.tracker import Tracker

    from .test_service import MemoryNotebooks

    clock = [1_790_000_000.0]
    now = lambda: clock[0]  # noqa: E731
    settings = Timeback(heartbeat_interval=15.0, student_email="a@b.edu")
    service = TimebackService(settings, MemoryNotebooks(**{"quiz.ipynb": {"activity": QUIZ}}),
                              now=now)  # fmt: skip
    store = Store(tmp_path / "t.sqlite3", now=now)
    student = Student("a@b.edu")
    service.store = store
    service.tracker = Tracker(
        store=store,
        settings=settings,
        app_config=default_app_config(),
        student=student,
        actor=actor_for(student, "https://api.staging.alpha-1edtech.ai", local=True),
        now=now,
    )
    service.drainer = Drainer(store, LocalSink(), idle_interval=0.05)
    return service, clock


@pytest.mark.asyncio
async def test_delivery_is_slow_when_events_wait_and_unsent_time_is_what_is_written(tmp_path):
    """Issue 19: "delivery ok with one event pending" during a 30 s stall; the offline count
    is the time written but not delivered, never more."""
    from timeback_jupyter.server.status import DELIVERY_SLOW_AFTER

    service, clock = service_with_a_clock(tmp_path)
    run_id = (await service.start("quiz.ipynb"))["run"]["id"]
    tracker = service.tracker
    clock[0] += 40  # two windows closed and written, 10 s in the open one
    tracker.tick()
    status = service.status(today_start=0.0, run_id=run_id)
    assert status["run"]["unsent_seconds"] == 30.0  # written, not sent; the open 10 s are not
    assert status["run"]["active_seconds"] == 40.0 and status["today"]["active_seconds"] == 40.0
    assert status["delivery"]["slow"] is False
    clock[0] += DELIVERY_SLOW_AFTER + 1  # nothing sent meanwhile: a stall
    status = service.status(run_id=run_id)
    assert status["delivery"]["slow"] is True and status["delivery"]["state"] == "ok"
    assert status["delivery"]["oldest_pending_age"] > DELIVERY_SLOW_AFTER
    await service.flush(5.0)
    status = service.status(run_id=run_id)
    assert status["run"]["unsent_seconds"] == 0 and status["delivery"]["slow"] is False
    service.store.close()
