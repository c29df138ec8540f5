"""`jupyter timeback strip NOTEBOOK`: run data out, activity declaration kept, file whole."""

from __future__ import annotations

import json
import os
import stat

import nbformat
import pytest

from timeback_jupyter.cli.strip import (
    COMPLETION_WIDGET_CLASS,
    WIDGET_STATE,
    WIDGET_VIEW,
    strip_run_data,
)
from timeback_jupyter.notebook_metadata import CURRENT_VERSION, NewerVersionError

from .test_cli import assert_one_line_error, cli, jupyter, make_env

ACTIVITY = {"id": "fractions-quiz", "name": "Fractions quiz",
            "course": {"subject": "Math", "grade": 3}, "stateful": False}  # fmt: skip
RUN = {"id": "0b8f6c8e-2a55-4c1e-9a51-3f0c6a9e7d10", "student": "5f1d2c3b4a596877",
       "status": "completed", "attempt": 1, "origin": "quiz.ipynb"}  # fmt: skip


@pytest.fixture
def env(tmp_path, monkeypatch):
    return make_env(tmp_path, monkeypatch)


def model(name: str, state: dict) -> dict:
    return {"model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0",
            "model_name": name, "state": state}  # fmt: skip


def view(model_id: str) -> dict:
    return nbformat.v4.new_output(
        "display_data",
        data={"text/plain": "VBox(children=(HTML(value='<b>Completed</b> 3/4'),))",
              WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": model_id}},
    )  # fmt: skip


def handed_in_notebook() -> nbformat.NotebookNode:
    """A student's notebook: a run in the metadata, a completed completion widget saved with
    its state, and an unrelated slider the teacher put there (which must stay)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["timeback"] = {"schema_version": 1, "activity": ACTIVITY, "run": RUN}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    state = {
        "box": model("VBoxModel", {"_dom_classes": [COMPLETION_WIDGET_CLASS],
                                   "children": ["IPY_MODEL_html", "IPY_MODEL_button"],
                                   "layout": "IPY_MODEL_box-layout"}),
        "html": model("HTMLModel", {"value": "<b>Completed</b> 3/4", "layout": "IPY_MODEL_shared"}),
        "button": model("ButtonModel", {"description": "Done", "disabled": True,
                                        "layout": "IPY_MODEL_button-layout"}),
        "box-layout": model("LayoutModel", {}),
        "button-layout": model("LayoutModel", {}),
        "shared": model("LayoutModel", {"width": "50%"}),  # also the slider's layout
        "slider": model("IntSliderModel", {"value": 7, "layout": "IPY_MODEL_shared"}),
    }  # fmt: skip
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": state, "version_major": 2,
                                             "version_minor": 0}}  # fmt: skip
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from timeback_jupyter import CompletionButton\nCompletionButton()",
            outputs=[view("box")],
        ),
        nbformat.v4.new_code_cell("slider", outputs=[view("slider")]),
        nbformat.v4.new_markdown_cell("# Fractions"),
    ]
    nbformat.validate(nb)
    return nb


def write(path, nb) -> None:
    path.write_text(nbformat.writes(nb), encoding="utf-8")


def test_strip_removes_the_run_and_the_completion_widget_only(env):
    path = env.tmp / "quiz.ipynb"
    write(path, handed_in_notebook())
    os.chmod(path, 0o640)
    result = jupyter(env, "strip", str(path))
    assert result.code == 0, result
    assert "removed the run, 5 completion widget models, 1 widget output" in result.out
    assert "kept the activity declaration" in result.out

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["timeback"] == {"schema_version": 1, "activity": ACTIVITY}
    assert RUN["id"] not in path.read_text() and RUN["student"] not in path.read_text()
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    assert set(state) == {"slider", "shared"}  # the slider and the layout it shares
    assert nb.cells[0].outputs == [] and len(nb.cells[1].outputs) == 1
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in env.tmp.iterdir() if p.name.startswith(".quiz")] == []


def test_strip_output_leaves_the_original_alone(env, capsys):
    source = env.tmp / "quiz.ipynb"
    write(source, handed_in_notebook())
    before = source.read_bytes()
    handout = env.tmp / "handout.ipynb"
    result = cli(capsys, "strip", str(source), "--output", str(handout))
    assert result.code == 0, result
    assert source.read_bytes() == before
    assert "run" not in json.loads(handout.read_text())["metadata"]["timeback"]
    assert f"into {handout}" in result.out


def test_a_notebook_without_run_data_is_left_byte_for_byte(env, capsys):
    path = env.tmp / "clean.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.metadata["timeback"] = {"schema_version": 1, "activity": ACTIVITY}
    write(path, nb)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    result = cli(capsys, "strip", str(path))
    assert result.code == 0
    assert "no run data to strip (left unchanged)" in result.out
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


def test_strip_written_like_nbformat_writes_it(env, capsys):
    path = env.tmp / "quiz.ipynb"
    nb = handed_in_notebook()
    write(path, nb)
    assert cli(capsys, "strip", str(path)).code == 0
    strip_run_data(nb)
    # nbformat.write (what Jupyter saves with) ends the file with a newline; so do we.
    assert path.read_text(encoding="utf-8") == nbformat.writes(nb) + "\n"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"print('hello')\n", "invalid JSON"),
        (b'{"hello": "world"}', "no 'cells' list"),
        (b'{"cells": [], "nbformat": 3, "metadata": {}}', "format 4"),
        (b'{"cells": [], "nbformat": 4, "metadata": []}', "metadata must be an object"),
        (b'{"cells": [], "nbformat": 4, "metadata": {"timeback": 7}}', "metadata.timeback"),
        (b'{"cells": [], "nbformat": 4, "metad', "invalid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_strip_refuses_what_is_not_a_notebook_and_changes_nothing(env, capsys, content, needle):
    path = env.tmp / "thing.ipynb"
    path.write_bytes(content)
    assert_one_line_error(cli(capsys, "strip", str(path)), str(path), needle)
    assert path.read_bytes() == content


def test_strip_errors(env, capsys):
    assert_one_line_error(cli(capsys, "strip"), "exactly one NOTEBOOK", code=2)
    assert_one_line_error(cli(capsys, "strip", "a.ipynb", "b.ipynb"), "exactly one", code=2)
    missing = env.tmp / "missing.ipynb"
    assert_one_line_error(cli(capsys, "strip", str(missing)), "no such file")
    assert_one_line_error(cli(capsys, "strip", str(env.tmp)), "is a directory")

    source = env.tmp / "quiz.ipynb"
    write(source, handed_in_notebook())
    before = source.read_bytes()
    nowhere = env.tmp / "no-dir" / "out.ipynb"
    result = cli(capsys, "strip", str(source), f"--output={nowhere}")
    assert_one_line_error(result, "cannot write", "does not exist")
    assert source.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_strip_an_unreadable_notebook(env, capsys):
    path = env.tmp / "locked.ipynb"
    write(path, handed_in_notebook())
    os.chmod(path, 0)
    assert_one_line_error(cli(capsys, "strip", str(path)), "cannot be read", "Permission denied")


@pytest.mark.parametrize("version", [None, 1, CURRENT_VERSION])
def test_strip_keeps_keys_it_does_not_know_and_the_version_as_it_is(env, capsys, version):
    """Only the run goes: other tools' keys stay, and an older version is not upgraded (the
    handed-out notebook stays readable by every timeback-jupyter that read it before)."""
    path = env.tmp / "quiz.ipynb"
    nb = handed_in_notebook()
    section = {"activity": {**ACTIVITY, "author_note": "unit 4"}, "run": RUN,
               "reviewer": {"name": "ms-k"}}  # fmt: skip
    if version is not None:
        section["schema_version"] = version
    nb.metadata["timeback"] = section
    write(path, nb)
    assert cli(capsys, "strip", str(path)).code == 0
    kept = {k: v for k, v in section.items() if k != "run"}
    assert json.loads(path.read_text())["metadata"]["timeback"] == kept


def test_strip_refuses_a_newer_version_and_leaves_the_file_byte_for_byte(env, capsys):
    path = env.tmp / "quiz.ipynb"
    nb = handed_in_notebook()
    newer = CURRENT_VERSION + 1
    nb.metadata["timeback"] = {"schema_version": newer, "activity": ACTIVITY, "run": RUN}
    write(path, nb)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    handout = env.tmp / "handout.ipynb"
    for extra in ([], ["--output", str(handout)]):
        assert_one_line_error(
            cli(capsys, "strip", str(path), *extra),
            f"{path}: metadata.timeback was made by a newer timeback-jupyter (schema_version "
            f"{newer}; this one reads up to {CURRENT_VERSION}): upgrade timeback-jupyter",
        )
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert not handout.exists()
    # in place too: the widget state (also student data) is not touched either
    parsed = json.loads(before)
    with pytest.raises(NewerVersionError):
        strip_run_data(parsed)
    assert parsed == json.loads(before)
