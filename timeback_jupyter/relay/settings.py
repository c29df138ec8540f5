"""The relay service's knobs (``c.Relay.*``), read by ``jupyter timeback relay``.

Where and how the relay delivers to Timeback (environment, URLs, batch size, retries, the XP
policy's knobs) are the server's own ``c.Timeback.*`` settings, read from the relay's config;
its credentials come from its environment under the official names, as the server's do.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit

from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, default, validate
from traitlets.config import Configurable

SERVICE_NAME_ENV = "JUPYTERHUB_SERVICE_NAME"
SERVICE_URL_ENV = "JUPYTERHUB_SERVICE_URL"
SERVICE_PREFIX_ENV = "JUPYTERHUB_SERVICE_PREFIX"
DEFAULT_SERVICE_NAME = "timeback-relay"
REPLICA_ENV = "HOSTNAME"  # a Kubernetes pod's name
AUTH_CACHE_SECONDS = 60  # c.Relay.auth_cache_seconds by default
MAX_SEND_EVERY = 300  # what a server follows at most (delivery/pace.py MAX_PACE)
MAX_FORWARD_EVERY = 10.0  # job polls wait with the sends, and Timeback's view lags as much


def _bounded(
    proposal: dict[str, Any], least: float, most: float | None = None, why: str = ""
) -> Any:
    """A number trait's proposed value if within [least, most], else a TraitError naming the
    setting (``c.Relay.<name>``), its bounds and, in ``why``, a reason they are not obvious."""
    value, name = proposal["value"], proposal["trait"].name
    if not isinstance(value, int | float) or value < least or (most is not None and value > most):
        bounds = f"at least {least:g}" if most is None else f"{least:g} to {most:g}"
        raise TraitError(f"c.Relay.{name} must be {bounds}{why}, got {value!r}")
    return value


class Relay(Configurable):
    """Configuration of the JupyterHub relay service (``c.Relay.*``)."""

    db_url = Unicode(
        help="SQLAlchemy URL of the relay's database, e.g. sqlite:////srv/timeback/relay.sqlite "
        "(a file on the hub's volume; one relay process), or "
        "postgresql+psycopg://relay@db.example/relay (several relay processes; the password "
        "from $PGPASSWORD rather than the URL, which a command line shows). "
        "Default: relay.sqlite3 in the current directory."
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self) -> str:
        return f"sqlite:///{os.path.abspath('relay.sqlite3')}"

    # PostgreSQL's default max_connections is 100: ten replicas at 4 + 4 leave 20 for the hub,
    # psql and migrations. A relay needs few: its writes go one transaction at a time (group
    # commit), the rest are short reads on threads.
    db_pool_size = Int(
        4,
        help="PostgreSQL: connections each relay process keeps open. N replicas hold up to "
        "N x (db_pool_size + db_max_overflow) of the server's max_connections (default 100); "
        "the defaults fit ten replicas. Ignored for SQLite.",
    ).tag(config=True)

    db_max_overflow = Int(
        4,
        help="PostgreSQL: connections opened beyond db_pool_size under a burst, closed again "
        "when returned. Ignored for SQLite.",
    ).tag(config=True)

    db_pool_timeout = Float(
        10.0,
        help="PostgreSQL: seconds a request waits for a free pooled connection before it fails "
        "(the sender keeps its events and retries; readiness reports it). Ignored for SQLite.",
    ).tag(config=True)

    db_wait_seconds = Float(
        120.0,
        help="Seconds a starting relay waits for its database to answer (PostgreSQL still "
        "starting, e.g. after a node's restart), trying again with a growing pause; then it "
        "exits with the reason. 0: exit at once. A refused login or a store made by a newer "
        "relay is never waited for.",
    ).tag(config=True)

    @validate("db_pool_size", "db_max_overflow", "db_pool_timeout", "db_wait_seconds")
    def _validate_pool(self, proposal: dict[str, Any]) -> object:
        return _bounded(proposal, 1 if proposal["trait"].name == "db_pool_size" else 0)

    commit_lanes = Int(
        1,
        help="PostgreSQL: ingest transactions (group commits) each relay process runs at once, "
        "each on a pooled connection of its own and never two for the same hub user. More "
        "than 1 helps only if commits are slow (a distant database): envelopes that arrive "
        "meanwhile share the next commit anyway, and fewer, fuller commits cost less. Keep it "
        "below db_pool_size + db_max_overflow (the forwarder and the pages need connections "
        "too). SQLite always runs one.",
    ).tag(config=True)

    @validate("commit_lanes")
    def _validate_lanes(self, proposal: dict[str, Any]) -> object:
        return _bounded(proposal, 1, 32)

    # Woken at most every 0.25 s (ingest.NOTIFY_LINGER), the forwarder still sends a small
    # envelope after every few milliseconds' worth of arrivals (55 events per job at the
    # district's rate), each paying a claim, a POST, a job record, polls and a confirm. Paced
    # at 0.25 s, two relays used 0.28 cores instead of 0.45 at a tenth of the district's rate
    # and 0.69 instead of 0.98 at half; but at the full rate its bursts (a batch of ~170 every
    # quarter second, the stand-in validating it at once) raised the ingest's p99 from ~145
    # to 263 ms on this 2-core machine, so it is off by default (benchmarks/district.py,
    # 2026-12-04, DISTRICT_RELAY_ARGS="--Relay.forward_every=0.25").
    forward_every = Float(
        0.0,
        help="Seconds the relay's forwarder waits after an envelope to Timeback that was not "
        "a full batch (c.Timeback.batch_size) before it sends the next: what comes meanwhile "
        "goes in one envelope. A backlog (full batches) goes on at once. Longer: fewer, "
        "fuller envelopes and less CPU; events reach Timeback up to this much later. "
        f"0 to {MAX_FORWARD_EVERY:g}; 0 sends at once.",
    ).tag(config=True)

    @validate("forward_every")
    def _check_forward_every(self, proposal: dict[str, Any]) -> float:
        return float(_bounded(proposal, 0, MAX_FORWARD_EVERY, " seconds"))

    authenticate_prometheus = Bool(
        True,
        help="Ask for a hub token with the 'read:metrics' scope on /metrics (as "
        "c.JupyterHub.authenticate_prometheus does); False opens the metrics to anyone who "
        "reaches the relay's port.",
    ).tag(config=True)

    log_format = Enum(
        ["text", "json"],
        default_value="text",
        help="'text' (one readable line per record) or 'json' (one JSON object per line: time, "
        "level, logger, message, and for requests method, path, status, duration_ms, user, "
        "replica), for a log collector.",
    ).tag(config=True)

    replica_id = Unicode(
        help="This process's name in JSON logs. Default: $HOSTNAME (a Kubernetes pod's name), "
        "else the host name and process id."
    ).tag(config=True)

    @default("replica_id")
    def _default_replica_id(self) -> str:
        return os.environ.get(REPLICA_ENV, "").strip() or f"{socket.gethostname()}-{os.getpid()}"

    cookie_secret_file = Unicode(
        "",
        help="File holding the secret (hex, at least 32 bytes) that signs the pages' login "
        "cookie; every replica behind one URL needs the same, or a login made on one is "
        "refused by the next. Readable by the relay's user only. "
        "$TIMEBACK_RELAY_COOKIE_SECRET (hex) is used first. Neither set: a new secret per "
        "process (one replica; a restart asks the hub's OAuth again).",
    ).tag(config=True)

    catalog = Unicode(
        "",
        help="Path of the school's timeback.config.json on the hub's side: courses, and per "
        "course the activities with their expected XP and mastery threshold. Required.",
    ).tag(config=True)

    email_template = Unicode(
        "",
        help="The student's email from the hub user name, e.g. '{name}@school.edu'; the relay "
        "looks their OneRoster sourcedId up by it (the timeback sink).",
    ).tag(config=True)

    unknown_activity = Enum(
        ["zero", "refuse"],
        default_value="zero",
        help="An activity not in the catalog: 'zero' forwards its time and completion with 0 "
        "XP (the reason given), 'refuse' refuses its events.",
    ).tag(config=True)

    sink = Enum(
        ["timeback", "local"],
        default_value="timeback",
        help="Where the relay delivers: 'timeback' (the Caliper API, with the credentials in "
        "the relay's environment) or 'local' (kept validated in its database; a dry run).",
    ).tag(config=True)

    ip = Unicode(help="Address to listen on. Default: the host of $JUPYTERHUB_SERVICE_URL.").tag(
        config=True
    )

    @default("ip")
    def _default_ip(self) -> str:
        return urlsplit(os.environ.get(SERVICE_URL_ENV, "")).hostname or "127.0.0.1"

    port = Int(help="Port to listen on. Default: the port of $JUPYTERHUB_SERVICE_URL.").tag(
        config=True
    )

    @default("port")
    def _default_port(self) -> int:
        try:
            port = urlsplit(os.environ.get(SERVICE_URL_ENV, "")).port
        except ValueError:
            port = None
        return port or 10101

    @validate("port")
    def _validate_port(self, proposal: dict[str, Any]) -> int:
        return int(_bounded(proposal, 0, 65535))

    # HubAuth's default is 300 s; a minute keeps a revoked token (a stopped server) useful for
    # less time at one hub request per server-minute.
    auth_cache_seconds = Int(
        AUTH_CACHE_SECONDS,
        help="How long the hub's answer for a token is trusted (HubAuth's cache). Each student's "
        "server token costs the hub one lookup per this many seconds per relay replica: at "
        "district scale (tens of thousands of students) a longer cache, e.g. 600, keeps the hub "
        "out of the ingest's way; a revoked token then works that much longer.",
    ).tag(config=True)

    @validate("auth_cache_seconds")
    def _check_auth_cache(self, proposal: dict[str, Any]) -> int:
        # HubAuth reads a cache_max_age of 0 as "keep for ever": a revoked token would work
        # until the relay restarts, the opposite of what 0 seems to ask.
        why = " (0 would make HubAuth keep the hub's answers for ever)"
        return int(_bounded(proposal, 1, 86400, why))

    # 0 by default: a school's hub is far below what one relay takes (one request per student
    # per 15 s heartbeat); only a district trades the live view's freshness for fewer requests.
    send_every = Int(
        0,
        help="Seconds a student's server waits between sends of heartbeats, told to it in "
        "every ingest answer: it holds new time events until this long after its last send, "
        "then sends them in one request. Requests/s at the relays = students / send_every "
        "(at most students / 15, one per heartbeat: 20,000 students send 1,333 requests/s at "
        "0, 333 at 60). Completions, flushes and retries are never held. The cost: the live "
        "view is up to this much older, and counts a run as working for 90 s + send_every "
        "after its newest second. 0: send each heartbeat at once. At most "
        f"{MAX_SEND_EVERY}.",
    ).tag(config=True)

    @validate("send_every")
    def _check_send_every(self, proposal: dict[str, Any]) -> int:
        return int(_bounded(proposal, 0, MAX_SEND_EVERY))

    service_name = Unicode(
        help="The service's name in c.JupyterHub.services. Default: $JUPYTERHUB_SERVICE_NAME, "
        f"else {DEFAULT_SERVICE_NAME!r}."
    ).tag(config=True)

    @default("service_name")
    def _default_service_name(self) -> str:
        return os.environ.get(SERVICE_NAME_ENV, "").strip() or DEFAULT_SERVICE_NAME

    @property
    def prefix(self) -> str:
        """The URL prefix the hub's proxy sends to the relay (``/services/<name>/``)."""
        prefix = os.environ.get(SERVICE_PREFIX_ENV, "").strip()
        prefix = prefix or f"/services/{self.service_name}/"
        return prefix if prefix.endswith("/") else prefix + "/"

    @property
    def access_scope(self) -> str:
        """The scope a token needs to call the relay."""
        return f"access:services!service={self.service_name}"
