"""The completion widget clicked in JupyterLab: one ActivityCompletedEvent, shown as completed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .lab import (
    QUIZ,
    item_state,
    open_notebook,
    panel_value,
    run_cell,
    saved_timeback,
    wait,
    wait_prompt,
    write_notebook,
)


def completion_widget_available() -> bool:
    try:
        from timeback_jupyter import CompletionButton  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(
    not completion_widget_available(),
    reason="timeback_jupyter.CompletionButton (the kernel-side completion widget) is not built yet",
)
def test_completion_widget_in_jupyterlab(start_lab, page, standin, tmp_path: Path, artifacts: Path):
    root = tmp_path / "root"
    root.mkdir()
    path = write_notebook(
        root,
        "quiz.ipynb",
        QUIZ,
        [
            "answer = 3 / 4\nanswer",
            "from timeback_jupyter import CompletionButton\nCompletionButton()",
        ],
    )
    lab = start_lab(root)
    open_notebook(page, lab, path)
    run_id = wait(lambda: saved_timeback(root, path).get("run", {}).get("id"), what="saved run")
    run_cell(page, 0)
    wait_prompt(page, 0, 1)
    run_cell(page, 1)
    button = page.locator('button.jupyter-button:has-text("Mark complete")')
    button.wait_for()
    wait(lambda: button.is_enabled(), what="the completion button to be enabled")
    button.click()

    wait(lambda: item_state(page) == "completed", what="the status bar to say completed")
    # the widget says what was awarded and why (this quiz declares no expected XP)
    widget = page.locator(".timeback-completion")
    wait(lambda: "Completed (attempt 1)" in widget.inner_text(), what="the widget's outcome")
    assert "no expected XP declared (activity.xp), so 1 XP per focused minute" in (
        widget.inner_text()
    )
    # Done is done: no next attempt starts behind the student's back while the notebook stays
    # open (the next open starts it). Watched over a few of the server's reconcile ticks.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert lab.http.get("/timeback/api/status").json()["live_runs"] == 0
        time.sleep(0.2)
    page.click(".tb-StatusItem")
    page.locator(".tb-RunPanel").wait_for()
    assert panel_value(page, "run-id") == run_id
    # the panel gives the same XP outcome, in the policy's words
    page.locator('.tb-RunPanel tr[data-timeback="xp"]').wait_for()
    assert "no expected XP declared (activity.xp)" in panel_value(page, "xp")
    page.screenshot(path=artifacts / "lab-panel-completed.png")
    model_status = page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.model.getMetadata('timeback').run.status"
    )
    assert model_status == "completed"

    report = lab.flush()["report"]
    assert report["remaining"] == 0 and report["error"] is None
    mine = [e for e in standin.received if e["extensions"]["runId"] == run_id]
    completions = [e for e in mine if e["type"] == "ActivityEvent"]
    assert len(completions) == 1
    assert completions[0]["action"] == "Completed"
    assert completions[0]["generated"]["attempt"] == 1
    assert any(e["type"] == "TimeSpentEvent" for e in mine)
