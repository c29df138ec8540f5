"""PostgreSQL's plans for the relay's hottest statements stay on indexes as tables grow.

A prepared statement's generic plan cannot see its parameters, and PostgreSQL counts any JSON
recordset as 100 rows: measured at the district's rate, the claim walked the outbox's primary
key past every event already sent (~13 ms a claim at 100,000 events), and each batch's time
updates scanned every hub user (~2.4 ms a batch at 20,000). Here the tables are filled as a
district's would be, and the plans PostgreSQL makes for the statements as the relay sends
them (generic, as a prepared statement's plan ends up) are read back.
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from benchmarks.district_parts import LAG_SQL
from timeback_jupyter.relay import outbox_sql
from timeback_jupyter.relay.database import open_relay_db
from timeback_jupyter.relay.outbox import events_query
from timeback_jupyter.relay.schema import outbox
from timeback_jupyter.relay.statements import batch_write

SENT, PENDING, USERS = 30_000, 40, 5_000


def _generic_plan(
    conn: Any, text: str, values: dict[str, Any], types: dict[str, str] | None = None
) -> str:
    """The generic plan of ``text`` (``%(name)s`` parameters, each name one parameter, of the
    SQL type in ``types`` where PostgreSQL cannot infer it) for ``values`` by name."""
    import psycopg

    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", text)))
    prepared = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", text)
    declared = f"({', '.join((types or {}).get(n, 'unknown') for n in names)})" if types else ""
    cur = psycopg.ClientCursor(conn.connection.driver_connection)
    cur.execute("SET plan_cache_mode = force_generic_plan")
    cur.execute(f"PREPARE probe{declared} AS {prepared}")
    try:
        marks = f"({', '.join(['%s'] * len(names))})" if names else ""
        cur.execute(f"EXPLAIN EXECUTE probe{marks}", [values[n] for n in names])
        return "\n".join(row[0] for row in cur.fetchall())
    finally:
        cur.execute("DEALLOCATE probe")
        cur.execute("RESET plan_cache_mode")


def test_a_claim_starts_at_the_first_pending_event_however_many_were_sent(postgres_stores):
    with open_relay_db(postgres_stores()) as db:
        with db.write() as conn:
            conn.exec_driver_sql(
                "INSERT INTO outbox (event_id, user_name, kind, sensor, payload, status, "
                "attempts, created_at, job_failures) SELECT 'e' || g, 'u', 'time_spent', 's', "
                "'{}', CASE WHEN g > %(sent)s THEN 'pending' ELSE 'sent' END, 1, g, 0 "
                "FROM generate_series(1, %(all)s) g",
                {"sent": SENT, "all": SENT + PENDING},
            )
        with db.write() as conn:
            conn.exec_driver_sql("ANALYZE outbox")
            first = _generic_plan(conn, _pg(outbox_sql.FIRST_SENSOR), {"param_1": 1})
            # with the values SQLAlchemy binds itself in the claim's SET
            given = {"p_sensor": "s", "p_limit": 200, "p_now": 1.0, "p_key": 7,
                     "status": "inflight", "attempts_1": 1, "job_id": None}  # fmt: skip
            claim = _generic_plan(conn, _pg(outbox_sql.CLAIM), given)
            texts = _generic_plan(conn, _pg(outbox_sql.CLAIM_TEXTS), {**given, "param_1": 1})
    # the claim's rows come from the pending events' index, not the primary key's walk
    assert "ix_outbox_pending" in first and "outbox_pkey" not in first, first
    for plan in (claim, texts):
        assert "Index Scan using ix_outbox_pending" in plan, plan


def _pg(statement: Any) -> str:
    return str(statement.compile(dialect=postgresql.dialect()))


def test_a_batchs_time_is_added_through_the_indexes_however_many_users(postgres_stores):
    with open_relay_db(postgres_stores()) as db:
        with db.write() as conn:
            conn.exec_driver_sql(
                "INSERT INTO hub_users (name, first_seen) "
                "SELECT 'd' || g, 0 FROM generate_series(1, %(n)s) g",
                {"n": USERS},
            )
            conn.exec_driver_sql(
                "INSERT INTO runs (user_name, run_id, course, activity, attempt, first_seen) "
                "SELECT 'd' || (g %% %(n)s), md5(g::text)::uuid::text, 'c', 'a', 1, 0 "
                "FROM generate_series(1, %(runs)s) g",
                {"n": USERS, "runs": 2 * USERS},
            )
        with db.write() as conn:
            conn.exec_driver_sql("ANALYZE hub_users")
            conn.exec_driver_sql("ANALYZE runs")
            text = batch_write((), ("runs", "hub_users"))
            users = [f"d{n}" for n in (3, 99, 1234)]
            runs = [{"p_user_name": u, "p_run_id": "r", "p_active": 1, "p_cut": 0} for u in users]
            totals = [{"p_name": u, "p_active": 1, "p_cut": 0} for u in users]
            plan = _generic_plan(conn, text, {"a0": json.dumps(runs), "a1": json.dumps(totals)})
            conn.exec_driver_sql(text, {"a0": json.dumps(runs), "a1": json.dumps(totals)})
            added = conn.execute(
                sa.text("SELECT count(*) FROM hub_users WHERE active_ms = 1")
            ).scalar_one()
    assert "Seq Scan on hub_users" not in plan and "Seq Scan on runs" not in plan, plan
    assert added == len(users)  # the statement still adds to exactly the batch's users


INFLIGHT_JOBS = 20


def _fill_outbox(conn: Any) -> None:
    """SENT events delivered, then INFLIGHT_JOBS jobs of 10 inflight events, then PENDING."""
    conn.exec_driver_sql(
        "INSERT INTO outbox (event_id, user_name, kind, sensor, payload, status, attempts, "
        "created_at, job_failures, job_id) SELECT 'e' || g, 'u', 'time_spent', 's', '{}', "
        "CASE WHEN g <= %(sent)s THEN 'sent' WHEN g <= %(carried)s THEN 'inflight' "
        "ELSE 'pending' END, 1, g, 0, 'job-' || (g / 10) FROM generate_series(1, %(all)s) g",
        {
            "sent": SENT,
            "carried": SENT + 10 * INFLIGHT_JOBS,
            "all": SENT + 10 * INFLIGHT_JOBS + PENDING,
        },
    )
    conn.exec_driver_sql("UPDATE outbox SET job_id = NULL WHERE status = 'pending'")


def test_inflight_events_and_their_jobs_are_read_from_their_partial_indexes(postgres_stores):
    """A job's events (its confirm, its list) and the waiting count read indexes that hold
    inflight (and pending) events alone, whatever the outbox's history (revision 0007)."""
    waiting = sa.select(sa.func.count()).select_from(outbox).where(outbox_sql.WAITING)
    # with the values SQLAlchemy binds itself in the SETs
    confirming = {"p_job": "job-3005", "p_now": 1.0, "param_1": "completed",
                  "param_2": "sent", "param_3": None}  # fmt: skip
    # as the relay's connection renders its constant when it runs it
    inflight_payloads = str(
        events_query("inflight").compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
    )
    with open_relay_db(postgres_stores()) as db:
        with db.write() as conn:
            _fill_outbox(conn)
        with db.write() as conn:
            conn.exec_driver_sql("ANALYZE outbox")
            plans = {
                "confirm": _generic_plan(conn, _pg(outbox_sql.CONFIRM), confirming),
                "job events": _generic_plan(conn, _pg(outbox_sql.JOB_EVENTS), {"p_job": "x"}),
                "waiting": _generic_plan(conn, _pg(waiting), {}),
                "benchmark lag": _generic_plan(conn, LAG_SQL, {}),
                "inflight payloads": _generic_plan(conn, inflight_payloads, {}),
            }
            counted = conn.execute(waiting).scalar_one()
    assert "ix_outbox_job_inflight" in plans["confirm"], plans["confirm"]
    assert "ix_outbox_job_inflight" in plans["job events"], plans["job events"]
    assert "ix_outbox_inflight" in plans["inflight payloads"], plans["inflight payloads"]
    for name in ("ix_outbox_pending", "ix_outbox_inflight"):
        assert name in plans["waiting"], plans["waiting"]
        assert name in plans["benchmark lag"], plans["benchmark lag"]
    for plan in plans.values():
        assert "Seq Scan on outbox" not in plan, plan
    assert counted == 10 * INFLIGHT_JOBS + PENDING


def test_sqlite_reads_a_jobs_events_from_the_partial_index(tmp_path):
    with open_relay_db(f"sqlite:///{tmp_path / 'relay.sqlite3'}") as db, db.write() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN "
            + str(outbox_sql.JOB_EVENTS.compile(db.engine)).replace("?", "'job-1'")
        ).all()
    assert "ix_outbox_job_inflight" in " ".join(str(row) for row in plan), plan


SPAN_USERS, SPANS_EACH = 20_000, 5


def _custom_plan(conn: Any, text: str, values: dict[str, Any]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of ``text`` with its values in the plan (a custom plan: what
    a prepared statement runs for its first five executions after any ANALYZE of its tables)."""
    import psycopg

    cur = psycopg.ClientCursor(conn.connection.driver_connection)
    cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, COSTS OFF) {text}", values)
    return "\n".join(row[0] for row in cur.fetchall())


def test_a_batchs_spans_are_read_from_the_user_start_index_not_the_exclusion(postgres_stores):
    """The exclusion's GiST index holds the name, but behind its hash: a lookup by name alone
    must search all of it (measured in the district: 35,000-70,000 pages, 400-860 ms, in the
    custom plans made after each autoanalyze). Whatever the statistics, the batch's read takes
    the (user_name, start_ms) btree."""
    from timeback_jupyter.relay.statements import READ_BATCH

    with open_relay_db(postgres_stores()) as db:
        with db.write() as conn:
            # every student's last few heartbeats: 15-s spans, 60 s apart
            conn.exec_driver_sql(
                "INSERT INTO active_spans (user_name, start_ms, end_ms, event_key) "
                "SELECT 'd' || u, 1000000 + k * 60000 + u, 1015000 + k * 60000 + u, "
                "'k' || u || '-' || k FROM generate_series(1, %(users)s) u, "
                "generate_series(1, %(each)s) k",
                {"users": SPAN_USERS, "each": SPANS_EACH},
            )
        with db.write() as conn:
            conn.exec_driver_sql("ANALYZE active_spans")
            users = [f"d{n}" for n in range(1, SPAN_USERS, SPAN_USERS // 32)]
            last = 1000000 + SPANS_EACH * 60000
            values = {"keys": "[]", "users": "[]", "runs": "[]", "span_users": json.dumps(users),
                      "lo": last, "hi": last + 60000, "longest": 600000}  # fmt: skip
            times = dict.fromkeys(("lo", "hi", "longest"), "bigint")
            generic = _generic_plan(conn, READ_BATCH, values, times)
            custom = _custom_plan(conn, READ_BATCH, values)
            spans = conn.exec_driver_sql(READ_BATCH, values).one()[3]
    for plan in (generic, custom):
        assert "ex_active_spans_no_overlap" not in plan, plan
        assert "ix_active_spans_user_start" in plan, plan
    assert len(spans) == len(users)  # each user's span ending after lo, exactly
