"""The pytest plugin as a course author uses it: a project of their own, `python -m pytest` in it.

Each test writes a small course (timeback.config.json, activity notebooks, tests/ with the
one-line conftest) into a temporary folder and runs pytest there in a subprocess of this
interpreter, so nothing of this repository's tests (its conftest, its fixtures) is involved.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

CONFIG = {
    "name": "Notebook Academy",
    "sensor": "https://notebooks.example.edu",
    "courses": [{"subject": "Math", "grade": 3, "ids": {"staging": "math-3-stg"}}],
    # the lesson declares its activity here, by its path in the project
    "jupyter": {"activities": [{
        "notebook": "notebooks/lesson.ipynb", "id": "fractions-lesson", "name": "Fractions",
        "course": {"subject": "Math", "grade": 3},
    }]},
}  # fmt: skip
QUIZ = {"id": "fractions-quiz", "name": "Fractions quiz", "course": {"subject": "Math", "grade": 3}}

AUTHOR_TESTS = """\
from timeback_jupyter.testing import NotebookRecord


async def test_the_quiz_completes_with_one_of_two_correct(timeback_notebook):
    record: NotebookRecord = await timeback_notebook("../notebooks/quiz.ipynb")
    record.assert_completed(correct=1, total=2)
    assert record.run is not None and record.run["status"] == "completed"
    assert record.run["exercises"] == {"q1": True, "q2": False}
    types = [event["type"] for event in record.events]
    assert types[-1] == "ActivityEvent" and types.count("ActivityEvent") == 1
    assert "TimeSpentEvent" in types and record.active_seconds > 0
    assert {event["extensions"]["runId"] for event in record.events} == {record.run["id"]}
    assert record.widgets[0].button == "Completed"


async def test_the_lesson_is_left_unfinished(timeback_notebook):
    record = await timeback_notebook("../notebooks/lesson.ipynb")
    record.assert_completed()
"""


def notebook(path: Path, cells: list[str], activity: dict | None = None) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# An activity")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    if activity is not None:
        nb.metadata["timeback"] = {"activity": activity}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb))


@pytest.fixture
def course(tmp_path: Path) -> Path:
    project = tmp_path / "course"
    (project / "tests").mkdir(parents=True)
    (project / "timeback.config.json").write_text(json.dumps(CONFIG))
    notebook(project / "notebooks" / "quiz.ipynb", [
        "from timeback_jupyter import CompletionButton, exercise",
        "exercise('q1').check(1 + 1 == 2)",
        "exercise('q2').check(2 * 2 == 5)",
        "CompletionButton(exercises=['q1', 'q2'])",
    ], QUIZ)  # fmt: skip
    # Never asks q2: its completion button stays disabled ("Not yet").
    notebook(project / "notebooks" / "lesson.ipynb", [
        "from timeback_jupyter import CompletionButton, exercise",
        "exercise('q1').check(True)",
        "CompletionButton(exercises=['q1', 'q2'])",
    ])  # fmt: skip
    (project / "tests" / "conftest.py").write_text(
        'pytest_plugins = ["timeback_jupyter.pytest_plugin"]\n'
    )
    (project / "tests" / "test_activities.py").write_text(AUTHOR_TESTS)
    return project


def author_pytest(project: Path, *args: str, code: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "JUPYTER_"))}
    main = f"{code}import pytest, sys; sys.exit(pytest.main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", main, "-p", "no:cacheprovider", "-q", "-rf", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_an_author_tests_their_notebooks_against_the_standin(course: Path):
    before = {p: p.read_bytes() for p in (course / "notebooks").iterdir()}
    done = author_pytest(course, "tests")
    out = done.stdout

    assert done.returncode == 1, out[-4000:]  # the lesson fails; the quiz passes
    assert "1 failed, 1 passed" in out, out[-4000:]
    assert "FAILED tests/test_activities.py::test_the_lesson_is_left_unfinished" in out
    # why the lesson did not complete, in words the author reads
    assert "notebooks/lesson.ipynb did not complete its activity" in out, out[-4000:]
    assert "fractions-lesson (attempt 1)" in out, out[-4000:]
    assert "exercises answered: q1 correct" in out, out[-4000:]
    assert "says: Not yet: answer q2 first" in out, out[-4000:]
    # the author's notebooks are copied into the test server, never written
    assert {p: p.read_bytes() for p in (course / "notebooks").iterdir()} == before


def test_a_cell_that_raises_fails_the_test_with_its_traceback(course: Path):
    notebook(course / "notebooks" / "broken.ipynb", ["answer = 1 / 0"], QUIZ)
    (course / "tests" / "test_broken.py").write_text(
        "async def test_broken(timeback_notebook):\n"
        "    await timeback_notebook('../notebooks/broken.ipynb')\n"
    )
    done = author_pytest(course, "tests/test_broken.py")
    assert done.returncode == 1, done.stdout[-4000:]
    assert "notebooks/broken.ipynb: cell 1 raised ZeroDivisionError: division by zero" in (
        done.stdout
    ), done.stdout[-4000:]
    assert "----> 1 answer = 1 / 0" in done.stdout


def test_a_missing_testing_extra_is_named(course: Path):
    # As if pytest-jupyter were not installed: the plugin says which extra brings it.
    done = author_pytest(course, "tests", code="import sys; sys.modules['pytest_jupyter'] = None\n")
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "needs the 'testing' extra (missing: pytest_jupyter)" in said, said[-3000:]
    assert "pip install 'timeback-jupyter[testing]'" in said


def test_a_project_without_its_timeback_config_is_told_what_to_do(course: Path):
    (course / "timeback.config.json").unlink()
    done = author_pytest(course, "tests/test_activities.py", "-k", "quiz")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "no timeback.config.json in" in done.stdout, done.stdout[-3000:]
    assert "override the `timeback_app_config` fixture" in done.stdout
