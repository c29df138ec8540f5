"""A notebook that is not in front goes quiet, and still hears when its run changes elsewhere."""

from __future__ import annotations

from pathlib import Path

from .lab import LESSON, QUIZ, open_notebook, saved_timeback, wait, write_notebook
from .test_lab import watch_requests

# Reports are 5 s apart while a notebook is in front: this is two and a half of them.
QUIET_FOR_MS = 12_500
OPEN_JS = "path => window.jupyterapp.commands.execute('docmanager:open', {path})"


def reports_of(sent: list[dict], path: str) -> list[dict]:
    return [r["body"] for r in sent if r["method"] == "WS" and r["body"]["path"] == path]


def heard(page, predicate):
    """``predicate`` for :func:`wait`, after letting Playwright deliver the page's events (it
    does so only while it is called)."""

    def check():
        page.wait_for_timeout(100)
        return predicate()

    return check


def test_a_notebook_behind_another_is_quiet_until_its_run_changes(
    start_lab, page, standin, tmp_path: Path
):
    root = tmp_path / "root"
    root.mkdir()
    lesson = write_notebook(root, "lesson.ipynb", LESSON, ["1 + 1"])
    quiz = write_notebook(root, "quiz.ipynb", QUIZ, ["2 + 2"])
    lab = start_lab(root)
    sent = watch_requests(page)

    open_notebook(page, lab, lesson)
    run_id = wait(lambda: saved_timeback(root, lesson).get("run", {}).get("id"), what="saved run")
    wait(heard(page, lambda: reports_of(sent, lesson)), what="the lesson's first report over WS")

    # The quiz opens in the same tab and takes the front: the lesson says so once...
    page.evaluate(OPEN_JS, quiz)
    wait(lambda: saved_timeback(root, quiz).get("run", {}).get("id"), what="the quiz's run")
    wait(
        heard(page, lambda: any(not r["visible"] for r in reports_of(sent, lesson))),
        what="the lesson to report that it is behind the quiz",
        seen=lambda: reports_of(sent, lesson),
    )
    lab.wait_state(run_id, "inactive", what="the lesson to count as inactive")

    # ...then sends nothing while the quiz in front reports every 5 s.
    before_lesson, before_quiz = len(reports_of(sent, lesson)), len(reports_of(sent, quiz))
    page.wait_for_timeout(QUIET_FOR_MS)  # (Playwright delivers the page's events meanwhile)
    assert len(reports_of(sent, lesson)) == before_lesson, reports_of(sent, lesson)[before_lesson:]
    assert len(reports_of(sent, quiz)) >= before_quiz + 2

    # Completed from outside the tab (as the kernel's %timeback complete does): the server
    # tells the tab, the lesson asks, and the notebook is saved as completed without a focus.
    r = lab.http.post(f"/timeback/api/runs/{run_id}/complete", json={})
    r.raise_for_status()
    wait(
        heard(page, lambda: saved_timeback(root, lesson)["run"]["status"] == "completed"),
        timeout=20,
        what="the lesson saved as completed while behind the quiz",
        seen=lambda: saved_timeback(root, lesson)["run"],
    )
    refreshes = [
        r["body"] for r in sent if r["method"] == "ANSWER" and r["body"].get("refresh") == lesson
    ]
    assert refreshes, "the server did not ask the tab to report the lesson"
    assert len(reports_of(sent, lesson)) > before_lesson
    assert saved_timeback(root, quiz)["run"]["status"] == "active"
