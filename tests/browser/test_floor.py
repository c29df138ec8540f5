"""The wheel on the oldest releases the package claims, as a hub's year-old image would run it.

pyproject.toml's floors (``jupyterlab>=4.2``, ``jupyter_server>=2.16``, ``ipykernel>=6.29``...)
are turned into pins (``jupyterlab==4.2.*``...) and installed into a virtual environment of their
own with the wheel built from this checkout: JupyterLab must list the extension enabled and
compatible, and the extension must work in a browser there (run started, runId written into the
notebook, status bar item, a completion through the ipywidgets button), in JupyterLab and in
Notebook 7. Raising a floor in pyproject.toml moves this test with it.

The environment is cached in .cache/floor/<key> (gitignored), the key naming the pins and the
Python; only the wheel is reinstalled on each run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import timeback_jupyter
from timeback_jupyter.testing.standin import StandIn

from .conftest import REPO, labextension_listing, listed_enabled_ok
from .lab import (
    QUIZ,
    TOKEN,
    Lab,
    item_state,
    open_notebook,
    run_cell,
    saved_timeback,
    wait,
    wait_prompt,
    write_notebook,
)

CACHE = REPO / ".cache" / "floor"
# The README claims Notebook 7.2 and newer (pyproject does not: a user brings their own
# Notebook); 7.2 is the Notebook built on JupyterLab 4.2.
NOTEBOOK_FLOOR = "notebook==7.2.*"
UNSATISFIED = re.compile(r"Unsatisfied version \S+ from \S+ of shared singleton module (\S+) "
                         r"\(required (\S+)\)")  # fmt: skip


def floor_requirements() -> list[str]:
    """``name==X.Y.*`` for each ``name>=X.Y`` the package's dependencies and `lab` extra claim."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = []
    for line in [*project["dependencies"], *project["optional-dependencies"]["lab"]]:
        req = Requirement(line)
        name = req.name + (f"[{','.join(sorted(req.extras))}]" if req.extras else "")
        floors = [spec.version for spec in req.specifier if spec.operator == ">="]
        # a dependency without a floor claims no release: the newest is all there is to test
        pins.append(f"{name}=={floors[0]}.*" if floors else str(req))
    return sorted([*pins, NOTEBOOK_FLOOR])


def test_readme_claims_the_floors_tested_here():
    pins = dict(pin.split("==") for pin in floor_requirements())
    readme = (REPO / "README.md").read_text()
    # its first sentence, the claim (the next one names the patch releases tested)
    supported = readme.split("Supported:", 1)[1].replace("\n", " ").split(". ", 1)[0]
    names = {"jupyterlab": "JupyterLab", "jupyter_server": "jupyter_server", "notebook": "Notebook",
             "ipykernel": "ipykernel", "ipywidgets": "ipywidgets"}  # fmt: skip
    for package, shown in names.items():
        floor = re.escape(pins[package].removesuffix(".*"))
        assert re.search(rf"\b{shown} {floor}(?![\d.])", supported), (package, supported)


def _run(*command: str | Path, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _pip(venv: Path, *args: str | Path) -> str:
    return _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", *args)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time: two test runs must not install into the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def floor_environment(pins: list[str], wheel: Path) -> Path:
    """The cached virtual environment with ``pins`` installed (built when missing) and ``wheel``
    (reinstalled every time: the cache holds only what the key names)."""
    key_source = json.dumps([list(sys.version_info[:2]), pins])
    key = hashlib.sha256(key_source.encode()).hexdigest()[:12]
    venv = CACHE / key
    with _locked(CACHE / f"{key}.lock"):
        if not (venv / "complete").exists():  # written last: a half-built one is rebuilt
            shutil.rmtree(venv, ignore_errors=True)
            # this environment's pip installs into it: no pip of its own to bootstrap; and no
            # .pyc compiled ahead for thousands of modules the tests never import
            _run(sys.executable, "-m", "venv", "--without-pip", venv)
            _pip(venv, "install", "-q", "--no-compile", *pins)
            (venv / "complete").write_text("\n".join(pins) + "\n")
        for stale in CACHE.iterdir():  # environments for older pins are never used again
            if stale.is_dir() and stale.name != key:
                shutil.rmtree(stale, ignore_errors=True)
        _pip(venv, "install", "-q", "--no-deps", "--force-reinstall", wheel)
        # the wheel's own requirements are met by the floor: nothing newer was needed
        _pip(venv, "check")
    return venv


@pytest.fixture(scope="module")
def floor(wheel: Path) -> Path:
    """The floor environment with this checkout's wheel installed; its directory."""
    return floor_environment(floor_requirements(), wheel)


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """This process's environment without the user's Jupyter dirs or extra Jupyter paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_PATH", "PYTHONPATH")}
    env |= {"JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path)}
    return env


def test_floor_lists_the_extension_enabled_and_compatible(floor: Path, tmp_path: Path):
    python = floor / "bin" / "python"
    names = ["jupyterlab", "jupyter_server", "notebook", "ipykernel", "ipywidgets"]
    versions = _run(
        python, "-c", f"from importlib.metadata import version; print(*map(version, {names}))"
    ).split()  # fmt: skip
    lab, server, nb, kernel, widgets = versions
    assert lab.startswith("4.2.") and server.startswith("2.16.") and nb.startswith("7.2."), versions
    assert kernel.startswith("6.29.") and widgets.startswith("8.1."), versions

    listing = labextension_listing(python, isolated_env(tmp_path))
    labextensions = floor / "share" / "jupyter" / "labextensions"
    assert listed_enabled_ok(listing, labextensions, timeback_jupyter.__version__), listing
    assert "is not compatible" not in listing, listing


def shared_module_complaints(page: Any) -> list[str]:
    """Webpack's console warnings about a shared module whose release our package.json does not
    accept (JupyterLab then hands the extension its own release anyway, untested)."""
    ours = json.loads((REPO / "labextension" / "package.json").read_text())["dependencies"]
    complaints: list[str] = []

    def note(message: Any) -> None:
        found = UNSATISFIED.search(message.text)
        if found and ours.get(found.group(1)) == found.group(2):
            complaints.append(message.text)

    page.on("console", note)
    return complaints


@pytest.fixture
def floor_lab(floor: Path, tmp_path: Path, standin: StandIn) -> Iterator[tuple[Lab, Path]]:
    root = tmp_path / "root"
    root.mkdir()
    lab = Lab(
        tmp_path / "lab", root, tmp_path / "store.sqlite3", standin,
        "--JupyterNotebookApp.expose_app_in_browser=True",
        python=str(floor / "bin" / "python"),
    )  # fmt: skip
    yield lab, root
    lab.stop()


def test_quiz_on_the_floor_in_jupyterlab(floor_lab, floor: Path, page, standin: StandIn):
    lab, root = floor_lab
    complaints = shared_module_complaints(page)
    path = write_notebook(
        root,
        "quiz.ipynb",
        QUIZ,
        [
            "import sys\nsys.prefix",
            "from timeback_jupyter import CompletionButton\nCompletionButton()",
        ],
    )
    open_notebook(page, lab, path)
    assert page.evaluate("() => window.jupyterapp.version").startswith("4.2."), "not the floor"
    run_id = wait(lambda: saved_timeback(root, path).get("run", {}).get("id"), what="saved run")
    page.locator(".tb-StatusItem", has_text=QUIZ["name"]).wait_for()

    run_cell(page, 0)
    wait_prompt(page, 0, 1)
    assert str(floor) in page.locator(".jp-Notebook .jp-Cell").nth(0).inner_text()  # its kernel
    wait(lambda: item_state(page) == "active", what="the status bar to say active")
    lab.wait_state(run_id, "active")

    # ipywidgets 8.1 on JupyterLab 4.2 and ipykernel 6.29: the completion button works
    run_cell(page, 1)
    button = page.locator('button.jupyter-button:has-text("Mark complete")')
    button.wait_for()
    wait(lambda: button.is_enabled(), what="the completion button to be enabled")
    button.click()
    wait(lambda: item_state(page) == "completed", what="the status bar to say completed")
    wait(
        lambda: saved_timeback(root, path).get("run", {}).get("status") == "completed",
        what="the completed run saved into the notebook",
    )
    report = lab.flush()["report"]
    assert report["remaining"] == 0 and report["error"] is None
    completions = [
        e for e in standin.received
        if e["extensions"]["runId"] == run_id and e["type"] == "ActivityEvent"
    ]  # fmt: skip
    assert len(completions) == 1, standin.received
    assert complaints == []


def test_lesson_on_the_floor_in_notebook7(floor_lab, page):
    lab, root = floor_lab
    complaints = shared_module_complaints(page)
    path = write_notebook(root, "homework.ipynb", QUIZ, ["third = 1 / 3\nthird"])
    lab.lab_url = lambda p: f"{lab.url}/notebooks/{p}?token={TOKEN}"  # Notebook 7's page
    open_notebook(page, lab, path)
    assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"
    assert page.evaluate("() => window.jupyterapp.version").startswith("7.2."), "not the floor"
    run_id = wait(lambda: saved_timeback(root, path).get("run", {}).get("id"), what="saved run")
    run_cell(page, 0)
    wait_prompt(page, 0, 1)
    lab.wait_state(run_id, "active", what="presence from Notebook 7")
    assert complaints == []
