"""The ingest's SQL, built once: a statement made per call costs SQLAlchemy four times as much
as the same statement executed with new parameters (measured: 376 vs 97 µs a select here).

A batch's reads are set-based (:mod:`.state`): on PostgreSQL a list is one array parameter
(``= ANY(...)``: the same statement text whatever its length, so psycopg prepares it once); on
SQLite an ``IN (...)`` list (in-process: no statement cache to keep warm).
Parameters are named ``p_*`` so they never shadow a column in an INSERT or UPDATE.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .dialect_sql import bind, per_dialect
from .schema import active_spans, completions, hub_users, metadata, outbox, received, runs

_p = bind


# A batch's users, locked in name order (PostgreSQL locks the rows as the sort returns them).
LOCK_USERS = per_dialect(
    lambda within: (
        sa.select(hub_users.c.name)
        .where(within(hub_users.c.name, "p_users"))
        .order_by(hub_users.c.name)
        .with_for_update()
    )
)
# A user's first row, or nothing if another transaction (another relay process) made it first:
# ON CONFLICT DO NOTHING waits for that one to commit instead of failing on the key. Per
# dialect, as each spells it; both SQLite (>= 3.24) and PostgreSQL have it.
INSERT_USER = {
    dialect.__name__.rsplit(".", 1)[-1]: dialect.insert(hub_users).on_conflict_do_nothing(
        index_elements=[hub_users.c.name]
    )
    for dialect in (postgresql, sqlite)
}

SEEN_MANY = per_dialect(
    lambda within: sa.select(
        received.c.key, received.c.body_sha256, received.c.status, received.c.reason
    ).where(within(received.c.key, "p_keys"))
)
# A superset of a batch's (user, run) pairs; the caller keeps its own.
RUNS_MANY = per_dialect(
    lambda within: sa.select(runs).where(
        within(runs.c.user_name, "p_users"), within(runs.c.run_id, "p_runs")
    )
)
RUNS_OF_ACTIVITY = (
    sa.select(sa.func.count())
    .select_from(runs)
    .where(
        runs.c.user_name == _p("p_user"),
        runs.c.course == _p("p_course"),
        runs.c.activity == _p("p_activity"),
    )
)
COMPLETIONS_MANY = per_dialect(
    lambda within: sa.select(completions.c.user_name, completions.c.run_id).where(
        within(completions.c.user_name, "p_users"), within(completions.c.run_id, "p_runs")
    )
)
# The spans the batch's windows in [p_lo, p_hi) may meet: none is longer than p_longest, so
# the index on (user_name, start_ms) is read over a short range only.
SPANS_NEAR_MANY = per_dialect(
    lambda within: sa.select(
        active_spans.c.user_name, active_spans.c.start_ms, active_spans.c.end_ms
    ).where(
        within(active_spans.c.user_name, "p_users"),
        active_spans.c.start_ms >= _p("p_lo") - _p("p_longest"),
        active_spans.c.start_ms < _p("p_hi"),
        active_spans.c.end_ms > _p("p_lo"),
    )
)

# A PostgreSQL batch's four reads as one statement: lists come in as JSON arrays (text), rows go
# out as JSON arrays of arrays (psycopg's C json loader); the same text whatever the lengths.
_LIST = "ANY(ARRAY(SELECT json_array_elements_text(%({})s::json)))"
READ_BATCH = f"""SELECT
 (SELECT json_agg(json_build_array(key, body_sha256, status, reason)) FROM received
  WHERE key = {_LIST.format("keys")}),
 (SELECT json_agg(json_build_array(user_name, run_id, course, activity, attempt, active_ms,
  cut_ms)) FROM runs WHERE user_name = {_LIST.format("users")} AND run_id = {_LIST.format("runs")}),
 (SELECT json_agg(json_build_array(user_name, run_id)) FROM completions
  WHERE user_name = {_LIST.format("users")} AND run_id = {_LIST.format("runs")}),
 (SELECT json_agg(json_build_array(user_name, start_ms, end_ms)) FROM active_spans
  WHERE user_name = {_LIST.format("span_users")} AND start_ms >= %(lo)s - %(longest)s
  AND start_ms < %(hi)s AND end_ms > %(lo)s)"""

# Each table's INSERT for executemany (SQLite; PostgreSQL inserts a batch from arrays, state.py).
INSERTS = {
    table.name: sa.insert(table) for table in (received, runs, active_spans, completions, outbox)
}
# Added time per row of a batch, SQLite's way (PostgreSQL: one UPDATE ... FROM unnest, state.py).
ADD_TIME = {
    "runs": sa.update(runs)
    .where(runs.c.user_name == _p("p_user_name"), runs.c.run_id == _p("p_run_id"))
    .values(active_ms=runs.c.active_ms + _p("p_active"), cut_ms=runs.c.cut_ms + _p("p_cut")),
    "hub_users": sa.update(hub_users)
    .where(hub_users.c.name == _p("p_name"))
    .values(
        active_ms=hub_users.c.active_ms + _p("p_active"),
        cut_ms=hub_users.c.cut_ms + _p("p_cut"),
    ),
}


# A PostgreSQL batch's writes, one statement: which columns identify the row time is added to.
ADD_KEYS = {"runs": ("user_name", "run_id"), "hub_users": ("name",)}


def _pg_type(column: sa.Column[Any]) -> str:
    return str(column.type.compile(dialect=postgresql.dialect()))


@functools.cache
def batch_write(inserts: tuple[tuple[str, tuple[str, ...]], ...], adds: tuple[str, ...]) -> str:
    """One statement for all of a batch's writes on PostgreSQL: an INSERT per table in
    ``inserts`` (its name and columns) from ``json_to_recordset(%(w<i>)s)``, and per table in
    ``adds`` an UPDATE adding ``p_active``/``p_cut`` to the rows named by :data:`ADD_KEYS`
    (``%(a<i>)s``, keys ``p_<column>``). Data-modifying WITH clauses always run to completion,
    each on its own rows (the runs added to are never the runs inserted), and every constraint
    is checked as for separate statements. Few shapes exist, so psycopg prepares each once."""
    parts = []
    for i, (name, columns) in enumerate(inserts):
        table = metadata.tables[name]
        shape = ", ".join(f"{c} {_pg_type(table.c[c])}" for c in columns)
        cols = ", ".join(columns)
        parts.append(
            f"w{i} AS (INSERT INTO {name} ({cols}) SELECT {cols} "
            f"FROM json_to_recordset(%(w{i})s::json) AS x({shape}))"
        )
    for i, name in enumerate(adds):
        table, key = metadata.tables[name], ADD_KEYS[name]
        shape = ", ".join(f"p_{k} {_pg_type(table.c[k])}" for k in key)
        match = " AND ".join(f"{name}.{k} = v.p_{k}" for k in key)
        # The rows' first keys again as a list the table's index takes: the planner counts
        # any recordset as 100 rows, and against that a hash join over the whole table looks
        # cheaper than 100 index probes (measured: hub_users of 20,000 scanned per batch).
        first = f"ANY(ARRAY(SELECT x->>'p_{key[0]}' FROM json_array_elements(%(a{i})s::json) x))"
        parts.append(
            f"a{i} AS (UPDATE {name} SET active_ms = {name}.active_ms + v.p_active, "
            f"cut_ms = {name}.cut_ms + v.p_cut FROM json_to_recordset(%(a{i})s::json) "
            f"AS v({shape}, p_active BIGINT, p_cut BIGINT) WHERE {match} "
            f"AND {name}.{key[0]} = {first})"
        )
    return f"WITH {', '.join(parts)} SELECT 1"
