"""A real `jupyter lab` process with timeback sending to the stand-in, and page helpers."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import nbformat

from timeback_jupyter.testing.standin import StandIn

from ..conftest import STUDENT
from ..jupyter_process import JupyterProcess

TOKEN = "browser-test-token"
CLIENT_ID, SECRET = "tb-browser-client", "tb-browser-secret-never-logged"
SOURCED_ID = "student-sourced-7"
APP_CONFIG = {
    "name": "Notebook Academy",
    "sensor": "https://notebooks.example.edu",
    "courses": [{"subject": "Math", "grade": 3, "ids": {"staging": "math-3-stg"}}],
}
LESSON = {
    "id": "fractions-lesson",
    "name": "Fractions lesson",
    "course": {"subject": "Math", "grade": 3},
    "stateful": True,
}
QUIZ = {"id": "fractions-quiz", "name": "Fractions quiz", "course": {"subject": "Math", "grade": 3}}

# True once the app knows the notebook's kernel is connected and idle: the toolbar's indicator
# can say idle before the kernel connection exists.
KERNEL_READY_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""


def write_notebook(root: Path, name: str, activity: dict | None, cells: list[str]) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if activity is not None:
        nb.metadata["timeback"] = {"activity": activity}
    (root / name).write_text(nbformat.writes(nb))
    return name


def saved_timeback(root: Path, name: str) -> dict[str, Any]:
    """metadata.timeback of the notebook file as saved on disk."""
    try:
        return json.loads((root / name).read_text())["metadata"].get("timeback") or {}
    except (OSError, ValueError):
        return {}  # caught mid-save


def wait(predicate, timeout: float = 60.0, what: str = "condition", seen=None):
    """Poll ``predicate`` until truthy. Generous: two cores shared with kernels and a browser.

    ``seen()`` describes what was there instead, for the failure message.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f"; saw {seen()}" if seen else ""))


class Lab(JupyterProcess):
    """`jupyter lab` in its own process group, its own Jupyter dirs, sending to ``standin``.

    ``python`` is the interpreter (so the environment) it runs from: another one than this
    test's tries the product on other releases of JupyterLab."""

    def __init__(
        self,
        tmp: Path,
        root: Path,
        store: Path,
        standin: StandIn,
        *extra: str,
        python: str = sys.executable,
    ):
        self.store = store
        (root / "timeback.config.json").write_text(json.dumps(APP_CONFIG))
        # No "get notified about Jupyter news?" toast over the screenshots.
        news = tmp / "settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True, exist_ok=True)
        (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        env = {
            "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
            "TIMEBACK_API_CLIENT_ID": CLIENT_ID,
            "TIMEBACK_API_CLIENT_SECRET": SECRET,
        }
        args = [
            "--LabApp.expose_app_in_browser=True",
            f"--Timeback.store_path={store}", f"--Timeback.student_email={STUDENT}",
            "--Timeback.sink=timeback", "--Timeback.environment=staging",
            f"--Timeback.base_url={standin.url}", f"--Timeback.auth_url={standin.token_url}",
            f"--Timeback.oneroster_base_url={standin.url}",
            "--Timeback.heartbeat_interval=1", "--Timeback.retry_initial=0.05",
            "--Timeback.drain_interval=0.2",
            # a tab whose reports stop still counts for this long: only `leaving` ends it sooner
            "--Timeback.presence_ttl=60",
            *extra,
        ]  # fmt: skip
        super().__init__(
            tmp, root, "jupyterlab", TOKEN, args, env,
            http_timeout=15, log_name="lab", recording=True, python=python,
        )  # fmt: skip

    def lab_url(self, path: str) -> str:
        return f"{self.url}/lab/tree/{path}?token={TOKEN}"

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.http.get(f"/timeback/api/runs/{run_id}")
        r.raise_for_status()
        return r.json()["run"]

    def wait_state(self, run_id: str, state: str, timeout: float = 60.0, what: str = "") -> None:
        """Wait until the server says the run is in ``state`` (active, inactive...)."""
        wait(
            lambda: self.run(run_id)["state"] == state,
            timeout,
            what or f"the run to be {state}",
            seen=lambda: {k: v for k, v in self.run(run_id).items() if k != "activity"},
        )

    def flush(self) -> dict[str, Any]:
        r = self.http.post("/timeback/api/flush", json={"timeout": 20})
        r.raise_for_status()
        return r.json()


# ---- page helpers ------------------------------------------------------------------------------


def open_notebook(page: Any, lab: Lab, path: str) -> None:
    page.goto(lab.lab_url(path))
    page.wait_for_function(KERNEL_READY_JS, timeout=60_000)


def run_cell(page: Any, index: int) -> None:
    """Select cell ``index`` and run it with Shift+Enter, as a student would."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


def wait_prompt(page: Any, index: int, count: int) -> None:
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt")
    prompt.filter(has_text=f"[{count}]").wait_for()


def panel_value(page: Any, key: str) -> str:
    """A row of the status bar item's details panel (it must be open)."""
    return page.inner_text(f'.tb-RunPanel tr[data-timeback="{key}"] td')


def item_state(page: Any) -> str | None:
    return page.get_attribute(".tb-StatusItem", "data-state")


def hide(page: Any) -> Any:
    """Switch to another tab: the notebook's window loses focus and its page turns hidden.

    Focus moves for real (another page comes to the front). Headless Chromium keeps every page
    'visible' whatever is in front, so the visibility half is what the browser does on a tab
    switch, done by hand: visibilityState becomes 'hidden' and `visibilitychange` fires.
    """
    other = page.context.new_page()
    other.goto("about:blank")
    other.bring_to_front()
    page.evaluate(
        """() => {
          const own = (name, value) =>
            Object.defineProperty(document, name, {configurable: true, get: () => value});
          own('visibilityState', 'hidden');
          own('hidden', true);
          document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    return other


def show(page: Any, other: Any) -> None:
    """Come back to the notebook's tab (undoes :func:`hide`)."""
    page.bring_to_front()
    page.evaluate(
        """() => {
          delete document.visibilityState;
          delete document.hidden;
          document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    other.close()
