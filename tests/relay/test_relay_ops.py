"""Operations on each backend, in process (the hub's side is in test_relay_ops_hub.py): the
probes on a real store made unreachable, the store-wide gauges following the outbox, database
errors counted, the pool knobs reaching the engine, and the cookie secret's checks."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from jupyterhub.services.auth import HubAuth
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from tornado import httpserver, netutil
from traitlets import TraitError

from timeback_jupyter.config import Timeback
from timeback_jupyter.relay.app import build_parts, make_app
from timeback_jupyter.relay.cookies import (
    COOKIE_SECRET_ENV,
    CookieSecretError,
    load_cookie_secret,
)
from timeback_jupyter.relay.database import RelayStoreError, head_revision, open_relay_db
from timeback_jupyter.relay.handlers import Face
from timeback_jupyter.relay.logs import setup_logging
from timeback_jupyter.relay.metrics import RelayMetrics
from timeback_jupyter.relay.schema import VERSION_TABLE
from timeback_jupyter.relay.settings import Relay as RelaySettings
from timeback_jupyter.testing.postgres import PostgresServer, require_bindir

from .conftest import ADA, CATALOG, T0, envelope, make_relay, run_id, tse

PREFIX = "/services/timeback-relay/"


@contextlib.asynccontextmanager
async def serving(relay, **kw) -> AsyncIterator[httpx.AsyncClient]:
    """The relay's tornado app on a loopback port. Its hub is nowhere: what is tested here
    never asks one (probes, open metrics) or refuses before asking (no token)."""
    auth = HubAuth(api_token="in-process-no-hub", api_url="http://127.0.0.1:9/hub/api")
    app = make_app(Face(relay, auth, "timeback-relay"), PREFIX, **kw)
    server = httpserver.HTTPServer(app)
    sockets = netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.stop()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def make_unreachable(relay, relay_db_url, request) -> None:
    """The store goes away under a running relay, as each backend can lose it."""
    url = sa.make_url(relay_db_url())
    if relay_db_url.backend == "postgresql":
        # The database dropped with its sessions killed: pooled connections die, new ones fail.
        request.getfixturevalue("postgres_server").drop_database(url.database)
    else:
        # The file's place taken by a directory (a volume gone): no connection can open it.
        # An open SQLite connection keeps its file handle, so the pool is emptied first, as a
        # failed connection would be.
        path = Path(url.database)
        shutil.move(path, path.with_suffix(".gone"))
        path.mkdir()
        relay.db.engine.dispose()


# -- probes -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_live_and_ready_on_a_store_at_head(relay):
    async with serving(relay) as client:
        live = await client.get(f"{PREFIX}api/health/live")
        ready = await client.get(f"{PREFIX}api/health/ready")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.headers["Cache-Control"] == "no-store"


@pytest.mark.asyncio
async def test_ready_is_503_with_the_reason_when_the_store_is_unreachable(
    relay, relay_db_url, request
):
    async with serving(relay) as client:
        assert (await client.get(f"{PREFIX}api/health/ready")).status_code == 200
        make_unreachable(relay, relay_db_url, request)
        ready = await client.get(f"{PREFIX}api/health/ready")
        live = await client.get(f"{PREFIX}api/health/live")
    assert ready.status_code == 503, ready.text
    # The reason and nothing about where the store is: no URL, host, database or password.
    assert ready.json() == {
        "status": "not ready",
        "service": "timeback-relay",
        "reason": "the database cannot be queried (OperationalError)",
    }
    assert live.status_code == 200  # a restart cures no database outage


@pytest.mark.asyncio
async def test_ready_and_ingest_across_a_postgresql_restart(clock):
    """A server of the test's own restarted (fast: every session ended) under a running
    relay: ready says why while it is down, and is ready again at the first probe after,
    as is ingest: the pooled connections the restart closed are replaced at checkout, with
    no ping per request to find them."""
    with PostgresServer(require_bindir()) as server:
        relay = make_relay(server.create_database("ops_restart"), clock)
        try:
            async with serving(relay) as client:
                ready = f"{PREFIX}api/health/ready"
                assert (await client.get(ready)).status_code == 200
                await relay.ingest(ADA, envelope(tse(run_id(), T0 + 15)))
                server.halt("fast")
                down = await client.get(ready)
                server.resume()
                up = await client.get(ready)
                answer = await relay.ingest(ADA, envelope(tse(run_id(), T0 + 30)))
        finally:
            relay.db.close()
    assert down.status_code == 503
    assert down.json()["reason"] == "the database cannot be queried (OperationalError)"
    assert up.status_code == 200, up.text
    assert answer.count("accepted") == 1


@pytest.mark.asyncio
async def test_ready_is_503_when_the_schema_is_not_this_relays(relay):
    with relay.db.write() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999_newer'"))
    async with serving(relay) as client:
        ready = await client.get(f"{PREFIX}api/health/ready")
    assert ready.status_code == 503
    assert ready.json()["reason"] == (
        f"the database schema is at 9999_newer, this relay needs {head_revision()}"
    )


@pytest.mark.asyncio
async def test_ready_is_503_when_the_pool_has_no_free_connection(postgres_stores, clock):
    from .conftest import make_relay

    relay = make_relay(postgres_stores(), clock)
    relay.db.close()
    relay.db = open_relay_db(postgres_stores(), pool_size=1, max_overflow=0, pool_timeout=0.3)
    try:
        async with serving(relay) as client:
            with relay.db.engine.connect():  # the only connection, held
                busy = await client.get(f"{PREFIX}api/health/ready")
            free = await client.get(f"{PREFIX}api/health/ready")
    finally:
        relay.db.close()
    assert busy.status_code == 503
    assert busy.json()["reason"] == "no free database connection in the pool"
    assert free.status_code == 200


def test_the_pool_settings_reach_the_engine(postgres_stores, tmp_path):
    catalog = tmp_path / "timeback.config.json"
    catalog.write_text(json.dumps(CATALOG))
    settings = RelaySettings(
        db_url=postgres_stores(),
        catalog=str(catalog),
        email_template="{name}@school.edu",
        sink="local",
        db_pool_size=3,
        db_max_overflow=2,
        db_pool_timeout=7.5,
    )
    parts = build_parts(settings, Timeback(), {})
    try:
        pool = parts.db.engine.pool
        assert (pool.size(), pool._max_overflow, pool._timeout) == (3, 2, 7.5)  # type: ignore[attr-defined]
    finally:
        parts.db.close()


def test_pool_settings_below_their_least_are_refused():
    with pytest.raises(Exception, match=r"c\.Relay\.db_pool_size must be at least 1"):
        RelaySettings(db_pool_size=0)
    with pytest.raises(Exception, match=r"c\.Relay\.db_pool_timeout must be at least 0"):
        RelaySettings(db_pool_timeout=-1.0)


# -- metrics of the store -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_store_gauges_follow_the_outbox_jobs_and_dead_letters(relay, clock):
    metrics = RelayMetrics(relay.db, relay.now)

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    metrics.refresh_store()
    assert value("timeback_relay_outbox_events", status="pending") == 0
    assert value("timeback_relay_outbox_oldest_pending_age_seconds") == 0
    queued_at = clock.t
    run = run_id()
    await relay.ingest(ADA, envelope(*(tse(run, T0 + 15 * k) for k in range(1, 4))))
    clock.t += 40
    metrics.refresh_store()
    assert value("timeback_relay_outbox_events", status="pending") == 3
    assert value("timeback_relay_outbox_oldest_pending_age_seconds") == clock.t - queued_at == 40

    claimed = relay.outbox.claim_batch(2)
    relay.outbox.record_job([claimed[0].event_id], "job-1")
    relay.outbox.job_failed("job-1", "Timeback's job failed", limit=1)
    relay.outbox.dead_letter([claimed[1].event_id], "refused for good")
    metrics.refresh_store()
    assert value("timeback_relay_outbox_events", status="pending") == 1
    assert value("timeback_relay_jobs", state="failed") == 1
    assert value("timeback_relay_jobs", state="pending") == 0
    assert value("timeback_relay_dead_letters") == len(relay.outbox.dead_letters()) == 2


@pytest.mark.asyncio
async def test_database_errors_are_counted_by_class(relay):
    metrics = RelayMetrics(relay.db, relay.now)
    with pytest.raises(RelayStoreError), relay.db.read() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    kind = "ProgrammingError" if relay.db.dialect == "postgresql" else "OperationalError"
    assert metrics.registry.get_sample_value("timeback_relay_db_errors_total", {"kind": kind}) == 1


@pytest.mark.asyncio
async def test_open_metrics_are_served_and_a_lost_store_is_reported(relay, relay_db_url, request):
    metrics = RelayMetrics(relay.db, relay.now)
    await relay.ingest(ADA, envelope(tse(run_id(), T0 + 15)))
    async with serving(relay, metrics=metrics, authenticate_prometheus=False) as client:
        prefixed = await client.get(f"{PREFIX}metrics")
        bare = await client.get("/metrics")
        make_unreachable(relay, relay_db_url, request)
        lost = await client.get("/metrics")
    assert prefixed.status_code == bare.status_code == 200
    assert prefixed.headers["Content-Type"] == CONTENT_TYPE_LATEST
    seen = samples(prefixed.text)
    assert seen[("timeback_relay_outbox_events", (("status", "pending"),))] == 1
    assert seen[("timeback_relay_store_up", ())] == 1
    assert ("process_cpu_seconds_total", ()) in seen
    after = samples(lost.text)
    assert lost.status_code == 200 and after[("timeback_relay_store_up", ())] == 0
    errors = [v for (name, _), v in after.items() if name == "timeback_relay_db_errors_total"]
    assert sum(errors) >= 1


@pytest.mark.asyncio
async def test_metrics_ask_for_a_token_by_default(relay):
    metrics = RelayMetrics(relay.db, relay.now)
    async with serving(relay, metrics=metrics) as client:
        answer = await client.get(f"{PREFIX}metrics")
    assert answer.status_code == 401
    assert "read:metrics" in answer.text and "timeback_relay" not in answer.text


# -- the cookie secret --------------------------------------------------------------------------

SECRET = "ab" * 32


def secret_file(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "cookie_secret"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_the_cookie_secret_comes_from_the_environment_first_then_the_file(tmp_path):
    path = secret_file(tmp_path, SECRET + "\n")
    assert load_cookie_secret(path, {}) == bytes.fromhex(SECRET)
    assert load_cookie_secret(path, {COOKIE_SECRET_ENV: "cd" * 32}) == bytes.fromhex("cd" * 32)
    assert load_cookie_secret("", {}) is None


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (SECRET, 0o644, r"may be read by others \(mode 644\): chmod 600"),
        (SECRET, 0o640, r"may be read by others \(mode 640\)"),
        ("ab" * 16, 0o600, r"holds 16 bytes, fewer than 32"),
        ("not hex at all", 0o600, r"is not hex"),
    ],
)
def test_a_bad_cookie_secret_file_is_refused_with_the_reason(tmp_path, text, mode, message):
    with pytest.raises(CookieSecretError, match=message):
        load_cookie_secret(secret_file(tmp_path, text, mode), {})


def test_a_missing_cookie_secret_file_or_short_variable_is_refused(tmp_path):
    with pytest.raises(CookieSecretError, match=r"cannot be read \(No such file or directory\)"):
        load_cookie_secret(str(tmp_path / "nowhere"), {})
    with pytest.raises(CookieSecretError, match=rf"\${COOKIE_SECRET_ENV} holds 4 bytes"):
        load_cookie_secret("", {COOKIE_SECRET_ENV: "abcdabcd"})


def test_the_relay_refuses_to_start_with_a_world_readable_secret_file(tmp_path):
    """Before anything listens or any store is opened: the message names the file and the fix."""
    path = secret_file(tmp_path, SECRET, 0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIMEBACK_", "JUPYTERHUB_"))}
    env.update(JUPYTERHUB_API_TOKEN="unused-no-hub", JUPYTER_CONFIG_DIR=str(tmp_path))
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "jupyter"),
            "timeback",
            "relay",
            f"--Relay.cookie_secret_file={path}",
            f"--Relay.db_url=sqlite:///{tmp_path / 'never.db'}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"c.Relay.cookie_secret_file '{path}' may be read by others (mode 644)" in done.stderr
    assert not (tmp_path / "never.db").exists()


# -- logs ---------------------------------------------------------------------------------------


def test_json_lines_and_tornados_own_records_lose_their_query_string(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("json", logging.INFO, "replica-x")
        logging.getLogger("tornado.application").error(
            "Uncaught exception %s\n%r",
            "GET /services/r/api/me?token=SECRET-IN-QUERY (127.0.0.1)",
            "HTTPServerRequest(uri='/services/r/api/me?token=SECRET-IN-QUERY')",
        )
        logging.getLogger("timeback_jupyter.relay").warning(
            "refused", extra={"method": "GET", "path": "/p", "status": 403, "user": None}
        )
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "SECRET-IN-QUERY" not in err
    tornado, relay = (json.loads(line) for line in err.splitlines())
    assert tornado["message"].startswith("Uncaught exception GET /services/r/api/me?... (")
    assert tornado["logger"] == "tornado.application" and tornado["level"] == "ERROR"
    assert relay == {
        "time": relay["time"],
        "level": "WARNING",
        "logger": "timeback_jupyter.relay",
        "message": "refused",
        "replica": "replica-x",
        "method": "GET",
        "path": "/p",
        "status": 403,
        "user": None,
    }


def test_an_auth_cache_of_zero_is_refused_it_would_keep_tokens_for_ever():
    """HubAuth's cache_max_age 0 is "for ever": a revoked student token would go on working."""
    assert RelaySettings(auth_cache_seconds=1).auth_cache_seconds == 1
    for bad in (0, -1, 86401):
        with pytest.raises(TraitError, match="auth_cache_seconds must be 1 to 86400"):
            RelaySettings(auth_cache_seconds=bad)
