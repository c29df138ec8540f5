"""Browser tests: a real `jupyter lab` with the built extension, Debian's Chromium driven by
Playwright (never a downloaded browser), and the Timeback stand-in receiving the events."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from timeback_jupyter.testing.standin import StandIn

from ..chromium import CHROMIUM, CHROMIUM_ARGS, jp_asyncio_loop, jp_server_cleanup  # noqa: F401
from ..conftest import STUDENT
from .lab import CLIENT_ID, SECRET, SOURCED_ID, Lab

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _why_no_browser() -> str | None:
    """Why browser tests cannot run here; None when they can. Under CI they always must."""
    if os.environ.get("CI") == "true":
        return None
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium); CI=true runs these tests"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    return None


# Per module, not per session: a running Playwright holds an asyncio loop in this thread, and
# the tests after these (pytest-jupyter's) need it gone.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _why_no_browser()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(60_000)  # two cores shared with kernels and the server
    page = context.new_page()
    # Playwright tells every page it has focus; the tests want the real thing (a tab switch
    # takes focus away, and the extension reports it).
    context.new_cdp_session(page).send("Emulation.setFocusEmulationEnabled", {"enabled": False})
    # Leaving a notebook with outputs asks "leave the page?": the student says yes.
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn(CLIENT_ID, SECRET) as api:
        api.users[STUDENT] = [SOURCED_ID]
        yield api


def installed_labextension() -> Path | None:
    """Where JupyterLab finds our prebuilt extension, if it does."""
    from jupyter_core.paths import jupyter_path

    for base in jupyter_path("labextensions"):
        candidate = Path(base) / "timeback-jupyter" / "package.json"
        if candidate.exists():
            return candidate.parent
    return None


@pytest.fixture
def start_lab(tmp_path: Path, standin: StandIn) -> Iterator[Any]:
    """``start_lab(root, store)`` starts a `jupyter lab`; all are stopped after the test."""
    if installed_labextension() is None:
        pytest.fail("the labextension is not built and installed: run `make labext`")
    labs: list[Lab] = []

    def start(root: Path, store: Path | None = None, *extra: str) -> Lab:
        name = f"lab{len(labs)}"
        lab = Lab(tmp_path / name, root, store or tmp_path / f"{name}.sqlite3", standin, *extra)
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.stop()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel` builds from this checkout, as a user would get it."""
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


def labextension_listing(python: str | Path, env: dict[str, str]) -> str:
    """What `jupyter labextension list` prints under ``python``'s JupyterLab, colours removed."""
    listed = subprocess.run(
        [str(python), "-m", "jupyterlab.labextensions", "list"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return ANSI.sub("", listed.stdout + listed.stderr)


def listed_enabled_ok(listing: str, labextensions: Path, version: str) -> bool:
    """Whether ``listing`` shows our extension in ``labextensions``, enabled and compatible
    (JupyterLab marks an extension whose ranges its release cannot meet with an X and a
    "requires ..." line instead of OK)."""
    if str(labextensions) not in listing:
        return False
    section = listing.split(str(labextensions), 1)[1].split("\n/", 1)[0]
    return bool(
        re.search(
            rf"timeback-jupyter v{re.escape(version)} enabled\s+OK \(python, timeback-jupyter\)",
            section,
        )
    )
