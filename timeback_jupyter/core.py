"""The composition root: the core (store, sink, drainer, student, actor) assembled in one place.

The Jupyter server extension, ``jupyter timeback flush`` and a kernel recording without a
server all start here, so they read credentials, pick the sink, find the app config and name
the student the same way. Nothing here knows Jupyter's server or kernel: the callers pass in
what differs (where to search for ``timeback.config.json``, how to open the store, whether the
secrets must leave the environment).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass

from . import identity
from .caliper import Actor
from .config import AppConfig, Credentials, Timeback, load_app_config
from .config.common import RELAY_URL_ENV
from .connection import Connection
from .delivery import DeliveryError, Drainer, Sink, make_sink
from .store import Store
from .tracker import Tracker

# Read once by take_credentials(scrub=True), then removed from the environment that kernels
# and terminals inherit: a notebook must never be able to read them.
SECRET_ENV_VARS = ("TIMEBACK_API_CLIENT_SECRET", "TIMEBACK_CLIENT_SECRET", "CALIPER_CLIENT_SECRET")
LOG = logging.getLogger("timeback_jupyter.core")


class CoreError(ValueError):
    """A part of the core asked for was not built (see :func:`build_core`'s flags)."""


@dataclass
class Core:
    """Everything the recording and delivery of one store needs.

    ``app_config``, ``student`` and ``actor``/``resolver`` are None when built without
    ``identify``. ``actor`` is known at once for the local sink or a configured sourcedId;
    otherwise ``resolver`` finds it by email (a network call, for the caller's event loop).
    ``connection`` (None without credentials) holds the one OAuth token the sink and the
    resolver share.
    """

    settings: Timeback
    credentials: Credentials | None
    connection: Connection | None
    sink: Sink
    store: Store
    drainer: Drainer
    app_config: AppConfig | None = None
    student: identity.Student | None = None
    actor: Actor | None = None
    resolver: identity.ActorResolver | None = None

    @property
    def local(self) -> bool:
        """Events stay on this machine (the local sink)."""
        return self.settings.sink == "local"

    @property
    def oneroster_url(self) -> str:
        return self.settings.oneroster_url

    def tracker(
        self,
        actor: Actor | None = None,
        *,
        notebook_changed: Callable[[str], None] | None = None,
    ) -> Tracker:
        """The tracker recording for the student as ``actor`` (default: the one known now),
        waking the drainer when it enqueues events."""
        actor = actor or self.actor
        if self.app_config is None or self.student is None:
            raise CoreError("the tracker needs the core built with identify=True")
        if actor is None:
            raise CoreError("the student's actor is not known yet: resolve it first")
        return Tracker(
            store=self.store,
            settings=self.settings,
            app_config=self.app_config,
            student=self.student,
            actor=actor,
            notify=self.drainer.notify,
            notebook_changed=notebook_changed or _nobody_listens,
        )

    async def aclose(self) -> None:
        """Close the sink's and the resolver's HTTP clients, then the store."""
        try:
            await self.sink.aclose()
            if self.resolver is not None:
                await self.resolver.aclose()
        finally:
            self.store.close()


def _nobody_listens(path: str) -> None:
    """No face shows notebooks (the CLI, a kernel recording alone)."""


def app_config_for(settings: Timeback, search: tuple[str, ...] = ()) -> AppConfig:
    """timeback.config.json as ``settings`` name it (file, or found in ``search``), with
    their sensor and app-name overrides; the built-in default if there is none."""
    return load_app_config(
        settings.config_file or None,
        settings.environment,
        search=search,
        sensor_override=settings.sensor,
        name_override=settings.app_name,
    )


def hub_mode(settings: Timeback, environ: Mapping[str, str]) -> bool:
    """A server on JupyterHub whose events go through the relay (see the module's docstring)."""
    return bool(environ.get(RELAY_URL_ENV, "").strip()) or settings.sink == "relay"


def student_for(settings: Timeback, environ: Mapping[str, str]) -> identity.Student:
    """The student ``settings`` and ``environ`` name (with the local sink's fallback); in hub
    mode the hub user only."""
    if hub_mode(settings, environ):
        return identity.hub_student(settings, environ)
    return identity.resolve_student(settings, environ, local=settings.sink == "local")


def take_credentials(
    environ: MutableMapping[str, str], *, scrub: bool = False, settings: Timeback | None = None
) -> Credentials | None:
    """The API credentials in ``environ``; with ``scrub``, the secrets leave it (a server,
    whose kernels and terminals inherit its environment, reads them once, at start).

    In hub mode (``$TIMEBACK_RELAY_URL`` set, or ``settings`` naming the relay sink) none are
    read: the relay holds them, and a secret found in a student's server is only scrubbed."""
    hub = bool(environ.get(RELAY_URL_ENV, "").strip()) or (
        settings is not None and settings.sink == "relay"
    )
    credentials = None if hub else Credentials.from_env(environ)
    if scrub:
        for name in SECRET_ENV_VARS:
            environ.pop(name, None)
    return credentials


def _enter_hub_mode(settings: Timeback, environ: Mapping[str, str]) -> None:
    """Hub mode's sink is the relay whatever the config says (the student's own config must
    not send events around the relay); a relay the environment does not name is an error."""
    if not environ.get(RELAY_URL_ENV, "").strip():
        raise DeliveryError(
            f"c.Timeback.sink is 'relay' but ${RELAY_URL_ENV} is not set: the hub admin sets "
            f"it with c.Spawner.environment = {{'{RELAY_URL_ENV}': "
            "'http://<hub>/services/timeback-relay/'}; nothing is sent until then"
        )
    if settings.sink != "relay":
        LOG.warning(
            "timeback: $%s is set: events go to the relay, not the %s sink",
            RELAY_URL_ENV,
            settings.sink,
        )
        settings.sink = "relay"


def build_core(
    settings: Timeback,
    *,
    environ: Mapping[str, str],
    credentials: Credentials | None,
    search: tuple[str, ...] = (),
    identify: bool = True,
    open_store: Callable[[], Store] | None = None,
) -> Core:
    """Assemble the core ``settings`` (``c.Timeback``) describe.

    ``environ`` names the student (``$TIMEBACK_STUDENT_EMAIL``, the hub user...);
    ``credentials`` come from :func:`take_credentials` (None: none, fine for the local sink).
    ``search``: the directories to look in for ``timeback.config.json`` when
    ``c.Timeback.config_file`` names none. ``identify``: also find the app config and the
    student (a command that only delivers needs neither). ``open_store``: how to open the
    store (busy timeout, a check that it exists); default: ``Store(settings.store_path)``.

    Raises ConfigError, IdentityError, DeliveryError (a Timeback sink without credentials,
    bad delivery knobs) or StoreError, in that order of the parts, before opening the store
    if anything else is wrong.
    """
    hub = hub_mode(settings, environ)
    if hub:
        _enter_hub_mode(settings, environ)
        credentials = None  # never used here, whoever passed them
    local = settings.sink == "local"
    app_config = student = None
    if identify:
        app_config = app_config_for(settings, search)
        student = student_for(settings, environ)
    connection = None if credentials is None else Connection.from_config(settings, credentials)
    sink: Sink
    if hub:
        from .delivery.relay import RelaySink  # httpx: only on a hub, never at extension load

        sink = RelaySink.from_environ(environ, timeout=settings.request_timeout)
    else:
        sink = make_sink(settings, credentials, connection)
    store = open_store() if open_store is not None else Store(settings.store_path)
    try:
        drainer = Drainer.from_config(store, sink, settings)
    except BaseException:
        store.close()
        raise
    core = Core(settings, credentials, connection, sink, store, drainer, app_config, student)
    if student is not None:
        if local or hub or student.sourced_id:
            # In hub mode the relay stamps the actor: the placeholder is only a local label.
            core.actor = identity.actor_for(student, settings.oneroster_url, local=local or hub)
        else:
            # Timeback needs the student's OneRoster id: found by email once a loop runs.
            core.resolver = identity.ActorResolver.from_config(
                settings, credentials, connection=connection
            )
    return core
