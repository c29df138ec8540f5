"""Run an activity notebook top to bottom through a Jupyter server, as a student would.

The notebook is opened as the browser opens it (a session over the REST API, so the server
starts its run from the notebook's declared activity), its code cells run in order in the
kernel the server started, and its "Mark complete" buttons are clicked when they are enabled.
Then the session is closed, the outbox flushed to the stand-in Timeback, and what it accepted
for the run is returned (:class:`~.record.NotebookRecord`).

The author's files are never changed: the notebook's folder is copied into the server's root
first, at the path it has in the author's project (the folder of timeback.config.json), since
``jupyter.activities`` entries name notebooks by that path.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import nbformat

from ..kernel.results import RunView
from ..server.errors import ServiceError
from .kernel import KernelDriver
from .record import Cell, NotebookRecord
from .standin import StandIn

# jp_fetch: (*url parts, method=..., body=...) -> a tornado HTTPResponse
Fetch = Callable[..., Awaitable[Any]]

_NOT_COPIED = frozenset({"__pycache__", "node_modules", "venv"})


class NotebookRunner:
    """``await runner("quiz.ipynb")``: the notebook run, and what Timeback received."""

    def __init__(
        self,
        serverapp: Any,
        fetch: Fetch,
        root: Path,
        standin: StandIn,
        *,
        project: Path | None,
        base: Path,
    ) -> None:
        self.serverapp = serverapp
        self.fetch = fetch
        self.root = root
        self.standin = standin
        self.project = project.resolve() if project is not None else None
        self.base = base  # relative notebook paths are relative to this (the test's folder)
        self._copied: set[Path] = set()
        self._started = False

    async def __call__(
        self,
        notebook: str | os.PathLike[str],
        *,
        click: bool = True,
        allow_errors: bool = False,
        cell_timeout: float = 60.0,
    ) -> NotebookRecord:
        """Run ``notebook`` (a path; relative: to the test file's folder).

        ``click``: click each enabled "Mark complete" button after the last cell, as the
        student would. ``allow_errors``: run on past a cell that raises (else the run stops
        there and the error is raised, with the cell and its traceback).
        """
        __tracebackhide__ = True  # pytest shows the author's test, not this helper
        path = self._place(Path(notebook))
        await self._ready()
        source = nbformat.read(self.root / path, as_version=4)
        session = await self._json("api", "sessions", method="POST", body={
            "path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"},
        })  # fmt: skip
        kernel = self.serverapp.kernel_manager.get_kernel(session["kernel"]["id"])
        cells: list[Cell] = []
        run_id = self._run_id(path, None)
        driver = await asyncio.get_running_loop().run_in_executor(
            None, KernelDriver, kernel.get_connection_info()
        )
        try:
            for index, cell in enumerate(source.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                ran = await driver.execute(cell.source, cell_timeout)
                cells.append(
                    Cell(index, cell.source, ran.stdout, ran.stderr, ran.error, ran.traceback)
                )
                run_id = self._run_id(path, run_id)
                if ran.error is not None and not allow_errors:
                    break
            failed = not allow_errors and any(c.error is not None for c in cells)
            if click and not failed:
                for widget in driver.completion_widgets():
                    if not widget.disabled:
                        await driver.click(widget.button_id, cell_timeout)
                run_id = self._run_id(path, run_id)
            widgets = tuple(driver.completion_widgets())
        finally:
            await driver.stop()
            await self.fetch("api", "sessions", session["id"], method="DELETE")
        run = await self._settled(run_id) if run_id is not None else None
        await self._flush()
        events = tuple(
            e for e in self.standin.received if (e.get("extensions") or {}).get("runId") == run_id
        )
        record = NotebookRecord(path, tuple(cells), run, events, widgets)
        if record.error is not None and not allow_errors:
            cell = record.error
            raise AssertionError(
                f"{path}: cell {cell.index} raised {cell.error}\n{cell.traceback.strip()}"
            )
        return record

    # ---- the server ----------------------------------------------------------------------

    async def _json(self, *parts: str, method: str = "GET", body: Any = None) -> Any:
        data = None if body is None else json.dumps(body)
        response = await self.fetch(*parts, method=method, body=data)
        return json.loads(response.body.decode())

    async def _ready(self) -> None:
        """The extension recording: pytest-jupyter starts the app but not its start hooks."""
        if self._started:
            return
        self._started = True
        await self.serverapp._post_start()
        status = await self._json("timeback", "api", "status")
        if status.get("problem") or "identity" not in status:
            raise RuntimeError(f"the timeback extension is not recording: {status['problem']}")

    def _run_id(self, path: str, known: str | None) -> str | None:
        # the extension's own service, as its kernel routes ask it (no REST route maps a path)
        service = self.serverapp.web_app.settings["timeback"].service
        try:
            return cast(str, service.run_of(path))
        except ServiceError:
            return known

    async def _settled(self, run_id: str) -> RunView:
        """The run once closing the notebook has ended it (a completed run already is)."""
        deadline = time.monotonic() + 20
        while True:
            run = cast(RunView, (await self._json("timeback", "api", "runs", run_id))["run"])
            if not run["live"] or time.monotonic() > deadline:
                return run
            await asyncio.sleep(0.05)

    async def _flush(self) -> None:
        answer = await self._json("timeback", "api", "flush", method="POST", body={"timeout": 30})
        report = answer["report"]
        if report.get("error") or report.get("remaining"):
            # The stand-in refuses what the official models refuse: the message says what.
            raise AssertionError(
                f"Timeback (the stand-in) did not accept the events: {report.get('error')} "
                f"({report.get('remaining')} not delivered)"
            )

    # ---- the files -----------------------------------------------------------------------

    def _place(self, notebook: Path) -> str:
        """Copy the notebook's folder into the server's root; the notebook's path there."""
        source = (notebook if notebook.is_absolute() else self.base / notebook).resolve()
        if source.suffix != ".ipynb" or not source.is_file():
            raise FileNotFoundError(f"{source}: no such notebook")
        if self.project is not None and source.is_relative_to(self.project):
            relative = source.relative_to(self.project)
        else:
            relative = Path(source.name)
        if source.parent not in self._copied:
            root = self.root.resolve()

            def skip(folder: str, names: list[str]) -> set[str]:
                return {
                    name
                    for name in names
                    if name.startswith(".")
                    or name in _NOT_COPIED
                    or (Path(folder) / name).resolve() == root
                }

            target = self.root / relative.parent
            shutil.copytree(source.parent, target, ignore=skip, dirs_exist_ok=True)
            self._copied.add(source.parent)
        return relative.as_posix()
