"""The example notebooks run top to bottom against a real server and produce the right events."""

import shutil
from pathlib import Path

import nbformat
import pytest

from timeback_jupyter.store import Store

from .jupyter_process import Server, notebook_run, wait

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("examples")
    root = tmp / "notebooks"
    shutil.copytree(NOTEBOOKS, root)
    server = Server(tmp, root, tmp / "timeback.sqlite3")
    yield server
    server.stop()


def code_cells(name: str) -> list[str]:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def events_of(store_path: Path, run_id: str) -> list[dict]:
    with Store(store_path) as store:
        return [e for e in store.events() if e["session"] == f"urn:uuid:{run_id}"]


def test_quiz_runs_and_completes_with_its_exercises(lab):
    session = lab.open("fractions-quiz.ipynb")
    shown = lab.run_cells(session["kernel"]["id"], code_cells("fractions-quiz.ipynb"))
    assert not any("ERROR" in text for text in shown), shown
    assert "q1: correct ✓" in "".join(shown)
    # the student presses "Mark complete": what the button does, from the kernel
    done = lab.run_cells(session["kernel"]["id"], ["%timeback complete"])[0]
    assert "ompleted" in done, done
    run = lab.http.get("/timeback/api/status").json()
    assert run["recording"] is True
    runs = wait(lambda: Store(lab.store).list_runs(activity_id="fractions-quiz"), what="the run")
    events = events_of(lab.store, runs[0].id)
    completions = [e for e in events if e["type"] == "ActivityEvent"]
    assert len(completions) == 1
    items = {i["type"]: i["value"] for i in completions[0]["generated"]["items"]}
    assert items["totalQuestions"] == 3 and items["correctQuestions"] == 3
    assert any(e["type"] == "TimeSpentEvent" for e in events)


def test_lesson_keeps_its_run_in_the_notebook_and_ends_resumable(lab):
    path = "fractions-lesson.ipynb"
    session = lab.open(path)
    shown = lab.run_cells(session["kernel"]["id"], [*code_cells(path), "%timeback end"])
    assert not any("ERROR" in text for text in shown), shown
    run = wait(lambda: notebook_run(lab.root, path), what="the run in the notebook")
    with Store(lab.store) as store:
        stored = store.get_run(run["id"])
        assert stored is not None and stored.status == "ended"
        assert stored.exercises == {"day1": True, "day2": True, "day3": True}


def test_authoring_guide_shows_every_form_without_a_traceback(lab):
    path = "authoring-guide.ipynb"
    session = lab.open(path)
    shown = lab.run_cells(session["kernel"]["id"], code_cells(path))
    text = "\n".join(shown)
    assert "Traceback" not in text and "ERROR" not in text, text
    assert "usage" in text.lower()  # --help
    with Store(lab.store) as store:
        (run,) = store.list_runs(activity_id="authoring-demo")
        completion = store.get_completion(run.id)
    assert completion is not None
    assert completion["generated"]["extensions"]["pctCompleteApp"] == 100
