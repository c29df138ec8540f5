"""The server sending to Timeback: a stand-in API that validates every event it receives."""

import json

import pytest

from timeback_jupyter.testing.standin import StandIn

from .conftest import QUIZ, body, wait_for, write_notebook
from .test_server import kernel_client, open_notebook

CLIENT_ID, SECRET = "tb-client", "tb-secret-never-logged"
SOURCED_ID = "student-sourced-42"


@pytest.fixture
def api(monkeypatch):
    # Jobs complete a little after each envelope, as Timeback's do: delivered means completed.
    with StandIn(CLIENT_ID, SECRET, job_delay=0.2) as standin:
        standin.users["ada@school.edu"] = [SOURCED_ID]
        monkeypatch.setenv("TIMEBACK_API_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("TIMEBACK_API_CLIENT_SECRET", SECRET)
        yield standin


@pytest.fixture
def timeback_config(timeback_config, api, jp_root_dir):
    (jp_root_dir / "timeback.config.json").write_text(json.dumps({
        "name": "Notebook Academy",
        "sensor": "https://notebooks.example.edu",
        "courses": [{"subject": "Math", "grade": 3, "ids": {"staging": "math-3-stg"}}],
    }))  # fmt: skip
    return {
        **timeback_config,
        "sink": "timeback",
        "base_url": api.url,
        "auth_url": api.token_url,
        "oneroster_base_url": api.url,
        "retry_initial": 0.05,
    }


async def test_heartbeats_and_one_completion_reach_timeback(
    api, jp_serverapp, jp_fetch, jp_root_dir, caplog
):
    ext = jp_serverapp.web_app.settings["timeback"]
    await jp_serverapp._post_start()
    await wait_for(lambda: ext.tracker is not None and not ext.problem, what="actor lookup")
    assert ext.tracker.actor.id == f"{api.url}/ims/oneroster/rostering/v1p2/users/{SOURCED_ID}"

    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    session = await open_notebook(jp_fetch, path)
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run")
    client = kernel_client(jp_serverapp, session["kernel"]["id"])
    try:
        client.execute_interactive("import time; time.sleep(1)", timeout=30)
    finally:
        client.stop_channels()
    await wait_for(lambda: api.received, what="heartbeats at Timeback")

    done = body(await jp_fetch("timeback", "api", "runs", run_id, "complete", method="POST",
                               body=b"{}"))  # fmt: skip
    assert done["already_completed"] is False
    flushed = body(await jp_fetch("timeback", "api", "flush", method="POST", body=b"{}"))
    assert flushed["report"]["remaining"] == 0
    assert flushed["report"]["error"] is None
    await wait_for(
        lambda: any(e["type"] == "ActivityEvent" for e in api.received), what="the completion"
    )
    mine = [e for e in api.received if e["session"] == f"urn:uuid:{run_id}"]
    assert [e["type"] for e in mine].count("ActivityEvent") == 1
    assert mine[-1]["type"] == "ActivityEvent"  # after its final heartbeat
    for event in mine:
        assert event["extensions"] == {"courseId": "math-3-stg", "runId": run_id}
        assert event["actor"]["id"].endswith(f"/users/{SOURCED_ID}")
        assert event["object"]["id"] == (
            "https://notebooks.example.edu/activities/Math/g3/fractions-quiz"
        )
    assert len(api.received_ids) == len(set(api.received_ids))
    assert SECRET not in caplog.text
    status = (await jp_fetch("timeback", "api", "status")).body.decode()
    assert SECRET not in status and ext.store.depth() == 0
    jobs = json.loads(status)["delivery"]["jobs"]
    assert (jobs["pending"], jobs["failed"], jobs["events_awaiting"]) == (0, 0, 0)
    assert jobs["confirmed"] == len(api.jobs) >= 2  # each envelope's job, confirmed
    assert set(api.jobs.values()) == {"completed"}


async def test_unknown_student_email_is_reported_not_crashed(api, jp_serverapp, jp_fetch):
    api.users.clear()
    ext = jp_serverapp.web_app.settings["timeback"]
    await jp_serverapp._post_start()
    await wait_for(lambda: "no Timeback user" in (ext.problem or ""), what="the lookup to fail")
    status = body(await jp_fetch("timeback", "api", "status"))
    assert status["recording"] is False
    assert "no Timeback user" in status["problem"]
    assert "ada@school.edu" not in status["problem"]  # redacted
