"""What Timeback records, told to the student: the Help menu entry (JupyterLab and Notebook 7),
the run panel's link, and the notice shown once per student when an activity is first opened."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from .lab import (
    KERNEL_READY_JS,
    LESSON,
    QUIZ,
    TOKEN,
    item_state,
    open_notebook,
    wait,
    write_notebook,
)

NOTICE_START = "This notebook is a Timeback activity"
DESTINATION = "This server sends to Timeback (staging) under the app “Notebook Academy”."
NB7 = "--JupyterNotebookApp.expose_app_in_browser=True"


def notebook7_url(lab: Any, path: str) -> str:
    return f"{lab.url}/notebooks/{path}?token={TOKEN}"


def notices(page: Any) -> Any:
    return page.get_by_text(NOTICE_START)


def no_notice_after(page: Any, settle: float = 2.0) -> None:
    """No notice, once the extension has had time to decide (its settings load at startup, and
    it decides when the notebook's run is known; a toast renders within a second)."""
    time.sleep(settle)
    assert notices(page).count() == 0, "the notice showed again"


def seen_setting(lab: Any) -> int | None:
    """The notice version the student has seen, as JupyterLab keeps it on the server."""
    settings = lab.tmp / "settings" / "timeback-jupyter" / "plugin.jupyterlab-settings"
    if not settings.exists():
        return None
    found = re.search(r'"recordsNoticeSeen"\s*:\s*(\d+)', settings.read_text())
    return int(found.group(1)) if found else None


def check_records_dialog(page: Any) -> None:
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "What Timeback records" in dialog.locator(".jp-Dialog-header").inner_text()
    body = dialog.locator(".tb-Records")
    for key in ("what", "never", "when", "where", "who", "own"):
        assert body.locator(f'section[data-timeback="{key}"] h3').count() == 1, key
    text = body.inner_text()
    assert "15 seconds" in text
    assert "Your code, your outputs, your files and your keystrokes" in text
    assert "jupyter timeback report" in text
    # where this server sends, from its own status
    destination = body.locator('[data-timeback="destination"]')
    destination.wait_for()
    assert destination.inner_text() == DESTINATION


def close_dialog(page: Any) -> None:
    page.locator('.jp-Dialog .jp-Dialog-button:has-text("Close")').click()
    page.locator(".jp-Dialog").wait_for(state="detached")


def open_from_help_menu(page: Any) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Help$")).click()
    page.locator(".lm-Menu-itemLabel", has_text="What Timeback records").click()


def test_records_entry_in_help_menu_and_panel(start_lab, page, tmp_path: Path, artifacts: Path):
    root = tmp_path / "root"
    root.mkdir()
    path = write_notebook(root, "lesson.ipynb", LESSON, ["1 + 1"])
    lab = start_lab(root, None, NB7)

    # JupyterLab: Help menu, then the run panel's link.
    open_notebook(page, lab, path)
    notices(page).wait_for()  # first open: the notice (its own test below)
    open_from_help_menu(page)
    check_records_dialog(page)
    page.screenshot(path=artifacts / "lab-what-timeback-records.png")
    close_dialog(page)
    wait(lambda: item_state(page) not in (None, "starting"), what="the status bar item")
    # JupyterLab shows the run in its status bar only: no second clock in the notebook toolbar
    assert page.locator(".tb-ToolbarItem").count() == 0
    page.click(".tb-StatusItem")
    page.locator('.tb-RunPanel [data-timeback="records"]').click()
    check_records_dialog(page)
    close_dialog(page)

    # Notebook 7: the same entry in its Help menu.
    page.goto(notebook7_url(lab, path))
    page.wait_for_function(KERNEL_READY_JS, timeout=60_000)
    assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"
    open_from_help_menu(page)
    check_records_dialog(page)
    page.screenshot(path=artifacts / "notebook7-what-timeback-records.png")
    close_dialog(page)


def test_notice_once_per_student(start_lab, page, browser, tmp_path: Path, artifacts: Path):
    root = tmp_path / "root"
    root.mkdir()
    plain = write_notebook(root, "plain.ipynb", None, ["1 + 1"])
    lesson = write_notebook(root, "lesson.ipynb", LESSON, ["1 + 1"])
    quiz = write_notebook(root, "quiz.ipynb", QUIZ, ["2 + 2"])
    lab = start_lab(root, None, NB7)

    # A notebook that declares no activity says nothing.
    open_notebook(page, lab, plain)
    no_notice_after(page)
    assert seen_setting(lab) is None

    # The first activity: the notice, with the way to what is recorded.
    open_notebook(page, lab, lesson)
    notices(page).wait_for()
    page.screenshot(path=artifacts / "lab-notice.png")
    wait(lambda: seen_setting(lab) == 1, what="the notice remembered in the user settings")
    toast = page.locator(".jp-Notification-Toast-info", has_text=NOTICE_START)
    toast.locator(".jp-toast-button", has_text="What Timeback records").click()
    check_records_dialog(page)
    close_dialog(page)

    # Not again: the same notebook reopened, another activity, another browser, Notebook 7.
    open_notebook(page, lab, lesson)
    wait(lambda: item_state(page) not in (None, "starting"), what="the reopened run")
    no_notice_after(page)
    page.evaluate(
        f"() => window.jupyterapp.commands.execute('docmanager:open', {{path: {json.dumps(quiz)}}})"
    )
    wait(
        lambda: page.evaluate("() => window.jupyterapp.shell.currentWidget.context.path") == quiz,
        what="the second activity open",
    )
    wait(lambda: item_state(page) not in (None, "starting"), what="the second activity's run")
    no_notice_after(page)

    other = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        other.set_default_timeout(60_000)
        elsewhere = other.new_page()
        elsewhere.goto(notebook7_url(lab, quiz))
        elsewhere.wait_for_function(KERNEL_READY_JS, timeout=60_000)
        elsewhere.locator(".tb-ToolbarItem").wait_for()
        no_notice_after(elsewhere)
    finally:
        other.close()
    assert seen_setting(lab) == 1
