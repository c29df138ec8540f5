"""Kubernetes probes: is this process alive, and may it take traffic.

``api/health/live`` answers from the event loop itself, touching nothing else: a restart cures
a wedged loop, never a database outage (restarting every replica while PostgreSQL is down
would only add a storm of reconnects). ``api/health/ready`` runs a real query on the relay's
own pool, on a thread and under a time limit, and answers 503 with the reason when the store
cannot serve or its schema is not the one this relay speaks: the Service then sends the
traffic to a replica that can. Neither asks for a token (kubelet has none); neither tells more
than a reason: no URL, host, user or error text of the driver.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import sqlalchemy as sa
from tornado import web

from .database import RelayDatabase, head_revision
from .schema import VERSION_TABLE

LOG = logging.getLogger("timeback_jupyter.relay")
READY_TIMEOUT = 5.0  # under the readiness probe's timeoutSeconds in the docs' Deployment


class NotReady(Exception):
    """Why this replica should not take traffic now (the 503's reason)."""


def check_store(db: RelayDatabase, head: str) -> None:
    """A real round trip on a pooled connection: the schema's revision is ``head``."""
    try:
        with db.engine.connect() as conn:
            found = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
            revisions = list(found)
    except sa.exc.TimeoutError:
        raise NotReady("no free database connection in the pool") from None
    except sa.exc.SQLAlchemyError as err:
        # The exception's class only: the driver's text names hosts, users and databases.
        kind = type(getattr(err, "orig", None) or err).__name__
        raise NotReady(f"the database cannot be queried ({kind})") from None
    if revisions != [head]:
        raise NotReady(
            f"the database schema is at {', '.join(revisions) or 'no revision'}, "
            f"this relay needs {head}"
        )


class _ProbeHandler(web.RequestHandler):
    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self) -> None:
        """GET only, no cookie read."""

    def answer(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.finish(json.dumps(body))


class LiveHandler(_ProbeHandler):
    def initialize(self, service: str) -> None:
        self.service = service

    def get(self) -> None:
        self.answer(200, {"status": "ok", "service": self.service})


class ReadyHandler(_ProbeHandler):
    def initialize(self, service: str, db: RelayDatabase, head: str, timeout: float) -> None:
        self.service, self.db, self.head, self.timeout = service, db, head, timeout

    async def get(self) -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(check_store, self.db, self.head), self.timeout)
        except NotReady as err:
            reason = str(err)
        except TimeoutError:
            reason = f"the database did not answer within {self.timeout:g} s"
        else:
            self.answer(200, {"status": "ready", "service": self.service})
            return
        LOG.warning("relay not ready: %s", reason)
        self.answer(503, {"status": "not ready", "service": self.service, "reason": reason})


def routes(
    prefix: str, service: str, db: RelayDatabase, *, timeout: float = READY_TIMEOUT
) -> list[tuple[str, type[web.RequestHandler], dict[str, Any]]]:
    # The head once: finding it reads every migration script.
    ready = {"service": service, "db": db, "head": head_revision(), "timeout": timeout}
    return [
        (f"{prefix}api/health/live", LiveHandler, {"service": service}),
        (f"{prefix}api/health/ready", ReadyHandler, ready),
    ]
