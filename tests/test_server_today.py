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
