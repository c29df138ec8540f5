"""The jupyter_server extension: builds the service and wires it to Jupyter's kernels,
sessions, contents and event loop. What it does lives in :mod:`.service` (operations),
:mod:`.binding` (kernels and notebooks), :mod:`.loops` (the tick and the catch-up with
sessions) and :mod:`.routes` (the API).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp

from .. import identity
from ..config import ConfigError, Credentials, Timeback
from ..core import Core, build_core, take_credentials
from ..delivery import DeliveryError, Drainer
from ..store import Store, StoreError
from ..store.owner import StoreOwner, network_filesystem, network_warning
from ..tracker import Tracker
from .binding import KernelBinding
from .bridge import KernelTokens
from .kernels import KERNEL_ACTIONS_SCHEMA
from .loops import Reconciler, Ticker, store_failed
from .notebooks import ContentsNotebooks
from .presence_socket import PresenceSockets
from .routes import routes
from .service import TimebackService
from .sigint import GracefulSigint
from .tasks import TaskSet

CONTENTS_SCHEMA = "https://events.jupyter.org/jupyter_server/contents_service/v1"
# Store calls run on Jupyter's event loop: a lock held elsewhere must cost it a moment, not
# SQLite's usual 5 s per write (our own writes take milliseconds, so this is ample).
STORE_BUSY_TIMEOUT = 0.25
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
# Seconds between two looks at an empty outbox when nothing said it changed (a fallback).
DRAIN_QUIET = 60.0
# Seconds between a second server's tries to become the store's owner (see _take_over).
OWNER_RETRY = 5.0


def _warm_imports(network: bool) -> None:
    for name in EVENT_IMPORTS + (NETWORK_IMPORTS if network else ()):
        importlib.import_module(name)


class TimebackApp(ExtensionApp):
    """timeback-jupyter's server extension (configure it with ``c.Timeback.*``)."""

    name = "timeback"
    load_other_extensions = True

    def initialize_settings(self) -> None:
        self.timeback = Timeback(parent=self)
        self.last_error = ""
        self.tasks = TaskSet(self.log)
        self._loops: list[asyncio.Task[Any]] = []
        # open presence sockets: told when a notebook they reported changes or is renamed
        self.presence_sockets = PresenceSockets()
        notebooks = ContentsNotebooks(self.serverapp.contents_manager)
        self.service = TimebackService(
            self.timeback,
            notebooks,
            log=self.log,
            tasks=self.tasks,
            on_changed=self.presence_sockets.refresh,
            on_renamed=self.presence_sockets.renamed,
        )
        self.tokens = KernelTokens(self.serverapp.runtime_dir, "")
        self.binding = KernelBinding(
            self.service,
            kernel_manager=self.serverapp.kernel_manager,
            session_manager=self.serverapp.session_manager,
            notebooks=notebooks,
            tokens=self.tokens,
            tasks=self.tasks,
            log=self.log,
        )
        self.ticker = Ticker(self.service, self.problem_once)
        self.reconciler: Reconciler | None = None
        self._core: Core | None = None
        self.owner = StoreOwner(self.timeback.store_path)
        self.waiting_for_owner = False  # another process owns the store (see _take_over)
        try:
            self._build_core()
        except (StoreError, ConfigError, identity.IdentityError) as err:
            self.owner.release()
            self.service.problem = str(err)
            self.log.error("timeback: not recording: %s", err)

    # The core (tracker, store, delivery, credentials) and why nothing records belong to the
    # service; read here for callers that hold the extension (tests, the pytest plugin).

    @property
    def tracker(self) -> Tracker:
        return self.service.tracker  # type: ignore[return-value]

    @property
    def store(self) -> Store | None:
        return self.service.store

    @property
    def drainer(self) -> Drainer | None:
        return self.service.drainer

    @property
    def credentials(self) -> Credentials | None:
        return self.service.credentials

    @property
    def problem(self) -> str:
        return self.service.problem

    @property
    def store_warning(self) -> str:
        return self.service.store_warning

    def _build_core(self) -> None:
        cfg = self.timeback
        service = self.service
        # Read once, then taken out of the environment kernels and terminals inherit.
        service.credentials = take_credentials(os.environ, scrub=True, settings=cfg)
        fstype = network_filesystem(cfg.store_path)
        if fstype is not None:
            service.store_warning = network_warning(cfg.store_path, fstype)
            self.log.warning("timeback: %s", service.store_warning)
        # One store, one owner: a second server records nothing (see store/owner.py), Jupyter
        # works as usual and the status says why; it takes over when the owner stops.
        try:
            owned = self.owner.acquire()
        except StoreError as err:  # a read-only disk: opening the store says what is wrong
            self.log.warning("timeback: %s: a second server could not be told apart", err)
            owned = True
        if not owned:
            self.waiting_for_owner = True
            service.problem = self.owner.refusal()
            self.log.error("timeback: not recording: %s", service.problem)
            return
        self._open_core()

    def _open_core(self) -> None:
        cfg = self.timeback
        service = self.service
        try:
            core = build_core(
                cfg,
                environ=os.environ,
                credentials=service.credentials,
                search=(self.serverapp.root_dir, os.getcwd()),
                open_store=lambda: Store(cfg.store_path, busy_timeout=STORE_BUSY_TIMEOUT),
            )
        except DeliveryError as err:  # the timeback sink without credentials, bad knobs
            raise ConfigError(str(err)) from None
        self._core = core
        # Only this process records into its store (it owns it), and the tracker notifies
        # the drainer of each write: an empty outbox needs no look every drain_interval.
        core.drainer.quiet_interval = DRAIN_QUIET
        service.store, service.drainer = core.store, core.drainer
        if core.actor is not None:
            self._make_tracker(core.actor)
        else:
            # Timeback needs the student's OneRoster id: found by email once the loop runs.
            service.problem = "looking up the student's Timeback user by email"

    def _make_tracker(self, actor: Any) -> None:
        assert self._core is not None
        self.service.tracker = self._core.tracker(
            actor, notebook_changed=self.service.notebook_changed
        )
        self.ticker.wake()

    async def _resolve_actor(self, resolver: identity.ActorResolver) -> None:
        assert self._core is not None and self._core.student is not None
        delay = 5.0
        while True:
            try:
                actor = await resolver.resolve(self._core.student)
            except identity.IdentityLookupError as err:
                if not err.retryable:
                    self.service.problem = str(err)
                    return
                self.service.problem = f"{err} (retrying in {delay:.0f} s)"
            except identity.IdentityError as err:
                self.service.problem = str(err)
                return
            else:
                self._make_tracker(actor)
                self.service.problem = ""
                self.log.info("timeback: recording for %s", actor.id)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 600.0)

    @property
    def _resolver(self) -> identity.ActorResolver | None:
        return self._core.resolver if self._core is not None else None

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes())

    # ---- lifecycle -------------------------------------------------------------------------

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        self.tokens.url = serverapp.connection_url
        # a hub stops servers with SIGINT: let it run stop_extension below (see sigint.py)
        self.sigint = GracefulSigint(serverapp, self.log)
        self.sigint.install()
        logger = serverapp.event_logger
        logger.add_listener(schema_id=KERNEL_ACTIONS_SCHEMA, listener=self.binding.on_kernel_action)
        logger.add_listener(schema_id=CONTENTS_SCHEMA, listener=self.binding.on_contents_event)
        for kernel_id in serverapp.kernel_manager.list_kernel_ids():
            self.binding.kernel_started(kernel_id)
        if self.owner.held:
            self.owner.describe(serverapp.connection_url)
        elif self.waiting_for_owner:
            take_over = self._take_over(serverapp.connection_url)
            self._loops.append(asyncio.create_task(take_over, name="timeback-owner"))
        await self._start_recording()

    async def _take_over(self, url: str) -> None:
        """A second server on a store: become its owner once the first one stops."""
        while not self.owner.held:
            await asyncio.sleep(OWNER_RETRY)
            try:
                if not self.owner.acquire(url):
                    self.service.problem = self.owner.refusal()  # the owner may have changed
                    continue
                self.waiting_for_owner = False
                self.service.problem = ""
                self._open_core()
            except (StoreError, ConfigError, identity.IdentityError) as err:
                self.owner.release()
                self.service.problem = str(err)
                self.log.error("timeback: not recording: %s", err)
                return
        self.log.info("timeback: the store's owner stopped: this server records now")
        await self._start_recording()

    async def _start_recording(self) -> None:
        if self.drainer is None:
            return  # misconfigured or not the store's owner: status says why
        loop = asyncio.get_running_loop()
        self.tasks.spawn(loop.run_in_executor(None, _warm_imports, self.timeback.sink != "local"))
        await self.drainer.recover()
        self.reconciler = Reconciler(
            self.binding.reconcile,
            self.problem_once,
            on_error=lambda err: store_failed(self.service, err),
        )
        self.binding.sessions_changed = self.reconciler.request
        self.binding.watch_sessions()
        self._loops += [
            asyncio.create_task(self.drainer.run(), name="timeback-drainer"),
            asyncio.create_task(self.ticker.run(), name="timeback-ticker"),
            asyncio.create_task(self.reconciler.run(), name="timeback-reconciler"),
        ]
        watch = getattr(self.drainer.sink, "watch", None)
        if watch is not None:  # the relay sink: its health on the status before any event
            self._loops.append(asyncio.create_task(watch(), name="timeback-relay-watch"))
        resolver = self._resolver
        if resolver is not None:
            actor = self._resolve_actor(resolver)
            self._loops.append(asyncio.create_task(actor, name="timeback-actor"))

    async def stop_extension(self) -> None:
        """Flush open windows into the outbox, give delivery a moment, close the store."""
        with contextlib.suppress(Exception):
            self.service.end_all()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.service.write_pending(), timeout=5.0)
        for task in self._loops:
            if task.get_name() == "timeback-ticker":
                task.cancel()
        if self.drainer is not None:
            with contextlib.suppress(Exception):
                await self.drainer.flush(timeout=2.0)
            with contextlib.suppress(Exception):
                await self.drainer.stop()
        for task in self._loops:
            task.cancel()
        if self.reconciler is not None:
            self.reconciler.cancel()
        await self.tasks.aclose()
        self.binding.detach_all(self.serverapp.kernel_manager.list_kernel_ids())
        if self._resolver is not None:
            with contextlib.suppress(Exception):
                await self._resolver.aclose()
        if self.store is not None:
            self.store.close()
        self.owner.release()  # after the last write: the next owner starts from all of it
        sigint = getattr(self, "sigint", None)
        if sigint is not None:
            sigint.restore()

    def problem_once(self, message: str) -> None:
        # Logged once per distinct message: a broken disk must not flood the server log.
        if message != self.last_error:
            self.log.error("timeback: %s", message)
        self.last_error = message
