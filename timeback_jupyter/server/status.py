"""The extension's status, as the status bar, the panel, ``%timeback status`` and
``jupyter timeback status`` show it: one answer, its figures taken at one instant."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from ..config import Credentials, Timeback
from ..config.common import RELAY_URL_ENV
from ..delivery import Drainer
from ..store import Store
from ..tracker import Tracker, TrackerError

# An event waiting longer than this (seconds) makes delivery "slow" in the status: the drainer
# sends each window's event within a second or two of its writing when Timeback answers.
DELIVERY_SLOW_AFTER = 10.0
# The relay's own prefix in $TIMEBACK_RELAY_URL: a hub service is served under /services/<name>/
# (by the proxy, or the service itself when the URL reaches it directly).
_SERVICE_PATH = re.compile(r"/services/([^/]+)/?$")


class Source(Protocol):
    """What the status is made of: the service's state (:class:`.service.TimebackService`)."""

    settings: Timeback
    credentials: Credentials | None
    problem: str
    store_error: str
    store_warning: str
    store_error_types: tuple[type[BaseException], ...]
    tracker: Tracker | None
    store: Store | None
    drainer: Drainer | None

    def now(self) -> float: ...


def status_of(
    service: Source,
    *,
    public: bool = False,
    today_start: float | None = None,
    run_id: str | None = None,
    counts: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What records, where to, and how delivery goes; ``public`` leaves out local paths (for
    kernels); ``today_start`` adds the time recorded since then and ``run_id`` that run (as
    ``GET runs/<id>`` shows it, with ``unsent_seconds``), both at the same instant ``as_of``, so
    a panel showing both shows one truth (today never below a run begun that day).
    ``delivery.slow`` says events wait longer than ``DELIVERY_SLOW_AFTER`` or delivery is
    retrying. ``counts``: the drainer's outbox and jobs counts read already (``await
    Drainer.read_counts()`` on an event loop: the outbox's store is the drainer's); else they
    are read here."""
    cfg = service.settings
    credentials = service.credentials
    failing = service.problem or service.store_error
    now = service.now()
    out: dict[str, Any] = {
        "recording": not failing,
        "problem": failing or None,
        "store": {"error": service.store_error or None},
        "sink": cfg.sink,
        "environment": cfg.environment,
        "heartbeat_interval": cfg.heartbeat_interval,
        "credentials": credentials.masked if credentials else None,
        "as_of": now,
    }
    tracker = service.tracker
    if tracker is not None:
        out["identity"] = {
            "student": tracker.student.key,
            "email": tracker.student.email,
            "actor": tracker.actor.id,
        }
        out["app"] = {"name": tracker.app_config.name, "config_file": tracker.app_config.path}
        out["live_runs"] = len(tracker.live_runs())
        if today_start is not None:
            try:
                out["today"] = tracker.today(today_start, now)
            except service.store_error_types as err:
                out["today"] = {"error": str(err)}
        if run_id is not None:
            out["run"] = _run_status(service, tracker, run_id, now)
    if counts is not None:
        out["outbox"] = counts[0]
    elif service.store is not None:
        try:
            out["outbox"] = service.store.stats()
        except service.store_error_types as err:
            out["outbox"] = {"error": str(err)}
    if service.drainer is not None:
        delivery = out["delivery"] = service.drainer.status(counts)
        age = (out.get("outbox") or {}).get("oldest_pending_age")
        delivery["oldest_pending_age"] = age
        delivery["slow"] = delivery.get("state") == "retrying" or (
            age is not None and age > DELIVERY_SLOW_AFTER
        )
        describe = getattr(service.drainer.sink, "describe", None)
        if describe is not None:  # the relay sink (hub mode): its health and refusals
            out["relay"] = relay = describe()
            if relay.get("problem") and not failing:
                # Still recording (the outbox holds the events), but nothing gets through.
                out["problem"] = f"relay: {relay['problem']}"
    if cfg.sink == "relay":
        out["relay_page"] = relay_page(os.environ)
    if not public:
        out["store_path"] = cfg.store_path
        # it records, but on a disk where it should not (a network file system): the fix
        out["store"]["warning"] = service.store_warning or None
    return out


def relay_page(environ: Mapping[str, str]) -> str | None:
    """The student's own page on the hub's relay, as a path on the hub
    (``<hub base>/services/<relay>/students/<user>``), for the lab extension to link; None
    when the environment does not name the relay and the hub user. Only names: never a token.

    The relay's name comes from ``$TIMEBACK_RELAY_URL`` (its address may be internal, the path
    is the service's); the hub's base from ``$JUPYTERHUB_BASE_URL``, which the hub gives every
    server it spawns."""
    user = environ.get("JUPYTERHUB_USER", "").strip()
    found = _SERVICE_PATH.search(urlsplit(environ.get(RELAY_URL_ENV, "").strip()).path)
    if not user or not found:
        return None
    base = "/" + environ.get("JUPYTERHUB_BASE_URL", "/").strip("/")
    return f"{base.rstrip('/')}/services/{found.group(1)}/students/{quote(user, safe='')}"


def _run_status(service: Source, tracker: Tracker, run_id: str, now: float) -> dict[str, Any]:
    """The run as ``GET runs/<id>`` shows it at ``now``, with the seconds of its windows written
    but not yet delivered; ``{"error": ...}`` when it cannot be shown."""
    try:
        shown = tracker.describe(tracker.get(run_id), now)
        if service.store is not None:
            shown["unsent_seconds"] = round(sum(service.store.unsent_time(shown["id"])), 3)
        return shown
    except TrackerError as err:
        return {"error": str(err)}
    except service.store_error_types as err:
        return {"error": str(err)}
