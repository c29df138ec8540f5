"""The relay's first schema: received events, users, active spans, runs, completions, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "received",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("event_id", sa.String(2000), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("active_seconds", sa.Double, nullable=True),
        sa.Column("cut_seconds", sa.Double, nullable=True),
        sa.Column("xp", sa.Double, nullable=True),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_index("ix_received_user_at", "received", ["user_name", "at"])
    op.create_table(
        "hub_users",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("first_seen", sa.Double, nullable=False),
        sa.Column("active_ms", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cut_ms", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "active_spans",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("event_key", sa.String(64), nullable=False),
        sa.CheckConstraint("end_ms > start_ms", name="ck_active_spans_positive"),
    )
    op.create_index("ix_active_spans_user_start", "active_spans", ["user_name", "start_ms"])
    op.create_table(
        "runs",
        sa.Column("user_name", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("course", sa.String(200), nullable=False),
        sa.Column("activity", sa.String(200), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("first_seen", sa.Double, nullable=False),
        sa.Column("active_ms", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cut_ms", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_runs_user_activity", "runs", ["user_name", "course", "activity"])
    op.create_table(
        "completions",
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("event_key", sa.String(64), nullable=False),
        sa.Column("xp", sa.Double, nullable=False),
        sa.Column("outcome", sa.JSON, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("user_name", "run_id", name="pk_completions"),
    )
    op.create_table(
        "outbox",
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
    )
    op.create_index("ix_outbox_status_seq", "outbox", ["status", "seq"])
    op.create_table(
        "dead_letters",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("sensor", sa.String(2000), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "dead_letters", "outbox", "completions", "runs", "active_spans", "hub_users", "received"
    ):  # fmt: skip
        op.drop_table(table)
