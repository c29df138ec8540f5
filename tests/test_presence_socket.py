"""Presence over the tab's WebSocket, against a real jupyter_server with the extension."""

from __future__ import annotations

import asyncio
import json

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado.httpclient import HTTPClientError

from timeback_jupyter.server.presence_socket import PresenceSocketHandler
from timeback_jupyter.server.requests import MAX_BODY
from timeback_jupyter.store import StoreError

from .conftest import QUIZ, body, wait_for, write_notebook
from .test_server import started

ROUTE = ("timeback", "api", "presence", "socket")
# generous: a 2-core machine shared with kernels; an answer normally takes a millisecond
ANSWER_TIMEOUT = 10.0


def report(path: str, **fields) -> dict:
    return {"path": path, "source": "tab-1", "visible": True, "focused": True, "idle_ms": 10,
            **fields}  # fmt: skip


async def answer(ws) -> dict:
    raw = await asyncio.wait_for(ws.read_message(), ANSWER_TIMEOUT)
    assert raw is not None, "the socket closed"
    return json.loads(raw)


async def ask(ws, message: dict | str | bytes) -> dict:
    ws.write_message(
        message if isinstance(message, str | bytes) else json.dumps(message),
        binary=isinstance(message, bytes),
    )
    return await answer(ws)


async def rest_presence(jp_fetch, payload: dict) -> dict:
    """The REST route's answer, or its error body and HTTP status, for the same report."""
    try:
        r = await jp_fetch("timeback", "api", "presence", method="POST", body=json.dumps(payload))
    except HTTPClientError as err:
        return {"status": err.code, **json.loads(err.response.body)}
    return body(r)


def refusal(msg_id: int | None, status: int, message: str) -> dict:
    """A socket's error answer: the REST error body's fields, its status and the id."""
    return {"id": msg_id, "status": status, "message": message, "reason": None}


async def run_state(jp_fetch, run_id: str) -> str:
    return body(await jp_fetch("timeback", "api", "runs", run_id))["run"]["state"]


async def quiz_run(jp_fetch, jp_root_dir, name: str = "quiz.ipynb") -> tuple[str, str]:
    path = write_notebook(jp_root_dir, name, {"activity": QUIZ})
    started_run = body(
        await jp_fetch(
            "timeback",
            "api",
            "runs",
            method="POST",
            body=json.dumps({"path": path, "client": "jupyterlab"}),
        )
    )
    return path, started_run["run"]["id"]


async def test_reports_get_the_answer_rest_gives(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir):
    await started(jp_serverapp)
    path, run_id = await quiz_run(jp_fetch, jp_root_dir)
    ws = await jp_ws_fetch(*ROUTE)
    try:
        got = await ask(ws, {"id": 1, **report(path)})
        rest = await rest_presence(jp_fetch, report(path))
        assert got["id"] == 1 and set(got) == {"id", "run"}
        assert got["run"]["id"] == run_id
        assert set(got["run"]) == set(rest["run"])
        assert got["run"]["metadata"] == rest["run"]["metadata"]
        assert got["run"]["state"] == rest["run"]["state"] == "active"

        # a notebook without a run: null, as over REST
        plain = write_notebook(jp_root_dir, "plain.ipynb")
        assert await ask(ws, {"id": 2, **report(plain)}) == {"id": 2, "run": None}
        assert (await rest_presence(jp_fetch, report(plain))) == {"run": None}

        # pipelined reports are answered in order, each with its own id
        for n in range(10, 20):
            ws.write_message(json.dumps({"id": n, **report(path, idle_ms=n)}))
        assert [(await answer(ws))["id"] for _ in range(10)] == list(range(10, 20))
    finally:
        ws.close()


async def test_every_malformed_message_gets_its_400_and_the_socket_goes_on(
    jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir
):
    await started(jp_serverapp)
    path, _ = await quiz_run(jp_fetch, jp_root_dir)
    good = report(path)
    cases: list[tuple[str | bytes | dict, int | None, str]] = [
        ("{not json", None, "message is not valid JSON"),
        ("[1, 2]", None, "message must be a JSON object"),
        (b"\xff\xfe", None, "message is not valid JSON"),
        (good, None, "id: required (an integer the answer repeats)"),
        ({**good, "id": "7"}, None, "id: required (an integer the answer repeats)"),
        ({**good, "id": True}, None, "id: required (an integer the answer repeats)"),
        ({**good, "id": 3, "evil": 1}, 3, "unknown field(s): 'evil'"),
        ({**good, "id": 4, "_xsrf": "x"}, 4, "unknown field(s): '_xsrf'"),
        ({**good, "id": 5, "pad": "x" * 70_000}, None, "message larger than 65536 bytes"),
    ]
    # field errors read exactly as the REST route words them
    for n, (field, value) in enumerate(
        [
            ("visible", "yes"),
            ("idle_ms", -4),
            ("path", ""),
            ("source", None),
            ("source", "  "),  # a blank tab id is no tab id
            ("focused", 1),
        ]
    ):
        bad = {**good, field: value}
        rest = await rest_presence(jp_fetch, bad)
        assert rest["status"] == 400, rest
        cases.append(({**bad, "id": 100 + n}, 100 + n, rest["message"]))

    ws = await jp_ws_fetch(*ROUTE)
    try:
        for n, (message, msg_id, error) in enumerate(cases):
            got = await ask(ws, message)
            assert got == refusal(msg_id, 400, error), (message, got)
            # still open, still answering
            ok = await ask(ws, {"id": 1000 + n, **good})
            assert ok["id"] == 1000 + n and ok["run"] is not None
        # a report as a binary frame is read like a text one
        ok = await ask(ws, json.dumps({"id": 7, **good}).encode())
        assert ok["id"] == 7 and ok["run"] is not None
    finally:
        ws.close()


async def test_what_the_fuzz_found_is_a_400_on_both_transports(
    jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir
):
    """Found by the garbage-in drill: a few kB of nesting (the parser's RecursionError) and an
    idle_ms beyond any float (math.isfinite's OverflowError) were 500s, over REST and socket."""
    await started(jp_serverapp)
    path, _ = await quiz_run(jp_fetch, jp_root_dir)
    deep = "[" * 5000 + "]" * 5000
    huge_idle = {**report(path), "idle_ms": 10**400}
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("timeback", "api", "presence", method="POST", body=deep)
    assert json.loads(err.value.response.body) == {
        "message": "request body is nested too deeply",
        "reason": None,
    }
    idle_error = {
        "status": 400,
        "message": "idle_ms: must be a non-negative number",
        "reason": None,
    }
    assert await rest_presence(jp_fetch, huge_idle) == idle_error
    ws = await jp_ws_fetch(*ROUTE)
    try:
        for n, nested in enumerate([deep, '{"a":' * 5000 + "1" + "}" * 5000]):
            got = await ask(ws, nested)
            assert got == refusal(None, 400, "message is nested too deeply")
            assert (await ask(ws, {"id": n, **report(path)}))["run"] is not None
        assert await ask(ws, {"id": 9, **huge_idle}) == {"id": 9, **idle_error}
        assert (await ask(ws, {"id": 10, **report(path)}))["run"] is not None
    finally:
        ws.close()


async def test_refusals_and_store_failures_answer_like_rest(
    jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir, monkeypatch
):
    ext = await started(jp_serverapp)
    path, run_id = await quiz_run(jp_fetch, jp_root_dir)
    ws = await jp_ws_fetch(*ROUTE)
    try:
        # the run ended: presence for its notebook is null again, not an error
        await jp_fetch("timeback", "api", "runs", run_id, "end", method="POST", body="{}")
        assert await ask(ws, {"id": 1, **report(path)}) == {"id": 1, "run": None}
        path, run_id = await quiz_run(jp_fetch, jp_root_dir, "again.ipynb")

        def locked(*args, **kwargs):
            raise StoreError("the store is locked by another process")

        monkeypatch.setattr(ext.store, "get_run", locked)
        rest = await rest_presence(jp_fetch, report(path))
        got = await ask(ws, {"id": 2, **report(path)})
        assert rest["status"] == 503
        assert got == {"id": 2, **rest}
        assert "the timeback store failed" in got["message"]
        monkeypatch.undo()

        monkeypatch.setattr(ext.service, "problem", "looking up the student")
        got = await ask(ws, {"id": 3, **report(path)})
        assert got == refusal(3, 503, "timeback is not recording: looking up the student")
        monkeypatch.undo()
        assert (await ask(ws, {"id": 4, **report(path)}))["run"]["id"] == run_id
    finally:
        ws.close()


async def test_without_a_token_or_from_another_origin_the_socket_is_refused(
    jp_serverapp, jp_fetch, jp_ws_fetch, jp_http_port
):
    await started(jp_serverapp)
    with pytest.raises(HTTPClientError) as err:
        await jp_ws_fetch(*ROUTE, headers={"Authorization": ""})
    assert err.value.code == 403
    # A page authenticated by its login cookie, as JupyterLab is: Jupyter checks the origin
    # (a token-authenticated request is exempt, a cookie is what another site could ride on).
    r = await jp_fetch("api", "status")
    cookie = r.headers["Set-Cookie"].split(";")[0]
    host = f"127.0.0.1:{jp_http_port}"  # the cookie's name holds the host it was set for
    as_page = {"Authorization": "", "Cookie": cookie, "Host": host}
    with pytest.raises(HTTPClientError) as err:
        await jp_ws_fetch(*ROUTE, headers={**as_page, "Origin": "http://evil.example"})
    assert err.value.code == 403
    ws = await jp_ws_fetch(*ROUTE, headers={**as_page, "Origin": f"http://{host}"})
    ws.close()


class ReadOnly(Authorizer):
    """A deployment where this user may look but not write: presence is a write."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        return action == "read"


async def test_a_user_who_may_not_write_gets_no_socket(
    jp_serverapp, jp_fetch, jp_ws_fetch, monkeypatch
):
    await started(jp_serverapp)
    settings = jp_serverapp.web_app.settings
    monkeypatch.setitem(
        settings, "authorizer", ReadOnly(identity_provider=settings["identity_provider"])
    )
    await jp_fetch("timeback", "api", "status")  # reading is allowed
    with pytest.raises(HTTPClientError) as err:
        await jp_ws_fetch(*ROUTE)
    assert err.value.code == 403


async def test_a_frame_far_over_the_limit_closes_the_socket_unbuffered(
    jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path, _ = await quiz_run(jp_fetch, jp_root_dir)
    ws = await jp_ws_fetch(*ROUTE)
    limit = PresenceSocketHandler.max_message_size.fget(None)  # type: ignore[attr-defined]
    assert limit <= 1024 * 1024  # far under tornado's 10 MiB default
    try:
        over = json.dumps({"id": 1, **report(path), "pad": "x" * (2 * MAX_BODY)})
        got = await ask(ws, over)  # over the report limit, under the frame limit: an answer
        assert got == refusal(None, 400, f"message larger than {MAX_BODY} bytes")
        ws.write_message("x" * (limit + 1))
        assert await asyncio.wait_for(ws.read_message(), ANSWER_TIMEOUT) is None
        assert ws.close_code == 1009  # "message too big", said by tornado
    finally:
        ws.close()
    assert ext.tracker is not None  # the server goes on
    fresh = await jp_ws_fetch(*ROUTE)
    try:
        assert (await ask(fresh, {"id": 2, **report(path)}))["run"] is not None
    finally:
        fresh.close()


async def test_closing_the_socket_leaves_at_once(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir):
    await started(jp_serverapp)
    path, run_id = await quiz_run(jp_fetch, jp_root_dir)
    left, _ = await quiz_run(jp_fetch, jp_root_dir, "left.ipynb")
    ws = await jp_ws_fetch(*ROUTE)
    await ask(ws, {"id": 1, **report(left)})
    await ask(ws, {"id": 2, **report(left, visible=False, focused=False, leaving=True)})
    await ask(ws, {"id": 3, **report(path)})
    assert await run_state(jp_fetch, run_id) == "active"
    ws.close()
    # presence_ttl (60 s by default) is how long a silent tab keeps counting: a closed socket
    # must not wait for it
    await wait_for(lambda: _inactive(jp_fetch, run_id), timeout=5, what="inactive on close")


async def _inactive(jp_fetch, run_id: str) -> bool:
    return await run_state(jp_fetch, run_id) == "inactive"


async def test_visitors_reports_are_refused_as_over_rest(
    monkeypatch, jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir
):
    monkeypatch.setenv("JUPYTERHUB_USER", "the-student")
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    ws = await jp_ws_fetch(*ROUTE)
    try:
        rest = await rest_presence(jp_fetch, report(path))
        got = await ask(ws, {"id": 1, **report(path)})
        assert rest["status"] == 403
        assert got == {"id": 1, **rest}
        assert "the-student's own visits" in got["message"]
        ext.timeback.count_visitors = True
        assert (await ask(ws, {"id": 2, **report(path)}))["id"] == 2
    finally:
        ws.close()


async def test_the_socket_does_not_keep_an_idle_server_alive(
    jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir
):
    await started(jp_serverapp)
    settings = jp_serverapp.web_app.settings
    path, run_id = await quiz_run(jp_fetch, jp_root_dir)
    await jp_fetch("api", "contents")  # a call that does count, to have a baseline
    baseline = settings["api_last_activity"]
    last = jp_serverapp.web_app.last_activity()
    ws = await jp_ws_fetch(*ROUTE)
    for n in range(5):
        await ask(ws, {"id": n, **report(path)})
    await ask(ws, "{not json")
    ws.close()
    await wait_for(lambda: _inactive(jp_fetch, run_id), timeout=5, what="the leave on close")
    assert settings["api_last_activity"] == baseline
    assert jp_serverapp.web_app.last_activity() == last


async def test_the_paths_browsers_reported_are_bounded(jp_serverapp, jp_ws_fetch, monkeypatch):
    """Any logged-in client may report any path: the server keeps the most recent ones."""
    from timeback_jupyter.server import service

    ext = await started(jp_serverapp)
    monkeypatch.setattr(service, "MAX_BROWSER_PATHS", 3)
    ws = await jp_ws_fetch(*ROUTE)
    try:
        for n, path in enumerate(["a.ipynb", "b.ipynb", "c.ipynb", "a.ipynb", "d.ipynb"]):
            assert (await ask(ws, {"id": n, **report(path)})) == {"id": n, "run": None}
    finally:
        ws.close()
    assert list(ext.service.browser_paths) == ["c.ipynb", "a.ipynb", "d.ipynb"]


async def test_a_reported_notebook_whose_run_changes_elsewhere_is_refreshed(
    jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir
):
    """A notebook not in front does not report: when its run changes (here through the REST
    routes; the kernel's routes and a kernel shutdown end up in the same tracker calls) its
    tab is told to ask, and only that tab, and only while it has not left the notebook."""
    await started(jp_serverapp)
    path, run_id = await quiz_run(jp_fetch, jp_root_dir)
    other, _ = await quiz_run(jp_fetch, jp_root_dir, "other.ipynb")
    tab = await jp_ws_fetch(*ROUTE)
    other_tab = await jp_ws_fetch(*ROUTE)
    await ask(tab, {"id": 1, **report(path, focused=False)})
    await ask(other_tab, {"id": 1, **report(other)})

    runs = ("timeback", "api", "runs", run_id)
    mark = json.dumps({"exercise": "q1", "correct": True})
    await jp_fetch(*runs, "exercises", method="POST", body=mark)
    assert await answer(tab) == {"refresh": path}
    await jp_fetch(*runs, "complete", method="POST", body="{}")
    assert await answer(tab) == {"refresh": path}
    # what the tab then asks tells it: no live run here any more (it looks the run up)
    assert await ask(tab, {"id": 2, **report(path, focused=False)}) == {"id": 2, "run": None}

    gone = report(path, visible=False, focused=False, leaving=True)
    await ask(tab, {"id": 3, **gone})
    await jp_fetch("timeback", "api", "runs", method="POST",
                   body=json.dumps({"path": path, "client": "jupyterlab"}))  # fmt: skip
    # neither tab hears of it: one left the notebook, the other never reported it
    for ws in (tab, other_tab):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.read_message(), 0.5)


async def test_a_renamed_notebook_is_refreshed_under_its_new_path(
    jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path, run_id = await quiz_run(jp_fetch, jp_root_dir)
    tab = await jp_ws_fetch(*ROUTE)
    await ask(tab, {"id": 1, **report(path, focused=False)})  # then quiet: not in front
    rename = json.dumps({"path": "renamed.ipynb"})
    await jp_fetch("api", "contents", path, method="PATCH", body=rename)
    await wait_for(lambda: ext.tracker.run_at("renamed.ipynb") == run_id, what="the rename")
    await jp_fetch("timeback", "api", "runs", run_id, "complete", method="POST", body="{}")
    assert await answer(tab) == {"refresh": "renamed.ipynb"}
