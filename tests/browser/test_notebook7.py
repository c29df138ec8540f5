"""The same extension in Notebook 7 (no ILabShell, no status bar): runs, metadata, presence, and
the run in the notebook's toolbar."""

from __future__ import annotations

from pathlib import Path

from .lab import (
    LESSON,
    QUIZ,
    TOKEN,
    hide,
    open_notebook,
    panel_value,
    run_cell,
    saved_timeback,
    show,
    wait,
    wait_prompt,
    write_notebook,
)

NOTICE_START = "This notebook is a Timeback activity"


def test_notebook7(start_lab, page, tmp_path: Path, artifacts: Path):
    root = tmp_path / "root"
    root.mkdir()
    path = write_notebook(root, "homework.ipynb", LESSON, ["third = 1 / 3\nthird"])
    lab = start_lab(root, None, "--JupyterNotebookApp.expose_app_in_browser=True")
    lab.lab_url = lambda p: f"{lab.url}/notebooks/{p}?token={TOKEN}"  # Notebook 7's page
    open_notebook(page, lab, path)
    assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"

    run_id = wait(lambda: saved_timeback(root, path).get("run", {}).get("id"), what="saved run")
    run_cell(page, 0)
    wait_prompt(page, 0, 1)
    lab.wait_state(run_id, "active", what="presence from Notebook 7")
    page.screenshot(path=artifacts / "notebook7.png")

    other = hide(page)
    lab.wait_state(run_id, "inactive", what="the hidden tab")
    show(page, other)
    lab.wait_state(run_id, "active", what="the tab back")


def toolbar_seconds(page) -> int:
    """The run's time in the notebook toolbar's item, in seconds ("1:05" -> 65)."""
    text = page.inner_text(".tb-ToolbarItem .tb-StatusItem-time").strip() or "0:00"
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def test_notebook7_toolbar_shows_the_run(start_lab, page, tmp_path: Path, artifacts: Path):
    """No status bar in Notebook 7: the notebook's toolbar carries the status item, its time
    grows while the student works, its panel opens below it, and it says completed."""
    root = tmp_path / "root"
    root.mkdir()
    path = write_notebook(
        root,
        "quiz.ipynb",
        QUIZ,
        [
            "import time\ntime.sleep(2)\n'worked'",
            "from timeback_jupyter import CompletionButton\nCompletionButton()",
        ],
    )
    lab = start_lab(root, None, "--JupyterNotebookApp.expose_app_in_browser=True")
    lab.lab_url = lambda p: f"{lab.url}/notebooks/{p}?token={TOKEN}"
    open_notebook(page, lab, path)
    assert page.locator(".jp-StatusBar-Widget").count() == 0  # no status bar here

    # The one-time notice (a fresh student: never seen) shows in Notebook 7 too.
    page.get_by_text(NOTICE_START).wait_for()

    item = page.locator(".jp-NotebookPanel-toolbar .tb-ToolbarItem.tb-StatusItem")
    item.wait_for()
    run_id = wait(lambda: saved_timeback(root, path).get("run", {}).get("id"), what="saved run")
    assert item.inner_text().startswith("Fractions quiz")

    # The student works: the toolbar's time grows with the server's figure.
    run_cell(page, 0)
    wait(lambda: item.get_attribute("data-state") == "active", what="the toolbar to say active")
    first = toolbar_seconds(page)
    for count in (2, 3):
        wait_prompt(page, 0, count - 1)
        run_cell(page, 0)
    wait_prompt(page, 0, 3)
    wait(
        lambda: toolbar_seconds(page) >= first + 4,
        what="the toolbar's time to grow while cells run",
        seen=lambda: (first, page.inner_text(".tb-ToolbarItem")),
    )
    server_active = lab.run(run_id)["active_seconds"]
    assert abs(toolbar_seconds(page) - server_active) <= 16  # the server's figure, extrapolated

    # The same panel as the status bar's, opened below the item (the toolbar is at the top).
    item.click()
    panel = page.locator(".tb-RunPanel")
    panel.wait_for()
    assert panel_value(page, "run-id") == run_id
    assert panel.bounding_box()["y"] >= item.bounding_box()["y"] + item.bounding_box()["height"] - 1
    page.screenshot(path=artifacts / "notebook7-toolbar-panel.png")
    page.keyboard.press("Escape")
    panel.wait_for(state="detached")

    # Completion: the button, then "completed" in the toolbar.
    run_cell(page, 1)
    button = page.locator('button.jupyter-button:has-text("Mark complete")')
    button.wait_for()
    wait(lambda: button.is_enabled(), what="the completion button to be enabled")
    button.click()
    wait(lambda: item.get_attribute("data-state") == "completed", what="the toolbar: completed")
    assert "completed" in item.inner_text()
    page.screenshot(path=artifacts / "notebook7-toolbar-completed.png")
