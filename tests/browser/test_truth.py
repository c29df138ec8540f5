"""What the student sees is true (issue 19), in a real JupyterLab and Chromium: a notebook's
bad metadata names every problem in the status bar, the magic and the server log; the panel's
figures are the server's at every sample, and never go back; a hidden tab says "paused" when
the server paused its run."""

from __future__ import annotations

import contextlib
import itertools
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .lab import (
    LESSON,
    hide,
    item_state,
    open_notebook,
    run_cell,
    saved_timeback,
    show,
    wait,
    wait_prompt,
    write_notebook,
)

MATHZ = {"id": "has spaces!", "name": "Quiz", "course": {"subject": "Mathz", "grade": "three"}}
MATHZ_PROBLEMS = [
    "metadata.timeback.activity.course.grade: must be an integer, got 'three'",
    "metadata.timeback.activity.course.subject: 'Mathz' is not one of Reading, Language, "
    "Vocabulary, Social Studies, Writing, Science, FastMath, Math, None, Other",
    "metadata.timeback.activity.id: 'has spaces!' is not a slug",
]
SCALAR_PROBLEMS = ["metadata.timeback: must be an object, got 'not-a-dict'"]
STATUS_CELL = "%load_ext timeback_jupyter\n%timeback status"


def write_section(root: Path, name: str, section: Any) -> str:
    """A notebook whose metadata.timeback is ``section`` as a careless author wrote it."""
    write_notebook(root, name, None, [STATUS_CELL])
    nb = nbformat.read(root / name, as_version=4)
    nb.metadata["timeback"] = section
    nbformat.write(nb, root / name)
    return name


@pytest.mark.parametrize(
    ("section", "problems"),
    [({"activity": MATHZ}, MATHZ_PROBLEMS), ("not-a-dict", SCALAR_PROBLEMS)],
    ids=["mathz", "not-a-dict"],
)
def test_bad_metadata_names_every_problem_where_students_and_authors_look(
    start_lab, page, tmp_path: Path, artifacts: Path, section, problems
):
    root = tmp_path / "root"
    root.mkdir()
    path = write_section(root, "bad.ipynb", section)
    lab = start_lab(root)
    open_notebook(page, lab, path)

    # the status bar: visible, every problem in the item's own text, and the fix
    item = page.locator(".tb-StatusItem")
    wait(lambda: item_state(page) == "not recording", what="the item to say not recording")
    assert item.is_visible()
    text = page.inner_text(".tb-StatusItem-state")
    assert text.startswith("not recording: bad.ipynb: "), text
    for problem in problems:
        assert problem in text, text
    assert "`jupyter timeback doctor bad.ipynb` checks it" in text
    page.locator("#jp-main-statusbar").screenshot(path=artifacts / f"truth-{path}-statusbar.png")

    # the panel names them too
    item.click()
    page.locator(".tb-RunPanel").wait_for()
    errors = page.inner_text('.tb-RunPanel [data-timeback="error"]')
    for problem in problems:
        assert problem in errors
    item.click()

    # %timeback status, run by the student
    run_cell(page, 0)
    wait_prompt(page, 0, 1)
    output = page.locator(".jp-Notebook .jp-Cell").nth(0).locator(".jp-OutputArea")
    wait(lambda: "not recording" in output.inner_text(), what="the magic's answer")
    said = output.inner_text()
    for problem in problems:
        assert problem in said, said
    assert "%timeback start" not in said

    # and the server log
    log = lab.log_path.read_text()
    for problem in problems:
        assert problem in log, log[-3000:]


def status_answers(page) -> list[dict]:
    """Every GET status answer the page receives, in order (the panel's only source): each is
    recorded before the page may see it."""
    answers: list[dict] = []

    def relay(route) -> None:
        response = route.fetch()
        with contextlib.suppress(ValueError):
            answers.append(response.json())
        route.fulfill(response=response)

    page.route("**/timeback/api/status?*", relay)
    return answers


PANEL_JS = """() => {
  const table = document.querySelector('.tb-RunPanel table');
  if (!table) return null;
  const row = key => {
    const tr = table.querySelector(`tr[data-timeback="${key}"]`);
    return tr && tr.dataset.seconds !== undefined ? Number(tr.dataset.seconds) : null;
  };
  return {
    as_of: table.dataset.asOf === undefined ? null : Number(table.dataset.asOf),
    active: row('active'), inactive: row('inactive'),
    today: row('today'), today_inactive: row('today-inactive'),
    state: document.querySelector('.tb-StatusItem')?.dataset.state ?? null,
  };
}"""


def test_the_panel_shows_the_servers_figures_and_they_never_go_back(
    start_lab, page, tmp_path: Path, artifacts: Path
):
    root = tmp_path / "root"
    root.mkdir()
    path = write_notebook(root, "lesson.ipynb", LESSON, ["x = 6 * 7\nx", "x + 1"])
    # paused 20 s after the last active instant: the script sees a pause while hidden
    lab = start_lab(root, None, "--Timeback.abandon_after=20", "--Timeback.idle_after=30")
    answers = status_answers(page)
    open_notebook(page, lab, path)
    run_id = wait(lambda: saved_timeback(root, path).get("run", {}).get("id"), what="saved run")
    page.locator(".tb-StatusItem", has_text="Fractions lesson").wait_for()
    page.click(".tb-StatusItem")
    page.locator(".tb-RunPanel").wait_for()
    samples: list[dict] = []

    def sample(phase: str) -> None:
        if page.locator(".tb-RunPanel").count() == 0:  # a click in the notebook closed it
            page.click(".tb-StatusItem")
            page.locator(".tb-RunPanel").wait_for()
        shown = page.evaluate(PANEL_JS)
        if shown is None or shown["as_of"] is None or shown["active"] is None:
            return
        # the answer the panel shows, by its instant: the figures must be that answer's
        matching = [a for a in answers if a.get("as_of") == shown["as_of"]]
        assert matching, (shown, [a.get("as_of") for a in answers[-5:]])
        answer = matching[-1]
        run = answer["run"]
        assert run["id"] == run_id
        assert shown["active"] == run["active_seconds"], (shown, run)
        assert shown["inactive"] == run["inactive_seconds"], (shown, run)
        assert shown["today"] == answer["today"]["active_seconds"], (shown, answer["today"])
        assert shown["today_inactive"] == answer["today"]["inactive_seconds"]
        samples.append({**shown, "phase": phase, "server_state": run["state"]})

    def for_a_while(seconds: float, phase: str) -> None:
        for _ in range(int(seconds)):
            sample(phase)
            page.wait_for_timeout(1000)

    for cell, count in ((0, 1), (1, 2)):
        run_cell(page, cell)
        wait_prompt(page, cell, count)
        for_a_while(4, "working")
    wait(lambda: item_state(page) == "active", what="active")
    for_a_while(6, "working")

    other = hide(page)
    lab.wait_state(run_id, "inactive", what="the server to see the tab hidden")
    # the hidden tab says paused once the server paused, without a report of its own
    for _ in range(60):
        sample("hidden")
        if item_state(page) == "paused":
            break
        page.wait_for_timeout(1000)
    assert item_state(page) == "paused", samples[-3:]
    assert lab.run(run_id)["state"] == "paused"
    for_a_while(3, "hidden")
    page.locator("#jp-main-statusbar").screenshot(path=artifacts / "truth-hidden-paused.png")
    show(page, other)
    run_cell(page, 1)
    wait_prompt(page, 1, 3)
    wait(lambda: item_state(page) == "active", what="active again")
    for_a_while(6, "back")

    (artifacts / "truth-samples.json").write_text(json.dumps(samples, indent=1))
    assert len(samples) >= 15, samples
    assert {s["server_state"] for s in samples} >= {"active"}, samples
    for before, after in itertools.pairwise(samples):
        for key in ("active", "inactive", "today", "today_inactive"):
            assert after[key] >= before[key], (key, before, after)
    for s in samples:
        assert s["today"] >= s["active"], s
        assert s["today_inactive"] >= s["inactive"], s
    # and after the pause the run's time went on from where it was: nothing lost or doubled
    final = lab.run(run_id)
    assert final["active_seconds"] >= samples[-1]["active"]
