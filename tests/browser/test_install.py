"""`pip install` of the wheel is the whole JupyterLab install: the prebuilt extension is in it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

import timeback_jupyter

from .conftest import REPO, labextension_listing, listed_enabled_ok

SHARE = "share/jupyter/labextensions/timeback-jupyter"
EXAMPLES = "share/jupyter/timeback-jupyter/notebooks"
DATA = f"timeback_jupyter-{timeback_jupyter.__version__}.data/data"


def test_labextension_version_is_the_package_version():
    package = json.loads((REPO / "labextension" / "package.json").read_text())
    assert package["version"] == timeback_jupyter.__version__
    assert package["name"] == "timeback-jupyter"


def test_wheel_carries_the_prebuilt_extension_and_the_server_config(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    data = DATA
    assert f"{data}/{SHARE}/package.json" in names
    assert f"{data}/{SHARE}/install.json" in names
    assert any(re.fullmatch(rf"{data}/{SHARE}/static/remoteEntry\.\w+\.js", n) for n in names)
    assert f"{data}/etc/jupyter/jupyter_server_config.d/timeback_jupyter.json" in names
    # built output only: no TypeScript sources, no node_modules
    assert not [n for n in names if n.endswith(".ts") or "node_modules" in n]
    package = json.loads(zipfile.ZipFile(wheel).read(f"{data}/{SHARE}/package.json"))
    assert package["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")


def test_installed_wheel_is_listed_enabled(wheel: Path, tmp_path: Path):
    prefix = tmp_path / "prefix"
    subprocess.run(
        # --ignore-installed: without it pip first uninstalls the package from this very venv
        [sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q",
         "--prefix", str(prefix), str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    data_dir = prefix / "share" / "jupyter"
    assert (data_dir / "labextensions" / "timeback-jupyter" / "install.json").exists()
    # where the README tells users to copy the example notebooks from
    assert (prefix / EXAMPLES / "authoring-guide.ipynb").exists()
    listing = labextension_listing(sys.executable, {**os.environ, "JUPYTER_PATH": str(data_dir)})
    labextensions = data_dir / "labextensions"
    assert listed_enabled_ok(listing, labextensions, timeback_jupyter.__version__), listing


def readme_notebooks() -> set[str]:
    """The notebooks the README names (`authoring-guide.ipynb`...)."""
    readme = (REPO / "README.md").read_text()
    assert EXAMPLES in readme, "the README must say where the example notebooks are installed"
    return set(re.findall(r"`(?:notebooks/)?([\w.-]+\.ipynb)`", readme))


def test_wheel_carries_the_notebooks_the_readme_promises(wheel: Path):
    promised = readme_notebooks()
    assert "authoring-guide.ipynb" in promised
    archive = zipfile.ZipFile(wheel)
    for name in [*sorted(promised), "timeback.config.json"]:
        shipped = archive.read(f"{DATA}/{EXAMPLES}/{name}")
        assert shipped == (REPO / "notebooks" / name).read_bytes(), name
        if name.endswith(".ipynb"):
            notebook = nbformat.reads(shipped.decode(), as_version=4)
            nbformat.validate(notebook)
            # a copy handed out must start a fresh run for whoever opens it
            assert "run" not in notebook.metadata.get("timeback", {}), name


def test_wheel_carries_every_example_notebook_and_nothing_else(wheel: Path):
    tracked = subprocess.run(
        ["git", "ls-files", "notebooks"], cwd=REPO, capture_output=True, text=True
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: which files are the examples is git's to say")
    examples = {Path(line).name for line in tracked.stdout.split()}
    prefix = f"{DATA}/{EXAMPLES}/"
    shipped = {n[len(prefix) :] for n in zipfile.ZipFile(wheel).namelist() if n.startswith(prefix)}
    assert shipped == examples, "list each file of notebooks/ in pyproject.toml's shared-data"
