"""Timeback's jobs: the job carrying each inflight event, when its send began, and the jobs.

An event Timeback accepted stays inflight with its job's id until that job completes (sent) or
fails (pending again, or a dead letter after too many); ``claimed_at`` times the wait after a
send of unknown outcome (``delivery/__init__.py``). The server's store got the same in its
schema version 2 (``store/migrations.py``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN of a nullable column, or one with a constant default, is plain SQL on both
    # SQLite and PostgreSQL: no table copy, the rows stay as they are.
    op.add_column("outbox", sa.Column("job_id", sa.String(500), nullable=True))
    op.add_column("outbox", sa.Column("claimed_at", sa.Double, nullable=True))
    op.add_column(
        "outbox", sa.Column("job_failures", sa.Integer, nullable=False, server_default="0")
    )
    # A send of unknown outcome left by the previous relay: when it began is not known, so its
    # wait counts from the upgrade (the longer wait, never the shorter). A bound value, not a
    # database's own clock function: the same statement on both databases.
    outbox = sa.table("outbox", sa.column("status", sa.String), sa.column("claimed_at", sa.Double))
    op.execute(outbox.update().where(outbox.c.status == "inflight").values(claimed_at=time.time()))
    op.create_index("ix_outbox_job_id", "outbox", ["job_id"])
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(500), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("submitted_at", sa.Double, nullable=False),
        sa.Column("settled_at", sa.Double, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.CheckConstraint("state IN ('pending', 'completed', 'failed')", name="ck_jobs_state"),
    )
    op.create_index("ix_jobs_state_submitted", "jobs", ["state", "submitted_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_state_submitted", table_name="jobs")
    op.drop_table("jobs")
    # Batch mode: SQLite copies the table (it cannot drop an indexed column in place);
    # PostgreSQL runs the plain ALTERs.
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_job_id")
        batch.drop_column("job_failures")
        batch.drop_column("claimed_at")
        batch.drop_column("job_id")
