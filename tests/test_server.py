"""The server extension in a real jupyter_server with real ipykernels."""

import json
import os
import time
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from tornado.httpclient import HTTPClientError

from timeback_jupyter.server.bridge import KERNEL_HEADER, TOKEN_HEADER

from .conftest import LESSON, QUIZ, STUDENT, body, wait_for, write_notebook
from .jupyter_process import notebook_run


async def started(jp_serverapp):
    """pytest-jupyter starts the app but not its event-loop hooks: run them like the server."""
    await jp_serverapp._post_start()
    ext = jp_serverapp.web_app.settings["timeback"]
    assert not ext.problem, ext.problem
    return ext


async def open_notebook(jp_fetch, path):
    r = await jp_fetch(
        "api",
        "sessions",
        method="POST",
        body=json.dumps(
            {"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}}
        ),
    )
    return body(r)


def kernel_client(jp_serverapp, kernel_id) -> BlockingKernelClient:
    km = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    client = BlockingKernelClient()
    client.load_connection_info(km.get_connection_info())
    # no heartbeat channel: on a busy machine it declares a slow-starting kernel dead
    client.start_channels(hb=False)
    client.wait_for_ready(timeout=60)
    return client


def time_spent(ext, run_id):
    return [
        e
        for e in ext.store.events()
        if e["type"] == "TimeSpentEvent" and e["session"] == f"urn:uuid:{run_id}"
    ]


def active_of(event):
    return sum(i["value"] for i in event["generated"]["items"] if i["type"] == "active")


async def test_extension_is_enabled_and_reports_status(jp_serverapp, jp_fetch):
    await started(jp_serverapp)
    status = body(await jp_fetch("timeback", "api", "status"))
    assert status["recording"] is True
    assert status["sink"] == "local"
    assert status["identity"]["email"] == STUDENT
    assert status["outbox"]["pending"] == 0
    assert "timeback_jupyter" in jp_serverapp.jpserver_extensions


async def test_cells_and_widget_messages_become_heartbeats(jp_serverapp, jp_fetch, jp_root_dir):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    session = await open_notebook(jp_fetch, path)
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run to start")

    client = kernel_client(jp_serverapp, session["kernel"]["id"])
    try:
        for i in range(4):
            client.execute_interactive(f"import time; time.sleep(0.3); y = {i}", timeout=30)
        # a widget touched: a comm_msg on the shell channel, as a Button click sends it
        client.shell_channel.send(
            client.session.msg("comm_msg", {"comm_id": "no-such-comm", "data": {}})
        )
        await wait_for(
            lambda: sum(active_of(e) for e in time_spent(ext, run_id)) >= 1.0,
            what="active time in heartbeats",
        )
    finally:
        client.stop_channels()

    events = time_spent(ext, run_id)
    assert events, "no TimeSpentEvent"
    for event in events:
        assert event["extensions"]["runId"] == run_id
        assert event["object"]["activity"]["name"] == "Fractions quiz"
    run = ext.tracker.get(run_id)
    assert run.active_seconds > 0
    assert run.active_seconds + run.inactive_seconds <= time.time() - run.started_at


async def test_stateful_run_is_written_into_the_notebook_and_resumed(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "lesson.ipynb", {"activity": LESSON})
    session = await open_notebook(jp_fetch, path)
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run to start")

    def saved_run():
        return notebook_run(Path(jp_root_dir), path)  # tolerates a half-written file

    meta = await wait_for(saved_run, what="the server to write the run into the notebook")
    assert meta["id"] == run_id
    assert meta["student"] == ext.tracker.student.key
    assert STUDENT not in (Path(jp_root_dir) / path).read_text()

    # the session ends (kernel shut down): the run ends, resumable
    await jp_fetch("api", "sessions", session["id"], method="DELETE")
    await wait_for(lambda: ext.tracker.run_at(path) is None, what="the run to end")
    assert ext.tracker.get(run_id).status == "ended"

    again = body(
        await jp_fetch("timeback", "api", "runs", method="POST", body=json.dumps({"path": path}))
    )
    assert again["run"]["id"] == run_id
    assert again["resumed"] is True


async def test_metadata_of_another_student_or_malformed_gives_a_new_run(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    foreign = {
        "id": "0b7e1f4e-8d43-4c8e-9d1c-6a1f0e2b3c4d",
        "student": "someone-else",
        "status": "active",
        "attempt": 1,
    }
    for name, run in [
        ("foreign.ipynb", foreign),
        ("broken.ipynb", "not an object"),
        ("bad-id.ipynb", {**foreign, "id": "nope", "student": "x"}),
    ]:
        path = write_notebook(jp_root_dir, name, {"activity": LESSON, "run": run})
        started_run = body(
            await jp_fetch(
                "timeback", "api", "runs", method="POST", body=json.dumps({"path": path})
            )
        )
        assert started_run["resumed"] is False
        assert started_run["run"]["id"] != foreign["id"]
        assert started_run["note"]
    assert ext.problem == ""


async def test_completion_is_sent_once_and_xp_is_capped(jp_serverapp, jp_fetch, jp_root_dir):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    run = body(
        await jp_fetch("timeback", "api", "runs", method="POST", body=json.dumps({"path": path}))
    )["run"]
    await jp_fetch(
        "timeback",
        "api",
        "runs",
        run["id"],
        "exercises",
        method="POST",
        body=json.dumps({"exercise": "q1", "correct": True}),
    )
    await jp_fetch(
        "timeback",
        "api",
        "runs",
        run["id"],
        "exercises",
        method="POST",
        body=json.dumps({"exercise": "q2", "correct": False}),
    )
    first = body(
        await jp_fetch(
            "timeback",
            "api",
            "runs",
            run["id"],
            "complete",
            method="POST",
            body=json.dumps({"xp": 500}),
        )
    )
    assert first["already_completed"] is False
    assert first["xp_capped"] is True
    assert first["metrics"]["totalQuestions"] == 2
    assert first["metrics"]["correctQuestions"] == 1
    second = body(
        await jp_fetch(
            "timeback",
            "api",
            "runs",
            run["id"],
            "complete",
            method="POST",
            body=json.dumps({"xp": 1}),
        )
    )
    assert second["already_completed"] is True
    assert second["event_id"] == first["event_id"]
    completions = [e for e in ext.store.events() if e["type"] == "ActivityEvent"]
    assert len(completions) == 1
    assert completions[0]["session"] == f"urn:uuid:{run['id']}"


ROUTES = [
    ("GET", ("timeback", "api", "status"), None),
    ("POST", ("timeback", "api", "runs"), {"path": "x.ipynb"}),
    ("GET", ("timeback", "api", "runs", "0b7e1f4e-8d43-4c8e-9d1c-6a1f0e2b3c4d"), None),
    ("POST", ("timeback", "api", "runs", "0b7e1f4e-8d43-4c8e-9d1c-6a1f0e2b3c4d", "end"), {}),
    ("POST", ("timeback", "api", "runs", "0b7e1f4e-8d43-4c8e-9d1c-6a1f0e2b3c4d", "complete"), {}),
    (
        "POST",
        ("timeback", "api", "runs", "0b7e1f4e-8d43-4c8e-9d1c-6a1f0e2b3c4d", "exercises"),
        {"exercise": "q", "correct": True},
    ),
    (
        "POST",
        ("timeback", "api", "presence"),
        {"path": "x.ipynb", "source": "t", "visible": True, "focused": True},
    ),
    ("GET", ("timeback", "api", "kernel", "run"), None),
    ("POST", ("timeback", "api", "kernel", "complete"), {}),
    ("POST", ("timeback", "api", "kernel", "exercises"), {}),
    ("POST", ("timeback", "api", "kernel", "end"), {}),
]


@pytest.mark.parametrize(("method", "parts", "payload"), ROUTES)
async def test_every_route_rejects_unauthenticated_calls(
    jp_serverapp, jp_fetch, method, parts, payload
):
    await started(jp_serverapp)
    kwargs = {"method": method, "headers": {"Authorization": ""}}
    if payload is not None:
        kwargs["body"] = json.dumps(payload)
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(*parts, **kwargs)
    assert err.value.code in (401, 403)


@pytest.mark.parametrize(
    ("parts", "payload", "code", "message"),
    [
        (("runs",), b"{not json", 400, "not valid JSON"),
        (("runs",), b"[1, 2]", 400, "JSON object"),
        (("runs",), b'{"path": ""}', 400, "path"),
        (("runs",), b'{"path": "x.ipynb", "evil": 1}', 400, "unknown field"),
        (("runs",), b'{"path": "missing.ipynb"}', 404, "missing.ipynb: no such notebook"),
        (("runs",), b'{"path": "../up.ipynb"}', 400, "inside the server's root"),
        (("runs",), json.dumps({"path": "x.ipynb", "pad": "x" * 70000}).encode(), 413, "larger"),
        (("runs", "not-a-uuid", "end"), b"{}", 400, "not a UUID"),
        (("runs", "0b7e1f4e-8d43-4c8e-9d1c-6a1f0e2b3c4d", "end"), b"{}", 404, "unknown run"),
        (
            ("presence",),
            b'{"path": "a.ipynb", "source": "t", "visible": "yes", "focused": true}',
            400,
            "visible",
        ),
        (
            ("presence",),
            b'{"path": "a.ipynb", "source": "t", "visible": true, "focused": true, "idle_ms": -4}',
            400,
            "idle_ms",
        ),
    ],
)
async def test_malformed_requests_get_a_specific_4xx(
    jp_serverapp, jp_fetch, parts, payload, code, message
):
    await started(jp_serverapp)
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("timeback", "api", *parts, method="POST", body=payload)
    assert err.value.code == code
    answer = json.loads(err.value.response.body)
    assert message in answer["message"]
    assert set(answer) == {"message", "reason"}  # as every Jupyter API answers an error


async def test_kernel_token_acts_only_on_its_own_notebook(jp_serverapp, jp_fetch, jp_root_dir):
    ext = await started(jp_serverapp)
    a = write_notebook(jp_root_dir, "a.ipynb", {"activity": QUIZ})
    b = write_notebook(jp_root_dir, "b.ipynb", {"activity": {**QUIZ, "id": "other"}})
    kernel_a = (await open_notebook(jp_fetch, a))["kernel"]["id"]
    kernel_b = (await open_notebook(jp_fetch, b))["kernel"]["id"]
    await wait_for(lambda: ext.tracker.run_at(a) and ext.tracker.run_at(b), what="both runs")

    published = json.loads(ext.tokens.file_for(kernel_a).read_text())
    assert published["kernel_id"] == kernel_a
    assert oct(ext.tokens.file_for(kernel_a).stat().st_mode & 0o777) == "0o600"
    own = {KERNEL_HEADER: kernel_a, TOKEN_HEADER: published["token"], "Authorization": ""}
    answer = body(await jp_fetch("timeback", "api", "kernel", "run", headers=own))
    assert answer["path"] == a
    assert answer["run"]["id"] == ext.tracker.run_at(a)

    # kernel A's token presented as kernel B: refused
    forged = {**own, KERNEL_HEADER: kernel_b}
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(
            "timeback", "api", "kernel", "complete", method="POST", body=b"{}", headers=forged
        )
    assert err.value.code == 403
    assert ext.store.get_completion(ext.tracker.run_at(b)) is None

    # and with its own token, completing touches only notebook A's run
    done = body(
        await jp_fetch(
            "timeback", "api", "kernel", "complete", method="POST", body=b"{}", headers=own
        )
    )
    assert done["run"]["path"] is None or done["run"]["id"] != ext.tracker.run_at(b)
    assert ext.store.get_completion(ext.tracker.run_at(b)) is None


SECRET = "s3cr3t-value-never-shown"


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("TIMEBACK_API_CLIENT_ID", "client-id")
    monkeypatch.setenv("TIMEBACK_API_CLIENT_SECRET", SECRET)


async def test_no_secret_reaches_responses_logs_or_kernels(
    secret_env, jp_serverapp, jp_fetch, jp_root_dir, caplog
):
    secret = SECRET
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    session = await open_notebook(jp_fetch, path)
    await wait_for(lambda: ext.tracker.run_at(path), what="the run")
    status = (await jp_fetch("timeback", "api", "status")).body.decode()
    assert secret not in status
    assert "client-id"[:4] in status
    client = kernel_client(jp_serverapp, session["kernel"]["id"])
    printed = []
    try:
        reply = client.execute_interactive(
            "import os, json; print(json.dumps(dict(os.environ)))",
            timeout=30,
            output_hook=lambda msg: printed.append(msg["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
    kernel_env = json.loads("".join(printed))
    assert kernel_env["JPY_PARENT_PID"] == str(os.getpid())  # it really is the kernel's env
    assert secret not in json.dumps(kernel_env)
    kernel_files = [p.read_text() for p in ext.tokens.dir.glob("*.json")]
    assert kernel_files and all(secret not in text for text in kernel_files)
    assert secret not in caplog.text
    assert secret not in (Path(jp_root_dir) / path).read_text()
    assert ext.credentials is not None and ext.credentials.client_secret == secret


async def test_kernel_restart_rename_and_kernels_without_notebooks(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    session = await open_notebook(jp_fetch, path)
    kernel_id = session["kernel"]["id"]
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run")

    # a kernel with no notebook (a console, an API client) runs cells: nothing breaks, no run
    bare = body(await jp_fetch("api", "kernels", method="POST", body=json.dumps({})))
    client = kernel_client(jp_serverapp, bare["id"])
    try:
        client.execute_interactive("1 + 1", timeout=30)
    finally:
        client.stop_channels()
    assert ext.tracker.live_runs() == [run_id]
    assert ext.last_error == ""

    # restart: the watcher re-attaches and cells still count for the same run
    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body=b"")
    await wait_for(lambda: kernel_id in ext.binding.watcher.watched, what="re-attach")
    ext.tracker.tick()
    before = ext.store.get_run(run_id).active_seconds
    client = kernel_client(jp_serverapp, kernel_id)
    try:
        for _ in range(3):
            client.execute_interactive("import time; time.sleep(0.4)", timeout=30)
    finally:
        client.stop_channels()
    await wait_for(lambda: ext.store.get_run(run_id).active_seconds > before, what="more time")
    assert ext.tracker.run_at(path) == run_id

    # rename while open: the run follows the notebook
    await jp_fetch(
        "api", "contents", path, method="PATCH", body=json.dumps({"path": "renamed.ipynb"})
    )
    await jp_fetch(
        "api", "sessions", session["id"], method="PATCH", body=json.dumps({"path": "renamed.ipynb"})
    )
    await wait_for(lambda: ext.tracker.run_at("renamed.ipynb") == run_id, what="rename")
    assert ext.tracker.run_at(path) is None
    assert await ext.binding.path_of_kernel(kernel_id) == "renamed.ipynb"


async def test_notebook_without_activity_gets_no_run(jp_serverapp, jp_fetch, jp_root_dir):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "plain.ipynb")
    session = await open_notebook(jp_fetch, path)
    client = kernel_client(jp_serverapp, session["kernel"]["id"])
    try:
        client.execute_interactive("x = 2", timeout=30)
    finally:
        client.stop_channels()
    await ext.binding.reconcile()
    assert ext.tracker.live_runs() == []
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("timeback", "api", "runs", method="POST", body=json.dumps({"path": path}))
    assert err.value.code == 404
    assert "declares no timeback activity" in json.loads(err.value.response.body)["message"]


@pytest.fixture
def hub_owner(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "the-student")


async def test_visitors_time_is_not_recorded(hub_owner, jp_serverapp, jp_fetch, jp_root_dir):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("timeback", "api", "runs", method="POST", body=json.dumps({"path": path}))
    assert err.value.code == 403
    assert "the-student's own visits" in json.loads(err.value.response.body)["message"]
    assert ext.tracker.live_runs() == []
    ext.timeback.count_visitors = True
    started_run = body(
        await jp_fetch("timeback", "api", "runs", method="POST", body=json.dumps({"path": path}))
    )
    assert started_run["run"]["live"] is True


async def test_our_calls_do_not_keep_an_idle_server_alive(jp_serverapp, jp_fetch, jp_root_dir):
    """Heartbeats must not count as server activity, or JupyterHub's culler never culls."""
    await started(jp_serverapp)
    settings = jp_serverapp.web_app.settings
    await jp_fetch("api", "contents")  # a call that does count, to have a baseline
    baseline = settings["api_last_activity"]
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    await jp_fetch("timeback", "api", "runs", method="POST", body=json.dumps({"path": path}))
    await jp_fetch("timeback", "api", "presence", method="POST", body=json.dumps(
        {"path": path, "source": "tab-1", "visible": True, "focused": True, "idle_ms": 10}
    ))  # fmt: skip
    await jp_fetch("timeback", "api", "status")
    assert settings["api_last_activity"] == baseline


def test_server_extension_list_shows_it_enabled():
    import subprocess
    import sys
    from pathlib import Path

    jupyter = Path(sys.executable).with_name("jupyter")
    out = subprocess.run(
        [str(jupyter), "server", "extension", "list"], capture_output=True, text=True, check=True
    )
    text = out.stdout + out.stderr
    assert "timeback_jupyter \x1b[32menabled" in text or "timeback_jupyter enabled" in text
    assert "timeback_jupyter 0.1.0 \x1b[32mOK" in text or "timeback_jupyter 0.1.0 OK" in text
