"""Which notebook each kernel serves, kept fresh from Jupyter's events and sessions, and what
kernel traffic means for that notebook's run (it starts the run of a notebook that declares an
activity, ends "cell running" when the kernel is interrupted, restarted or dies, and ends the
run when the kernel shuts down)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from tornado import web

from .bridge import KernelTokens
from .errors import ServiceError, StoreFailure
from .held_signals import HeldSignals
from .kernels import KernelWatcher
from .notebooks import ContentsNotebooks
from .requests import normal_path
from .service import TimebackService
from .tasks import TaskSet

MAX_CHECKED = 10_000  # notebooks remembered as declaring no activity (as MAX_BROWSER_PATHS)
# A notebook found without an activity is looked at again on a kernel signal at most this
# often (seconds): each look is a task and a contents-manager read, and a cell sends two
# signals (a server's CPU per cell was 2 ms more than without the extension). Saved through
# Jupyter it is looked at on the next signal; changed behind its back, within this delay or
# at the next reconcile.
RECHECK_AFTER = 1.0


class KernelBinding:
    def __init__(
        self,
        service: TimebackService,
        *,
        kernel_manager: Any,
        session_manager: Any,
        notebooks: ContentsNotebooks,
        tokens: KernelTokens,
        tasks: TaskSet,
        log: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.service = service
        self._sessions = session_manager
        self._notebooks = notebooks
        # IOPub's signals are held and applied in order before the clock is read or changed
        # (held_signals): the stream's callback does no binding, tracker or clock work.
        self.held = HeldSignals(self.on_kernel_signal, apply_many=self.on_kernel_signals, log=log)
        service.catch_up = self.held.drain
        # A death is applied at once: kernel_reset applies what is held first.
        self.watcher = KernelWatcher(
            kernel_manager,
            self.held.push,
            hold=self.held,
            on_reset=self.on_kernel_signal,
            log=log,
        )
        self.tokens = tokens
        self._tasks = tasks
        self._log = log
        self.kernel_paths: dict[str, str] = {}  # kernel id -> notebook path
        # notebook path -> last_modified seen without an activity, the most recent last;
        # dropped when its kernel goes, and at most MAX_CHECKED (one more read if forgotten)
        self._checked: dict[str, str] = {}
        self._checked_at: dict[str, float] = {}  # notebook path -> when last found so (monotonic)
        # notebook path -> the start under way: a first cell's two signals and the reconcile
        # loop wait for the one start (one read, one write) instead of making their own
        self._starting: dict[str, asyncio.Task[bool]] = {}
        # Asks for a reconcile soon (optionally after a delay in seconds): the app's
        # Reconciler. Jupyter's sessions change without events of their own, so their
        # manager's methods tell us (watch_sessions), and so do kernels' lifecycles.
        self.sessions_changed: Callable[[float], None] = lambda delay: None
        self._unwatch: list[Callable[[], None]] = []

    # ---- kernels -------------------------------------------------------------------------------

    def kernel_started(self, kernel_id: str) -> None:
        self.watcher.attach(kernel_id)
        self.tokens.publish(kernel_id)

    async def on_kernel_action(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        """Jupyter's kernel_actions event: watch a (re)started kernel, let a stopped one go; an
        interrupted or restarted kernel runs no cell any more."""
        kernel_id = data.get("kernel_id")
        if not kernel_id or data.get("status") != "success":
            return
        action = data.get("action")
        if action in ("interrupt", "restart"):
            # A cell stuck where an interrupt cannot reach it keeps running, but the student has
            # asked for it to stop: it no longer stands in for them.
            self.kernel_reset(kernel_id, self.watcher.now())
        if action in ("start", "restart"):
            self.kernel_started(kernel_id)
        elif action == "shutdown":
            self._kernel_gone(kernel_id)
        if action in ("start", "restart", "shutdown"):
            self.sessions_changed(0.0)

    def _kernel_gone(self, kernel_id: str) -> None:
        """Shut down, or died and removed by Jupyter: forget it and close its notebook's run."""
        self.held.drain()  # its last cells count for the notebook it served
        self.watcher.detach(kernel_id)
        self.tokens.withdraw(kernel_id)
        path = self.kernel_paths.pop(kernel_id, None)
        if path:
            self._checked.pop(path, None)
            self._checked_at.pop(path, None)
            self.service.notebook_closed(path)

    async def on_contents_event(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        """Jupyter's contents event: a renamed notebook keeps its run and its kernel."""
        action = data.get("action")
        if action != "get":  # saved, replaced, renamed...: looked at again on the next signal
            for key in ("path", "source_path"):
                changed = data.get(key)
                if isinstance(changed, str) and (changed := normal_path(changed)) is not None:
                    self._checked_at.pop(changed, None)
        if action != "rename":
            return
        self.held.drain()  # signals held count for the paths they were made under
        old, new = data.get("source_path"), data.get("path")
        if isinstance(old, str) and isinstance(new, str):
            old, new = normal_path(old), normal_path(new)
            if old is None or new is None:
                return
            self._notebooks.forget(old)
            self.service.rename(old, new)
            for kernel_id, path in list(self.kernel_paths.items()):
                if path == old or path.startswith(old + "/"):  # the notebook, or its directory
                    self.kernel_paths[kernel_id] = new + path[len(old) :]

    def watch_sessions(self) -> None:
        """Hear of every session made, changed (a rename, another kernel) or deleted:
        jupyter_server emits no event for them, so each of its session manager's methods that
        changes one asks for a reconcile once it has returned (its row is saved by then)."""
        for name in ("create_session", "update_session", "delete_session"):
            original = getattr(self._sessions, name, None)
            if original is None or not asyncio.iscoroutinefunction(original):
                continue  # another session manager: the reconciler's fallback catches up

            @functools.wraps(original)
            async def told(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                try:
                    return await _original(*args, **kwargs)
                finally:
                    self.sessions_changed(0.0)

            setattr(self._sessions, name, told)
            self._unwatch.append(functools.partial(vars(self._sessions).pop, name, None))

    def detach_all(self, kernel_ids: list[str]) -> None:
        """The server stops: no more watching, and no kernel can reach us any more."""
        for unwatch in self._unwatch:
            unwatch()
        self._unwatch.clear()
        self.watcher.detach_all()
        self.held.close()
        for kernel_id in list(self.kernel_paths) + kernel_ids:
            self.tokens.withdraw(kernel_id)

    # ---- which notebook --------------------------------------------------------------------------

    def _bind(self, kernel_id: str, path: str) -> None:
        old = self.kernel_paths.get(kernel_id)
        if old != path:
            self.held.drain()  # signals held count for the notebook the kernel served then
        if old is not None and old != path:
            self.service.rename(old, path)
        self.kernel_paths[kernel_id] = path

    async def path_of_kernel(self, kernel_id: str) -> str | None:
        """The notebook a kernel serves, asked of the session manager at event time."""
        try:
            session = await self._sessions.get_session(kernel_id=kernel_id)
        except (web.HTTPError, KeyError, TypeError):
            return self.kernel_paths.get(kernel_id)
        path = normal_path(session.get("path") or "") if session else None
        if not path or session.get("type") not in (None, "notebook"):
            return None
        self._bind(kernel_id, path)
        return path

    async def reconcile(self) -> None:
        """Catch up with every notebook session: its kernel, a rename, a run to start."""
        for kernel_id in self.watcher.refresh():  # died, and removed with no shutdown event
            self._kernel_gone(kernel_id)
        for session in await self._sessions.list_sessions():
            kernel = session.get("kernel") or {}
            path = normal_path(session.get("path") or "")
            if not path or session.get("type") != "notebook" or not kernel.get("id"):
                continue
            self._bind(kernel["id"], path)
            if self.service.recording and self.service.open_run(path) is None:
                await self.ensure_run(path)

    # ---- kernel traffic ------------------------------------------------------------------------

    def kernel_reset(self, kernel_id: str, at: float) -> None:
        """The kernel restarted, died or was interrupted: its notebook's run has no cell running.
        A kernel never bound to a notebook has signalled no run, so there is nothing to end."""
        self.held.drain()  # the cells it ended come first
        path = self.kernel_paths.get(kernel_id)
        if path is not None and self.service.recording:
            self.service.signal(path, "kernel_reset", at)

    def on_kernel_signal(self, kernel_id: str, kind: str, at: float) -> None:
        """A cell ran or a widget was touched, or the kernel died (see :mod:`.kernels`): a
        signal applied, in order (from :attr:`held`, or at once by a caller with no IOPub)."""
        if kind == "kernel_reset":  # the kernel died: restarted (maybe on new ports) or gone
            self.kernel_reset(kernel_id, at)
            self.sessions_changed(1.0)  # once Jupyter has restarted it, or let it go
            return
        # Two signals per cell: a known kernel's run is signalled here and now; only a kernel
        # or notebook not seen yet needs a task (a session lookup, maybe starting its run).
        path = self.kernel_paths.get(kernel_id)
        if path is not None and self.service.signal(path, kind, at):
            return
        if not self.service.recording:
            return
        if path is not None:
            checked = self._checked_at.get(path)
            if checked is not None and time.monotonic() - checked < RECHECK_AFTER:
                return  # found without an activity a moment ago
        self._tasks.spawn(self._dispatch(kernel_id, kind, at))

    def on_kernel_signals(self, kernel_id: str, signals: list[tuple[float, str]]) -> None:
        """A kernel's consecutive signals ``(at, kind)``, in order (from :attr:`held`): a known
        kernel's run takes them in one call; otherwise each goes as :meth:`on_kernel_signal`."""
        path = self.kernel_paths.get(kernel_id)
        if path is None or not self.service.signals(path, signals):
            for at, kind in signals:
                self.on_kernel_signal(kernel_id, kind, at)
            return
        for _, kind in signals:
            if kind == "kernel_reset":  # as on_kernel_signal does after applying it
                self.sessions_changed(1.0)
                break

    async def _dispatch(self, kernel_id: str, kind: str, at: float) -> None:
        # Kernel traffic is hot: use the binding kept fresh by rename events and the reconcile
        # loop, and ask the session manager only for a kernel not seen yet.
        path = self.kernel_paths.get(kernel_id) or await self.path_of_kernel(kernel_id)
        if path is None:
            return  # a kernel with no notebook (console, API client)
        if not self.service.signal(path, kind, at) and await self.ensure_run(path):
            self.service.signal(path, kind, at)

    async def ensure_run(self, path: str) -> bool:
        """Start the run of a notebook that declares an activity; False if it declares none.
        Callers asking while a start of the notebook is under way share its answer."""
        starting = self._starting.get(path)
        if starting is None:
            starting = asyncio.ensure_future(self._ensure_run(path))
            self._starting[path] = starting
            starting.add_done_callback(lambda _: self._starting.pop(path, None))
        return await asyncio.shield(starting)

    async def _ensure_run(self, path: str) -> bool:
        if self.service.closed(path):
            return False  # ended or completed while open: only an explicit start restarts it
        # A notebook found without an activity is read again only once it has changed.
        mtime = await self._notebooks.last_modified(path)
        if mtime and self._checked.get(path) == mtime:
            self._checked_at[path] = time.monotonic()
            return False
        try:
            result = await self.service.start(path)
        except StoreFailure:
            raise  # the reconciler says so, once, and tries again later
        except ServiceError as err:
            self._log.warning("timeback: %s: %s", path, err)
            result = None
        if result is None:
            self._checked.pop(path, None)
            self._checked[path] = mtime
            self._checked_at[path] = time.monotonic()
            if len(self._checked) > MAX_CHECKED:
                oldest = next(iter(self._checked))
                del self._checked[oldest]
                self._checked_at.pop(oldest, None)
            return False
        self._checked_at.pop(path, None)
        return True
