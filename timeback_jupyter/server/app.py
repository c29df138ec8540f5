"""The jupyter_server extension: wires the core to Jupyter's kernels, sessions and contents."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import os
import sqlite3
import time
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.extension.application import ExtensionApp
from tornado import web

from .. import identity
from ..config import ConfigError, Credentials, Timeback
from ..core import build_core, take_credentials
from ..delivery import DeliveryError, Drainer
from ..store import Store, StoreError
from ..tracker import CompletionResult, Tracker, TrackerError
from .bridge import KernelTokens
from .handlers import routes
from .kernels import KERNEL_ACTIONS_SCHEMA, KernelWatcher
from .notebooks import (
    NotebookMetadataError,
    activity_from_metadata,
    read_timeback_metadata,
    write_timeback_metadata,
)
from .pacing import in_slices

CONTENTS_SCHEMA = "https://events.jupyter.org/jupyter_server/contents_service/v1"
# Store calls run on Jupyter's event loop: a lock held elsewhere must cost it a moment, not
# SQLite's usual 5 s per write (our own writes take milliseconds, so this is ample).
STORE_BUSY_TIMEOUT = 0.25
# notebooks remembered as looked after by a browser (a server sees far fewer; see _browser_saw)
MAX_BROWSER_PATHS = 10_000
# What building, checking and sending events imports: the official SDK, its pydantic models and
# httpx. The modules above import them on first use so that Jupyter starts without them (they
# would cost more than the rest of the extension); the first heartbeat would then import them
# on the event loop, stalling every kernel for a quarter of a second. _warm_imports loads them
# in a thread once the server has started.
EVENT_IMPORTS = (
    "pydantic",
    "httpx",
    "timeback_common",
    "timeback_caliper",
    "timeback_caliper.exceptions",
    "timeback_caliper.lib.transport",
)
# What httpx itself imports only when its first client is made: the Timeback sink's first send
# or the student lookup would pay for it on the loop. Unused by the local sink.
NETWORK_IMPORTS = ("httpcore", "h11", "anyio._backends._asyncio", "anyio.streams.tls", "certifi")


def _warm_imports(network: bool) -> None:
    for name in EVENT_IMPORTS + (NETWORK_IMPORTS if network else ()):
        importlib.import_module(name)


class TimebackApp(ExtensionApp):
    """timeback-jupyter's server extension (configure it with ``c.Timeback.*``)."""

    name = "timeback"
    load_other_extensions = True

    def initialize_settings(self) -> None:
        self.timeback = Timeback(parent=self)
        self.problem = ""
        self.last_error = ""
        self.store_error = ""  # the store failing at run time (locked, full...), until it works
        self.credentials: Credentials | None = None
        self.store: Store | None = None
        self.tracker: Tracker = None  # type: ignore[assignment]
        self.drainer: Drainer | None = None
        self._resolver: identity.ActorResolver | None = None
        self.store_error_types: tuple[type[BaseException], ...] = (StoreError, sqlite3.Error)
        self._tasks: list[asyncio.Task[Any]] = []
        self._pending: set[asyncio.Future[Any]] = set()
        self._kernel_paths: dict[str, str] = {}
        # notebooks a browser tab looks after, most recent last (see _browser_saw)
        self._browser_paths: dict[str, None] = {}
        # open presence sockets: told when a notebook they reported changes (_notebook_changed)
        self.presence_sockets: set[Any] = set()
        self._checked: dict[str, str] = {}  # notebook path -> last_modified seen without one
        self.tokens = KernelTokens(self.serverapp.runtime_dir, "")
        self.watcher = KernelWatcher(
            self.serverapp.kernel_manager, self._on_kernel_signal, log=self.log
        )
        try:
            self._build_core()
        except (StoreError, ConfigError, identity.IdentityError) as err:
            self.problem = str(err)
            self.log.error("timeback: not recording: %s", err)

    def _build_core(self) -> None:
        cfg = self.timeback
        # Read once, then taken out of the environment kernels and terminals inherit.
        self.credentials = take_credentials(os.environ, scrub=True)
        try:
            core = build_core(
                cfg,
                environ=os.environ,
                credentials=self.credentials,
                search=(self.serverapp.root_dir, os.getcwd()),
                open_store=lambda: Store(cfg.store_path, busy_timeout=STORE_BUSY_TIMEOUT),
            )
        except DeliveryError as err:  # the timeback sink without credentials, bad knobs
            raise ConfigError(str(err)) from None
        self._core = core
        self.store, self.drainer = core.store, core.drainer
        self._student, self._app_config = core.student, core.app_config
        if core.actor is not None:
            self._make_tracker(core.actor)
        else:
            # Timeback needs the student's OneRoster id: found by email once the loop runs.
            self.problem = "looking up the student's Timeback user by email"
            self._resolver = core.resolver

    def _make_tracker(self, actor: Any) -> None:
        self.tracker = self._core.tracker(actor, notebook_changed=self._notebook_changed)

    async def _resolve_actor(self) -> None:
        delay = 5.0
        while True:
            try:
                actor = await self._resolver.resolve(self._student)
            except identity.IdentityLookupError as err:
                if not err.retryable:
                    self.problem = str(err)
                    return
                self.problem = f"{err} (retrying in {delay:.0f} s)"
            except identity.IdentityError as err:
                self.problem = str(err)
                return
            else:
                self._make_tracker(actor)
                self.problem = ""
                self.log.info("timeback: recording for %s", actor.id)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 600.0)

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes())

    # ---- lifecycle -------------------------------------------------------------------------

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        self.tokens.url = serverapp.connection_url
        logger = serverapp.event_logger
        logger.add_listener(schema_id=KERNEL_ACTIONS_SCHEMA, listener=self._on_kernel_action)
        logger.add_listener(schema_id=CONTENTS_SCHEMA, listener=self._on_contents_event)
        for kernel_id in serverapp.kernel_manager.list_kernel_ids():
            self._kernel_started(kernel_id)
        if self.drainer is None:
            return  # misconfigured: status says why, Jupyter works as usual
        loop = asyncio.get_running_loop()
        self._background(loop.run_in_executor(None, _warm_imports, self.timeback.sink != "local"))
        await self.drainer.recover()
        self._tasks = [
            asyncio.create_task(self.drainer.run(), name="timeback-drainer"),
            asyncio.create_task(self._tick_loop(), name="timeback-ticker"),
        ]
        if self._resolver is not None:
            self._tasks.append(asyncio.create_task(self._resolve_actor(), name="timeback-actor"))

    async def stop_extension(self) -> None:
        """Flush open windows into the outbox, give delivery a moment, close the store."""
        if self.tracker is not None and self.store is not None:
            with contextlib.suppress(Exception):
                self.tracker.end_all()
        for task in self._tasks:
            if task.get_name() == "timeback-ticker":
                task.cancel()
        if self.drainer is not None:
            with contextlib.suppress(Exception):
                await self.drainer.flush(timeout=2.0)
            with contextlib.suppress(Exception):
                await self.drainer.stop()
        for task in [*self._tasks, *self._pending]:
            task.cancel()
        self.watcher.detach_all()
        for kernel_id in list(self._kernel_paths) + self.serverapp.kernel_manager.list_kernel_ids():
            self.tokens.withdraw(kernel_id)
        if self._resolver is not None:
            with contextlib.suppress(Exception):
                await self._resolver.aclose()
        if self.store is not None:
            self.store.close()

    async def _tick_loop(self) -> None:
        # Windows close on exact boundaries whenever we tick, so a few ticks per window would
        # suffice; ticking every second spreads many notebooks' windows into small batches
        # rather than one burst that holds the event loop (and every request) for long.
        period = min(1.0, max(0.2, self.timeback.heartbeat_interval / 3))
        reconcile_every = max(period, self.timeback.heartbeat_interval / 3)
        reconciled = 0.0
        failures = 0
        while True:
            # While the store fails, try less often: each try may wait out a lock on the loop.
            await asyncio.sleep(period * min(2**failures, 8))
            if self.tracker is None:
                continue
            kept = self.tracker.unrecorded  # windows a failing store could not take yet
            try:
                windows = self.tracker.tick(record=False)
                if self.tracker.unrecorded:
                    # a few windows per slice share a commit and stay within its budget
                    await in_slices(lambda: self.tracker.record_pending(limit=4))
                if time.monotonic() - reconciled >= reconcile_every:
                    reconciled = time.monotonic()
                    await self._reconcile_sessions()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a failing store must not stop the loop or Jupyter
                if isinstance(err, self.store_error_types):
                    self.store_error = str(err)
                    failures += 1
                self.problem_once(f"tick failed: {err}")
            else:
                if windows or kept:  # windows were written: the store works again
                    self.store_error = ""
                    failures = 0

    def problem_once(self, message: str) -> None:
        # Logged once per distinct message: a broken disk must not flood the server log.
        if message != self.last_error:
            self.log.error("timeback: %s", message)
        self.last_error = message

    # ---- kernels and sessions --------------------------------------------------------------

    def _kernel_started(self, kernel_id: str) -> None:
        self.watcher.attach(kernel_id)
        self.tokens.publish(kernel_id)

    async def _on_kernel_action(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        kernel_id = data.get("kernel_id")
        if not kernel_id or data.get("status") != "success":
            return
        action = data.get("action")
        if action in ("start", "restart"):
            self._kernel_started(kernel_id)
        elif action == "shutdown":
            self.watcher.detach(kernel_id)
            self.tokens.withdraw(kernel_id)
            path = self._kernel_paths.pop(kernel_id, None)
            run_id = self.tracker.run_at(path) if (path and self.tracker) else None
            if run_id is not None:
                with contextlib.suppress(TrackerError, *self.store_error_types):
                    self.tracker.end(run_id)
            if path and self.tracker is not None:
                self.tracker.reopen(path)

    async def _on_contents_event(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        if data.get("action") != "rename" or self.tracker is None:
            return
        old, new = data.get("source_path"), data.get("path")
        if isinstance(old, str) and isinstance(new, str):
            self.tracker.rename(old, new)
            for socket in self.presence_sockets:
                socket.renamed(old, new)
            for kernel_id, path in list(self._kernel_paths.items()):
                if path == old:
                    self._kernel_paths[kernel_id] = new

    async def path_of_kernel(self, kernel_id: str) -> str | None:
        """The notebook a kernel serves, asked of the session manager at event time."""
        try:
            session = await self.serverapp.session_manager.get_session(kernel_id=kernel_id)
        except (web.HTTPError, KeyError, TypeError):
            return self._kernel_paths.get(kernel_id)
        path = session.get("path") if session else None
        if not path or session.get("type") not in (None, "notebook"):
            return None
        old = self._kernel_paths.get(kernel_id)
        if old is not None and old != path and self.tracker is not None:
            self.tracker.rename(old, path)
        self._kernel_paths[kernel_id] = path
        return path

    def _on_kernel_signal(self, kernel_id: str, kind: str, at: float) -> None:
        if self.problem or self.tracker is None:
            return
        # Two signals per cell: a known kernel's run is signalled here and now; only a kernel
        # or notebook not seen yet needs a task (a session lookup, maybe starting its run).
        path = self._kernel_paths.get(kernel_id)
        run_id = self.tracker.run_at(path) if path is not None else None
        if run_id is not None:
            try:
                self.tracker.signal(run_id, kind, at)
            except Exception as err:  # never into the kernel's stream: log as a task would
                self.log.warning("timeback: %s", err)
            return
        self._background(self._dispatch(kernel_id, kind, at))

    def _background(self, coro: Any) -> None:
        """Run ``coro`` as a task we keep (so shutdown can cancel it) and whose failure we log."""
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Future[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.warning("timeback: %s", task.exception())

    async def _dispatch(self, kernel_id: str, kind: str, at: float) -> None:
        # Kernel traffic is hot: use the binding kept fresh by rename events and the reconcile
        # loop, and ask the session manager only for a kernel not seen yet.
        path = self._kernel_paths.get(kernel_id) or await self.path_of_kernel(kernel_id)
        if path is None:
            return  # a kernel with no notebook (console, API client)
        run_id = self.tracker.run_at(path)
        if run_id is None:
            started = await self.ensure_run(path)
            run_id = started and self.tracker.run_at(path)
        if run_id:
            self.tracker.signal(run_id, kind, at)

    async def _reconcile_sessions(self) -> None:
        self.watcher.refresh()
        sessions = await self.serverapp.session_manager.list_sessions()
        for session in sessions:
            kernel = session.get("kernel") or {}
            path = session.get("path")
            if not path or session.get("type") != "notebook" or not kernel.get("id"):
                continue
            old = self._kernel_paths.get(kernel["id"])
            if old is not None and old != path:
                self.tracker.rename(old, path)
            self._kernel_paths[kernel["id"]] = path
            if self.tracker.run_at(path) is None:
                await self.ensure_run(path)

    async def ensure_run(self, path: str) -> bool:
        """Start the run of a notebook that declares an activity; False if it declares none."""
        if self.tracker.closed_at(path):
            return False  # ended or completed while open: only an explicit start restarts it
        # A notebook found without an activity is read again only once it has changed.
        try:
            model = await ensure_async(
                self.serverapp.contents_manager.get(path, content=False, type="notebook")
            )
            mtime = str(model.get("last_modified") or "")
        except Exception:
            mtime = ""
        if mtime and self._checked.get(path) == mtime:
            return False
        try:
            result = await self.start_notebook(path)
        except (TrackerError, NotebookMetadataError) as err:
            self.log.warning("timeback: %s: %s", path, err)
            result = None
        if result is None:
            self._checked[path] = mtime
            return False
        return True

    # ---- operations used by the handlers ----------------------------------------------------

    async def start_notebook(
        self, path: str, *, activity: Any = None, browser: bool = False, new_attempt: bool = False
    ) -> dict[str, Any] | None:
        cm = self.serverapp.contents_manager
        section: dict[str, Any] | None = None
        try:
            section = await read_timeback_metadata(cm, path)
        except NotebookMetadataError as err:
            if activity is None:
                raise TrackerError(str(err), 400) from None
            self.log.warning("timeback: %s (a new run starts)", err)
        if activity is None:
            if section is None or section.get("activity") is None:
                return None
            try:
                activity = activity_from_metadata(section, path)
            except NotebookMetadataError as err:
                raise TrackerError(str(err), 400) from None
        if browser:
            self._browser_saw(path)
        closed = self.tracker.closed_at(path)
        if closed is not None and not new_attempt:
            run = self.tracker.get(closed)
            if run.status == "completed" and run.activity.id == activity.id:
                # Starting again (a re-run cell, a reload) must not make a second completion.
                return {
                    "run": self.tracker.describe(run),
                    "metadata": self.tracker.metadata_for(run, path),
                    "resumed": False,
                    "note": "this notebook's run is completed; ask for a new attempt to start one",
                }
        result = self.tracker.start(
            activity, path=path, metadata_run=(section or {}).get("run"), now=time.time()
        )
        metadata = self.tracker.metadata_for(result.run, path)
        if not browser and (section or {}).get("run") != metadata["run"]:
            self._background(self._write_metadata_later(path, result.run.id))
        return {
            "run": self.tracker.describe(result.run),
            "metadata": metadata,
            "resumed": result.resumed,
            "note": result.note,
        }

    def _notebook_changed(self, path: str) -> None:
        """A notebook's run started, ended, completed or changed its exercises, maybe from the
        kernel: tabs showing it hear at once, since one not in front does not report."""
        for socket in self.presence_sockets:
            socket.refresh(path)

    def _browser_saw(self, path: str) -> None:
        # Any logged-in client may report any path: keep the most recent ones, not all.
        self._browser_paths.pop(path, None)
        self._browser_paths[path] = None
        if len(self._browser_paths) > MAX_BROWSER_PATHS:
            del self._browser_paths[next(iter(self._browser_paths))]

    async def _write_metadata_later(self, path: str, run_id: str) -> None:
        """Write the run into the file unless a browser extension does it meanwhile."""
        await asyncio.sleep(self.timeback.metadata_write_delay)
        # A run ended or completed meanwhile is still the notebook's: a stateful one must be
        # found in the file to resume, a completed one must not be resumed.
        if path in self._browser_paths or self.tracker.run_at(path) not in (run_id, None):
            return
        run = self.tracker.get(run_id)
        if await write_timeback_metadata(
            self.serverapp.contents_manager, path, self.tracker.metadata_for(run, path)
        ):
            self.log.info("timeback: wrote run %s into %s", run_id, path)

    async def presence(
        self,
        path: str,
        source: str,
        *,
        visible: bool,
        focused: bool,
        idle_seconds: float | None,
        leaving: bool,
    ) -> dict[str, Any] | None:
        self._browser_saw(path)
        run_id = self.tracker.run_at(path)
        if run_id is None:
            return None
        if leaving:
            self.tracker.leave(run_id, source)
        else:
            self.tracker.presence(
                run_id, source, visible=visible, focused=focused, idle_seconds=idle_seconds
            )
        run = self.tracker.get(run_id)
        return {**self.tracker.describe(run), "metadata": self.tracker.metadata_for(run, path)}

    async def flush(self, timeout: float) -> dict[str, Any]:
        if self.drainer is None:
            raise TrackerError("delivery is not running", 503)
        if self.tracker is not None:
            self.tracker.tick()
        report = await self.drainer.flush(timeout=timeout)
        return {"report": dataclasses.asdict(report), "delivery": self.drainer.status()}

    def completion_answer(self, result: CompletionResult) -> dict[str, Any]:
        return {
            "run": self.tracker.describe(result.run),
            "already_completed": result.already_completed,
            "xp_earned": result.xp_earned,
            "xp_capped": result.xp_capped,
            "metrics": result.metrics,
            "event_id": result.event.get("id"),
        }

    def status(self, public: bool = False, today_start: float | None = None) -> dict[str, Any]:
        cfg = self.timeback
        credentials = self.credentials
        failing = self.problem or self.store_error
        out: dict[str, Any] = {
            "recording": not failing,
            "problem": failing or None,
            "store": {"error": self.store_error or None},
            "sink": cfg.sink,
            "environment": cfg.environment,
            "heartbeat_interval": cfg.heartbeat_interval,
            "credentials": credentials.masked if credentials else None,
        }
        if self.tracker is not None:
            out["identity"] = {
                "student": self.tracker.student.key,
                "email": self.tracker.student.email,
                "actor": self.tracker.actor.id,
            }
            out["app"] = {
                "name": self.tracker.app_config.name,
                "config_file": self.tracker.app_config.path,
            }
            out["live_runs"] = len(self.tracker.live_runs())
        if today_start is not None and self.tracker is not None:
            try:
                out["today"] = self.tracker.today(today_start)
            except self.store_error_types as err:
                out["today"] = {"error": str(err)}
        if self.store is not None:
            try:
                out["outbox"] = self.store.stats()
            except self.store_error_types as err:
                out["outbox"] = {"error": str(err)}
        if self.drainer is not None:
            out["delivery"] = self.drainer.status()
        if not public:
            out["store_path"] = cfg.store_path
        return out
