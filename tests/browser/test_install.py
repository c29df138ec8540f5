"""`pip install` of the wheel is the whole JupyterLab install: the prebuilt extension is in it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import timeback_jupyter

REPO = Path(__file__).resolve().parents[2]
SHARE = "share/jupyter/labextensions/timeback-jupyter"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_labextension_version_is_the_package_version():
    package = json.loads((REPO / "labextension" / "package.json").read_text())
    assert package["version"] == timeback_jupyter.__version__
    assert package["name"] == "timeback-jupyter"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (REPO / "timeback_jupyter" / "labextension" / "static" / "style.js").exists():
        pytest.fail("the labextension is not built: run `make labext`")
    out = tmp_path_factory.mktemp("dist")
    # No isolation: the build hook finds the prebuilt extension (skip-if-exists) and only zips.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (found,) = out.glob("timeback_jupyter-*.whl")
    return found


def test_wheel_carries_the_prebuilt_extension_and_the_server_config(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    data = f"timeback_jupyter-{timeback_jupyter.__version__}.data/data"
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
    env = {**os.environ, "JUPYTER_PATH": str(data_dir)}
    listed = subprocess.run(
        [sys.executable, "-m", "jupyterlab.labextensions", "list"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    text = ANSI.sub("", listed.stdout + listed.stderr)
    section = text.split(str(data_dir / "labextensions"), 1)[1].split("\n/", 1)[0]
    assert re.search(
        rf"timeback-jupyter v{re.escape(timeback_jupyter.__version__)} enabled\s+OK "
        r"\(python, timeback-jupyter\)",
        section,
    ), text
