"""The JupyterLab extension in a real browser, against a real server sending to the stand-in."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .lab import (
    LESSON,
    hide,
    item_state,
    open_notebook,
    panel_value,
    run_cell,
    saved_timeback,
    show,
    wait,
    wait_prompt,
    write_notebook,
)

PRESENCE_FIELDS = {"path", "source", "visible", "focused", "idle_ms", "leaving"}
SOCKET = "presence/socket"


def watch_requests(page) -> list[dict]:
    """Every call the page makes to our API, in order: REST requests (method, route, JSON
    body), and on the presence socket its opening ("OPEN"), each report sent ("WS", route
    "presence", body without its id) and each answer ("ANSWER")."""
    seen: list[dict] = []

    def note(request) -> None:
        if "/timeback/api/" not in request.url:
            return
        body = request.post_data
        seen.append({
            "method": request.method,
            "route": request.url.split("/timeback/api/")[1].split("?")[0],
            "body": json.loads(body) if body else None,
        })  # fmt: skip

    def sent(payload) -> None:
        report = json.loads(payload)
        msg_id = report.pop("id", None)
        seen.append({"method": "WS", "route": "presence", "body": report, "id": msg_id})

    def answered(payload) -> None:
        seen.append({"method": "ANSWER", "route": SOCKET, "body": json.loads(payload)})

    def socket(ws) -> None:
        if not ws.url.split("?")[0].endswith(f"/timeback/api/{SOCKET}"):
            return  # a kernel's
        seen.append({"method": "OPEN", "route": SOCKET, "body": None, "url": ws.url})
        ws.on("framesent", sent)
        ws.on("framereceived", answered)

    page.on("request", note)
    page.on("websocket", socket)
    return seen


def test_lesson_in_jupyterlab(start_lab, page, standin, tmp_path: Path, artifacts: Path):
    root = tmp_path / "root"
    root.mkdir()
    path = write_notebook(
        root, "lesson.ipynb", LESSON, ["answer = 'pumpkin-' + str(6 * 7)\nanswer", "answer.upper()"]
    )
    lab = start_lab(root)
    sent = watch_requests(page)

    open_notebook(page, lab, path)
    # The extension starts the run, writes it into the notebook and saves it.
    run_id = wait(lambda: saved_timeback(root, path).get("run", {}).get("id"), what="saved run")
    assert saved_timeback(root, path)["run"]["origin"] == path
    assert sent[0] == {
        "method": "POST",
        "route": "runs",
        "body": {"path": path, "client": "jupyterlab"},
    }
    page.locator(".tb-StatusItem", has_text="Fractions lesson").wait_for()

    run_cell(page, 0)
    wait_prompt(page, 0, 1)
    run_cell(page, 1)
    wait_prompt(page, 1, 2)
    assert "PUMPKIN-42" in page.locator(".jp-Notebook .jp-Cell").nth(1).inner_text()
    wait(lambda: item_state(page) == "active", what="the status bar to say active")
    lab.wait_state(run_id, "active")

    # The tab opened the presence socket and its reports flow over it, each answered with the
    # run: REST carried at most the reports sent while the socket was connecting.
    def answered() -> bool:
        page.wait_for_timeout(100)  # Playwright delivers the page's events while it is called
        answers = [r["body"] for r in sent if r["method"] == "ANSWER"]
        return any((a.get("run") or {}).get("id") == run_id for a in answers)

    wait(answered, what="a report answered over the presence socket", seen=lambda: sent)
    opened = [r for r in sent if r["method"] == "OPEN"]
    assert len(opened) == 1, opened
    over_socket = [i for i, r in enumerate(sent) if r["method"] == "WS"]
    over_rest = [i for i, r in enumerate(sent) if r["route"] == "presence" and r["method"] != "WS"]
    assert over_rest == [] or max(over_rest) < min(over_socket), "REST after the socket opened"
    ids = [r["id"] for r in sent if r["method"] == "WS"]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids), ids
    wait(lambda: page.inner_text(".tb-StatusItem-time") not in ("", "0:00"), what="time")
    page.locator("#jp-main-statusbar").screenshot(path=artifacts / "lab-statusbar.png")

    page.click(".tb-StatusItem")
    page.locator(".tb-RunPanel").wait_for()
    assert panel_value(page, "run-id") == run_id
    assert panel_value(page, "attempt") == "1"
    assert panel_value(page, "state") == "active"
    assert panel_value(page, "exercises") == "none yet"
    wait(lambda: "pending" in panel_value(page, "outbox"), what="outbox health in the panel")
    assert " failed" in panel_value(page, "outbox")
    wait(
        lambda: re.fullmatch(r"\d+:\d\d", panel_value(page, "today")),
        what="today's time (status?today_start=)",
    )
    page.screenshot(path=artifacts / "lab-panel.png")
    page.click(".tb-StatusItem")  # closes it
    page.locator(".tb-RunPanel").wait_for(state="detached")

    # Switch to another tab: reported at once, and the run stops counting active time.
    other = hide(page)
    lab.wait_state(run_id, "inactive", what="the server to see the tab hidden")
    hidden = [r["body"] for r in sent if r["route"] == "presence"][-1]
    assert hidden["visible"] is False and hidden["focused"] is False
    wait(lambda: item_state(page) == "idle", what="the status bar to say idle")
    show(page, other)
    lab.wait_state(run_id, "active", what="the server to see the tab back")
    back = [r["body"] for r in sent if r["route"] == "presence"][-1]
    assert back["visible"] is True and back["focused"] is True

    # A reload resumes the same run.
    page.reload()
    page.wait_for_function("() => !!window.jupyterapp")
    page.locator(".tb-StatusItem", has_text="Fractions lesson").wait_for()
    page.click(".tb-StatusItem")
    page.locator(".tb-RunPanel").wait_for()
    wait(lambda: panel_value(page, "run-id") == run_id, what="the same run after reload")
    assert saved_timeback(root, path)["run"]["id"] == run_id
    assert lab.run(run_id)["attempt"] == 1

    # Only the path and presence flags ever leave the browser: no cell source, no output.
    for request in sent:
        body = request["body"] or {}
        assert "pumpkin" not in json.dumps(body).lower()
        if request["route"] == "presence":
            assert set(body) <= PRESENCE_FIELDS
            assert body["path"] == path

    # Closing the tab says so (a leave over the socket on pagehide, and the socket's close):
    # the run stops counting at once, not after the 60 s a silent tab keeps counting.
    page.close()
    lab.wait_state(run_id, "inactive", timeout=20, what="leaving on close")

    report = lab.flush()["report"]
    assert report["remaining"] == 0 and report["error"] is None
    mine = [e for e in standin.received if e["extensions"]["runId"] == run_id]
    assert mine and all(e["type"] == "TimeSpentEvent" for e in mine)
    active = sum(i["value"] for e in mine for i in e["generated"]["items"] if i["type"] == "active")
    assert active > 0
    assert all(e["session"] == f"urn:uuid:{run_id}" for e in mine)
    assert all(e["object"]["activity"]["name"] == "Fractions lesson" for e in mine)
