"""Prometheus metrics at ``<prefix>metrics`` (and ``/metrics`` for a scraper that reaches the
pod directly).

Two kinds, and the difference matters with several replicas:

- per process, counted as this replica serves: envelopes and events by outcome, ingest latency,
  seconds cut as overlapping, database errors. Sum them over replicas.
- how this replica spends its time: each group commit's size, wall time, queue wait and
  thread CPU (``relay/batching.py``), and the event loop's lag (how late a timer fires:
  :meth:`RelayMetrics.probe_loop`), so a slow answer can be told apart as waiting for the
  commit, for the queue before it, or for the loop.
- of the shared store, read at scrape by a few indexed queries: outbox depth, the age of the
  oldest pending event, Timeback's jobs pending and failed, dead letters. Every replica reports
  the same value; take ``max`` over replicas, never ``sum``.

By default a scrape needs a hub token with ``read:metrics`` (as the hub's own ``/hub/metrics``
with ``c.JupyterHub.authenticate_prometheus``); ``c.Relay.authenticate_prometheus = False``
opens it.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from jupyterhub.services.auth import HubAuth
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from tornado import web

from .batching import BatchTiming
from .database import RelayDatabase
from .outbox_sql import PENDING, WAITING
from .schema import dead_letters, jobs, outbox

LOG = logging.getLogger("timeback_jupyter.relay")
METRICS_SCOPE = "read:metrics"
# Ingest answers within the 100 ms target land in the first buckets; the tail shows a stall.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ENVELOPE_OUTCOMES = {200: "stored", 400: "invalid", 401: "unauthorized", 403: "forbidden",
                     413: "too_large", 503: "unavailable"}  # fmt: skip
SCRAPE_TIMEOUT = 5.0
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LOOP_PROBE_EVERY = 0.1  # seconds between the loop-lag probe's timers


class RelayMetrics:
    """This process's metrics, in a registry of its own (a test may run several relays)."""

    def __init__(self, db: RelayDatabase, now: Callable[[], float] = time.time) -> None:
        self.db, self.now = db, now
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.envelopes = Counter(
            "timeback_relay_envelopes",
            "Envelopes POSTed to api/events by this replica, by outcome",
            ["outcome"],
            registry=r,
        )
        self.events = Counter(
            "timeback_relay_events",
            "Events in stored envelopes, by the relay's answer (accepted, duplicate, refused)",
            ["status"],
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "timeback_relay_ingest_duration_seconds",
            "Time to answer a POST to api/events (hub auth, rules, commit)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cut_seconds = Counter(
            "timeback_relay_cut_seconds",
            "Active seconds this replica cut as overlapping the user's forwarded time",
            registry=r,
        )
        self.db_errors = Counter(
            "timeback_relay_db_errors",
            "Errors raised by the database driver in this replica, by SQLAlchemy's class",
            ["kind"],
            registry=r,
        )
        self.commit_envelopes = Histogram(
            "timeback_relay_group_commit_envelopes",
            "Envelopes per group commit (one transaction) in this replica",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "timeback_relay_group_commit_duration_seconds",
            "Wall time of a group commit's transaction (rules, statements, commit)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_wait = Histogram(
            "timeback_relay_group_commit_wait_seconds",
            "How long the oldest envelope of a group commit queued before it began",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_cpu = Counter(
            "timeback_relay_group_commit_cpu_seconds",
            "CPU time of the group commits' thread (the rest of their wall time is waiting)",
            registry=r,
        )
        self.loop_lag = Histogram(
            "timeback_relay_event_loop_lag_seconds",
            f"How late a timer set every {LOOP_PROBE_EVERY:g} s fires on this replica's event "
            "loop (every request waits as long for its turn)",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.gc_pause = Histogram(
            "timeback_relay_gc_pause_seconds",
            "Pauses of this process's cyclic garbage collector, by generation: every thread "
            "of the replica (answers, commits, the forwarder) waits them out",
            ["generation"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self._gc_pauses: collections.deque[tuple[int, float]] = collections.deque(maxlen=10_000)
        self._gc_began = 0.0
        self.outbox_events = Gauge(
            "timeback_relay_outbox_events",
            "Events in the shared outbox not yet delivered, by status (store-wide)",
            ["status"],
            registry=r,
        )
        self.oldest_pending = Gauge(
            "timeback_relay_outbox_oldest_pending_age_seconds",
            "Age of the oldest event waiting to be sent, 0 when none (store-wide)",
            registry=r,
        )
        self.jobs = Gauge(
            "timeback_relay_jobs",
            "Timeback jobs pending and failed (store-wide; failed only grows)",
            ["state"],
            registry=r,
        )
        self.dead_letters = Gauge(
            "timeback_relay_dead_letters",
            "Events Timeback refused for good, kept for an admin (store-wide)",
            registry=r,
        )
        self.store_up = Gauge(
            "timeback_relay_store_up",
            "1 if the store answered this scrape's queries, else 0 (the store-wide gauges "
            "then keep their last values)",
            registry=r,
        )
        # Each answer's children looked up once: labels() costs more than the inc() itself.
        self._outcome = {s: self.envelopes.labels(o) for s, o in ENVELOPE_OUTCOMES.items()}
        self._status = {s: self.events.labels(s) for s in ("accepted", "duplicate", "refused")}
        for state in ("pending", "failed"):
            self.jobs.labels(state)
        # Every driver error of this process, whoever ran the statement: no part of the relay
        # needs to remember to count.
        sa.event.listen(db.engine, "handle_error", self._db_error)

    def group_commit(self, timing: BatchTiming) -> None:
        """One group commit's timing (``Relay.observe_commits``)."""
        self.commit_envelopes.observe(timing.size)
        self.commit_seconds.observe(timing.wall)
        self.commit_wait.observe(timing.wait)
        self.commit_cpu.inc(timing.cpu)

    async def probe_loop(self, every: float = LOOP_PROBE_EVERY) -> None:
        """Until cancelled: sleep ``every`` s and record how much later than that the loop
        woke (a request arriving meanwhile waited as long for its turn), and the collector's
        pauses since (:meth:`_gc_callback` only notes them)."""
        loop = asyncio.get_running_loop()
        gc.callbacks.append(self._gc_callback)
        try:
            while True:
                asked = loop.time()
                await asyncio.sleep(every)
                self.loop_lag.observe(max(0.0, loop.time() - asked - every))
                while self._gc_pauses:
                    generation, seconds = self._gc_pauses.popleft()
                    self.gc_pause.labels(str(generation)).observe(seconds)
        finally:
            gc.callbacks.remove(self._gc_callback)

    def _gc_callback(self, phase: str, info: dict[str, int]) -> None:
        # Runs inside a collection, in whichever thread allocated: it touches no lock (a
        # metric's lock held by that same thread would never be released), only a deque.
        if phase == "start":
            self._gc_began = time.perf_counter()
        else:
            self._gc_pauses.append((info["generation"], time.perf_counter() - self._gc_began))

    def _db_error(self, context: Any) -> None:
        # SQLAlchemy's class (OperationalError, IntegrityError...): the same few names for
        # both drivers, where psycopg's own are hundreds.
        err = context.sqlalchemy_exception or context.original_exception
        self.db_errors.labels(type(err).__name__).inc()

    def observe(self, handler: web.RequestHandler, result: Any = None) -> None:
        """An answered POST to api/events: its outcome, latency and, for a stored envelope
        (``result``, the ``IngestResult``), its events by status (counted once, by the result)
        and the seconds cut."""
        status = handler.get_status()
        outcome = self._outcome.get(status)
        (outcome or self.envelopes.labels(str(status))).inc()
        self.ingest_seconds.observe(handler.request.request_time())
        if result is None:
            return
        for name, n in result.counts.items():
            if n:
                child = self._status.get(name)
                (child or self.events.labels(name)).inc(n)
        cut = 0.0
        for event in result.events:
            cut += event.get("cut_seconds") or 0.0
        if cut:
            self.cut_seconds.inc(cut)

    def refresh_store(self) -> None:
        """The store-wide gauges, by queries that read an index, not the tables."""
        with self.db.read() as conn:
            waiting = dict.fromkeys(("pending", "inflight"), 0)
            for status, count in conn.execute(
                sa.select(outbox.c.status, sa.func.count()).where(WAITING).group_by(outbox.c.status)
            ):
                waiting[status] = int(count)
            oldest = conn.execute(
                sa.select(outbox.c.created_at)
                .where(outbox.c.status == PENDING)
                .order_by(outbox.c.seq)
                .limit(1)
            ).scalar()
            settled = dict.fromkeys(("pending", "failed"), 0)
            for state, count in conn.execute(
                sa.select(jobs.c.state, sa.func.count())
                .where(jobs.c.state.in_(tuple(settled)))
                .group_by(jobs.c.state)
            ):
                settled[state] = int(count)
            dead = conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar()
        for status, count in waiting.items():
            self.outbox_events.labels(status).set(count)
        self.oldest_pending.set(0.0 if oldest is None else max(0.0, self.now() - oldest))
        for state, count in settled.items():
            self.jobs.labels(state).set(count)
        self.dead_letters.set(int(dead or 0))

    async def scrape(self) -> bytes:
        try:
            await asyncio.wait_for(asyncio.to_thread(self.refresh_store), SCRAPE_TIMEOUT)
        except Exception as err:  # the process's own metrics still go out
            LOG.warning("metrics: the store's gauges not refreshed (%s)", type(err).__name__)
            self.store_up.set(0)
        else:
            self.store_up.set(1)
        return generate_latest(self.registry)


class MetricsHandler(web.RequestHandler):
    def initialize(self, metrics: RelayMetrics, auth: HubAuth | None) -> None:
        self.metrics, self.auth = metrics, auth
        self.hub_name: str | None = None  # for the access log

    def check_xsrf_cookie(self) -> None:
        """Token only, no cookie read."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        err = kwargs.get("exc_info", (None, None))[1]
        message = err.log_message if isinstance(err, web.HTTPError) and err.log_message else ""
        self.finish(f"{status_code} {self._reason}: {message}\n")

    async def get(self) -> None:
        if self.auth is not None:
            await self._authenticate(self.auth)
        body = await self.metrics.scrape()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    async def _authenticate(self, auth: HubAuth) -> None:
        match = auth.auth_header_pat.match(self.request.headers.get("Authorization", ""))
        if match is None:
            raise web.HTTPError(
                401,
                f"send a hub token with the {METRICS_SCOPE!r} scope as 'Authorization: "
                "Bearer ...' (or set c.Relay.authenticate_prometheus = False)",
            )
        model = await auth.user_for_token(match.group(1).strip(), sync=False)
        if not model:
            raise web.HTTPError(401, "the hub does not know this token")
        self.hub_name = f"{model.get('kind', 'user')}:{model.get('name')}"
        if not auth.check_scopes({METRICS_SCOPE}, model):
            raise web.HTTPError(403, f"this token lacks the {METRICS_SCOPE!r} scope")


def routes(
    prefix: str, metrics: RelayMetrics, auth: HubAuth | None
) -> list[tuple[str, type[web.RequestHandler], dict[str, Any]]]:
    kw = {"metrics": metrics, "auth": auth}
    paths = dict.fromkeys((f"{prefix}metrics", "/metrics"))  # the prefix may be "/"
    return [(path, MetricsHandler, kw) for path in paths]
