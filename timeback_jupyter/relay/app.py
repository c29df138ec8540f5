"""The relay as a JupyterHub service: its core assembled from ``c.Relay`` / ``c.Timeback`` and
the relay's environment, served by tornado under the service's prefix, delivered by the same
drainer a server uses.

The hub gives a managed service (``command`` in ``c.JupyterHub.services``) its name, URL,
prefix, API URL and token in the environment; an external one (``url`` + ``api_token``) gets
the same variables from whoever starts it. The Timeback credentials are read from the relay's
environment once; nothing here ever writes them, or a token, to a log or an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jupyterhub.services.auth import HubAuth
from tornado import httpserver, web

from ..config import ConfigError, Credentials, Timeback
from ..connection import Connection
from ..core import take_credentials
from ..delivery import Drainer, Sink, make_sink
from ..identity import ActorResolver
from . import health
from . import metrics as metrics_
from . import traffic as traffic_
from .catalog import Catalog
from .cookies import load_cookie_secret, new_cookie_secret
from .database import RelayDatabase, open_relay_db
from .db_wait import open_when_reachable
from .forwarding import Forwarder
from .handlers import MAX_BODY_BYTES, EventsHandler, Face, RelayHandler, routes
from .ingest import Relay, settle_heap
from .metrics import RelayMetrics
from .pages import routes as page_routes
from .settings import AUTH_CACHE_SECONDS  # noqa: F401  (re-exported: benchmarks read it here)
from .settings import Relay as RelaySettings
from .tokens import share_tokens
from .traffic import IngestTraffic
from .users import UserDirectory

LOG = logging.getLogger("timeback_jupyter.relay")
HUB_TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
HUB_API_URL_ENV = "JUPYTERHUB_API_URL"


class RelayConfigError(ConfigError):
    """The relay cannot start as configured; the message says what to set."""


def log_request(handler: web.RequestHandler, level: int | None = None) -> None:
    """Tornado's access log without the query string (a token someone put there must not be
    written down) and with the hub user the token or the pages' login cookie belonged to
    (every handler that asks the hub sets ``hub_name``); the same as fields for JSON logs."""
    status = handler.get_status()
    if level is None:
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    caller = getattr(handler, "hub_name", None)
    duration = 1000.0 * handler.request.request_time()
    fields = {
        "method": handler.request.method,
        "path": handler.request.path,
        "status": status,
        "duration_ms": round(duration, 1),
        "user": caller,
    }
    LOG.log(
        level,
        "%d %s %s (%s) %.1fms",
        status,
        handler.request.method,
        handler.request.path,
        caller or "-",
        duration,
        extra=fields,
    )


@dataclass
class RelayParts:
    """The relay's core as built from its configuration."""

    relay: Relay
    drainer: Drainer
    db: RelayDatabase
    sink: Sink
    resolver: ActorResolver | None
    credentials: Credentials | None

    sink_closed: bool = False  # by the forwarder, on its own loop

    async def aclose(self) -> None:
        try:
            if not self.sink_closed:
                await self.sink.aclose()
            if self.resolver is not None:
                await self.resolver.aclose()
        finally:
            self.db.close()


def build_parts(
    settings: RelaySettings, timeback: Timeback, environ: Mapping[str, str]
) -> RelayParts:
    """The relay's core: catalog, users, store, rules, outbox, sink and drainer.

    Raises RelayConfigError (or the core's ConfigError, IdentityError, DeliveryError,
    StoreError) before anything listens.
    """
    if not settings.catalog:
        raise RelayConfigError(
            "c.Relay.catalog is not set: the path of the school's timeback.config.json "
            "(courses and their activities) on the hub's side"
        )
    if not settings.email_template:
        raise RelayConfigError(
            "c.Relay.email_template is not set: how a hub user's email is made, e.g. "
            "'{name}@school.edu'"
        )
    timeback.sink = settings.sink  # where the drainer delivers (make_sink reads it)
    credentials = None
    connection = None
    resolver = None
    if settings.sink == "timeback":
        credentials = take_credentials(dict(environ))
        if credentials is None:
            raise RelayConfigError(
                "c.Relay.sink is 'timeback' but the relay's environment has no credentials: "
                "set TIMEBACK_CLIENT_ID and TIMEBACK_CLIENT_SECRET for the relay (the "
                "service's 'environment' in c.JupyterHub.services)"
            )
        connection = Connection.from_config(timeback, credentials)
        resolver = ActorResolver.from_config(timeback, credentials, connection=connection)
    catalog = Catalog.load(settings.catalog, timeback.environment, timeback.oneroster_url)
    users = UserDirectory(settings.email_template, timeback.oneroster_url, resolver)
    # The sink gets a connection of its own: it runs on the forwarder's event loop
    # (relay/forwarding.py), the OneRoster lookup on the ingest's, and the official token
    # manager is not for two loops. Both take the one token every replica shares.
    sink_connection = None if credentials is None else Connection.from_config(timeback, credentials)
    sink = make_sink(timeback, credentials, sink_connection)
    db = open_when_reachable(
        functools.partial(
            open_relay_db,
            settings.db_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout,
        ),
        settings.db_wait_seconds,
    )
    try:
        relay = Relay(
            db,
            catalog,
            users,
            timeback.xp_policy,
            unknown_activity=settings.unknown_activity,
            commit_lanes=settings.commit_lanes,
        )
        drainer = Drainer.from_config(relay.outbox, sink, timeback, pace=settings.forward_every)
        for shared in (connection, sink_connection):
            if shared is not None:  # one OAuth token for every replica on this database
                share_tokens(shared, db)
    except BaseException:
        db.close()
        raise
    relay.notify = drainer.notify
    return RelayParts(relay, drainer, db, sink, resolver, credentials)


def hub_auth(settings: RelaySettings, environ: Mapping[str, str]) -> HubAuth:
    """JupyterHub's own client for "whose token is this?", with the relay's service token."""
    token = environ.get(HUB_TOKEN_ENV, "").strip()
    if not token:
        raise RelayConfigError(
            f"${HUB_TOKEN_ENV} is not set: run the relay as a JupyterHub service (managed: "
            "the hub sets it; external: the service's api_token in c.JupyterHub.services)"
        )
    kw: dict[str, Any] = {}
    if environ.get(HUB_API_URL_ENV):
        kw["api_url"] = environ[HUB_API_URL_ENV]
    return HubAuth(
        api_token=token,
        access_scopes={settings.access_scope},
        cache_max_age=settings.auth_cache_seconds,
        **kw,
    )


def make_app(
    face: Face,
    prefix: str,
    *,
    cookie_secret: bytes | None = None,
    metrics: RelayMetrics | None = None,
    authenticate_prometheus: bool = True,
    summary_seconds: float = traffic_.INTERVAL,
) -> web.Application:
    """The relay's routes. ``cookie_secret`` signs the pages' login cookie (shared by replicas;
    a new one per process if None); ``metrics`` adds ``metrics`` and counts ingests; successful
    ingests are summed into a log line every ``summary_seconds``."""
    handlers: list[Any] = [
        *routes(prefix, face),
        *page_routes(prefix, face),
        *health.routes(prefix, face.service_name, face.relay.db),
    ]
    if metrics is not None:
        auth = face.auth if authenticate_prometheus else None
        handlers += metrics_.routes(prefix, metrics, auth)

    def log_function(handler: web.RequestHandler) -> None:
        result = getattr(handler, "ingested", None)  # set by EventsHandler on its 200 only
        if metrics is not None and isinstance(handler, EventsHandler):
            metrics.observe(handler, result)
        if result is not None and handler.get_status() == 200:
            # Summed, not a line each (relay/traffic.py); every refusal keeps its own line.
            traffic.add(handler.request.request_time(), result.counts)
            if LOG.isEnabledFor(logging.DEBUG):
                log_request(handler, logging.DEBUG)
            return
        log_request(handler)

    traffic = IngestTraffic(LOG, "POST", f"{prefix}api/events", interval=summary_seconds)
    app = web.Application(
        handlers,
        log_function=log_function,
        default_handler_class=_NotFound,
        default_handler_args={"face": face},
        cookie_secret=cookie_secret or new_cookie_secret(),
    )
    app.settings["ingest_traffic"] = traffic  # serve() writes its last line at stop
    return app


class _NotFound(RelayHandler):
    def prepare(self) -> None:
        raise web.HTTPError(404, "no such route on the relay")


async def serve(settings: RelaySettings, timeback: Timeback, environ: Mapping[str, str]) -> None:
    """Run the relay until SIGTERM or SIGINT: listen, deliver, then stop cleanly."""
    auth = hub_auth(settings, environ)
    cookie_secret = load_cookie_secret(settings.cookie_secret_file, environ)
    parts = build_parts(settings, timeback, environ)
    face = Face(parts.relay, auth, settings.service_name, parts.drainer, settings.send_every)
    metrics = RelayMetrics(parts.db, parts.relay.now)
    parts.relay.observe_commits(metrics.group_commit)
    app = make_app(
        face,
        settings.prefix,
        cookie_secret=cookie_secret,
        metrics=metrics,
        authenticate_prometheus=settings.authenticate_prometheus,
    )
    if cookie_secret is None:
        LOG.info(
            "the pages' login cookie is signed with a secret of this process: run one replica, "
            "or give all of them c.Relay.cookie_secret_file / $TIMEBACK_RELAY_COOKIE_SECRET"
        )
    server = httpserver.HTTPServer(app, xheaders=True, max_body_size=MAX_BODY_BYTES)
    try:
        server.listen(settings.port, settings.ip)
        settle_heap()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        forwarder = Forwarder(parts.drainer, parts.sink)  # off this loop: relay/forwarding.py
        forwarder.start()
        parts.relay.notify = forwarder.notify
        await forwarder.run()
        probing = asyncio.create_task(metrics.probe_loop(), name="relay-loop-probe")
        LOG.info(
            "timeback relay %r listening on http://%s:%d%s, delivering to the %s sink",
            settings.service_name,
            settings.ip,
            settings.port,
            settings.prefix,
            parts.sink.name,
        )
        started = time.monotonic()
        await stopping.wait()
        LOG.info("timeback relay stopping after %.0f s", time.monotonic() - started)
        server.stop()
        try:
            await forwarder.stop(flush_timeout=2.0)
        finally:
            parts.sink_closed = forwarder.sink_closed
        probing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probing
    finally:
        server.stop()
        app.settings["ingest_traffic"].flush()  # the successes since the last summary line
        await parts.aclose()
