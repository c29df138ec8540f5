"""The relay's tables, as SQLAlchemy Core: one schema for SQLite now and PostgreSQL next.

Times of active spans are integer milliseconds, so the rule "never two overlapping spans of one
user" is exact arithmetic, not float comparison. Other times are POSIX seconds (double).
Changing a table means a new Alembic revision in ``migrations/versions`` (the schema here is
what the newest revision makes; ``tests/relay/test_relay_db.py`` holds them equal).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

# Every event a user's server sent with an id, keyed per user (see ingest.stored_id): its
# status, the hash of the body first received, and what the relay made of it.
received = sa.Table(
    "received",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),  # urn:uuid:<uuid5(user, id)>
    sa.Column("user_name", sa.String(255), nullable=False),
    sa.Column("event_id", sa.String(2000), nullable=False),  # as the server sent it
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # accepted | refused
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("run_id", sa.String(36), nullable=True),
    sa.Column("active_seconds", sa.Double, nullable=True),  # forwarded
    sa.Column("cut_seconds", sa.Double, nullable=True),
    sa.Column("xp", sa.Double, nullable=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.Index("ix_received_user_at", "user_name", "at"),
)

# Hub users the relay has seen: the row each ingest locks (FOR UPDATE on PostgreSQL), so one
# user's events are placed one transaction at a time.
hub_users = sa.Table(
    "hub_users",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("first_seen", sa.Double, nullable=False),
    sa.Column("active_ms", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cut_ms", sa.BigInteger, nullable=False, server_default="0"),
)

# The free-of-overlap ranges of forwarded active time, per user. On PostgreSQL the database
# itself refuses an overlap (an exclusion constraint, 0003 and 0006); SQLite has none, and the
# ingest's placement, one writer at a time, holds the rule there.
active_spans = sa.Table(
    "active_spans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_name", sa.String(255), nullable=False),
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("end_ms", sa.BigInteger, nullable=False),
    sa.Column("event_key", sa.String(64), nullable=False),
    sa.CheckConstraint("end_ms > start_ms", name="ck_active_spans_positive"),
    sa.Index("ix_active_spans_user_start", "user_name", "start_ms"),
    # Led by a 64-bit hash of the name, which GiST prunes well (the name alone, 0003, made
    # each insert search much of the index); the name beside it keeps the rule exact (0006),
    # compared under "C" so that no query's lookup by name can choose this index (0008).
    postgresql.ExcludeConstraint(
        (sa.func.hashtextextended(sa.column("user_name"), 0), "="),
        (sa.column("user_name").collate("C"), "="),
        (sa.func.int8range(sa.column("start_ms"), sa.column("end_ms")), "&&"),
        using="gist",
        name="ex_active_spans_no_overlap",
    ).ddl_if(dialect="postgresql"),
)

# Runs as the relay counts them: the attempt is the nth distinct run of a user on an activity.
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("user_name", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.String(36), primary_key=True),
    sa.Column("course", sa.String(200), nullable=False),  # the course's name (code or Math G3)
    sa.Column("activity", sa.String(200), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("first_seen", sa.Double, nullable=False),
    sa.Column("active_ms", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cut_ms", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_runs_user_activity", "user_name", "course", "activity"),
)

# One completion per run, held by the database.
completions = sa.Table(
    "completions",
    metadata,
    sa.Column("user_name", sa.String(255), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("event_key", sa.String(64), nullable=False),
    sa.Column("xp", sa.Double, nullable=False),
    sa.Column("outcome", sa.JSON, nullable=False),  # xp.XpOutcome.to_dict() + catalog note
    sa.Column("at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("user_name", "run_id", name="pk_completions"),
)

# The partial indexes' conditions (revision 0007), the same on both backends.
_INFLIGHT = sa.text("status = 'inflight'")
_CARRIED = sa.text("status = 'inflight' AND job_id IS NOT NULL")

# The events for Timeback, as the drainer takes them (delivery.ports.OutboxPort).
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("user_name", sa.String(255), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("sensor", sa.String(2000), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("sent_at", sa.Double, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    # Timeback's job carrying the event while it is inflight and accepted (relay/jobs.py).
    sa.Column("job_id", sa.String(500), nullable=True),
    # When its last send began: after an unknown outcome, how long a job may still store it.
    sa.Column("claimed_at", sa.Double, nullable=True),
    sa.Column("job_failures", sa.Integer, nullable=False, server_default="0"),
    # The replica that claimed it (relay/replicas.py); NULL on SQLite or before 0004.
    sa.Column("claimed_by", sa.Integer, nullable=True),
    # The inflight events alone, and the jobs carrying them (revision 0007: each update of a
    # row enters every index its new version qualifies for; whole-table ones took 17 entries
    # an event, these 12).
    sa.Index("ix_outbox_inflight", "seq", postgresql_where=_INFLIGHT, sqlite_where=_INFLIGHT),
    sa.Index("ix_outbox_job_inflight", "job_id", postgresql_where=_CARRIED, sqlite_where=_CARRIED),
    # The pending events alone, where every claim starts (revision 0005).
    sa.Index(
        "ix_outbox_pending",
        "seq",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
)

# Timeback's jobs: every one the relay was answered with, and how it ended.
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.String(500), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("events", sa.Integer, nullable=False),  # how many it carried when sent
    sa.Column("submitted_at", sa.Double, nullable=False),
    sa.Column("settled_at", sa.Double, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),  # why it failed
    sa.CheckConstraint("state IN ('pending', 'completed', 'failed')", name="ck_jobs_state"),
    sa.Index("ix_jobs_state_submitted", "state", "submitted_at"),
)

# One OAuth access token per (token URL, client) for every replica (relay/tokens.py).
relay_tokens = sa.Table(
    "relay_tokens",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),  # sha256 of token URL + client id
    sa.Column("access_token", sa.Text, nullable=True),
    sa.Column("expires_at", sa.Double, nullable=False, server_default="0"),
    # A replica fetching the next token until then; the others wait for it.
    sa.Column("fetching_until", sa.Double, nullable=False, server_default="0"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("user_name", sa.String(255), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("sensor", sa.String(2000), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
)

TABLES = tuple(metadata.tables)
# Alembic's version table, under a name of our own: a relay store may share a PostgreSQL
# database (or be pointed by mistake at jupyterhub.sqlite), whose alembic_version is not ours.
VERSION_TABLE = "timeback_relay_version"
