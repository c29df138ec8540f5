"""PostgreSQL holds the rule itself: one user's active spans never overlap.

The ingest already places spans only in free time, one transaction per user at a time (the
user's row locked); an exclusion constraint makes the database refuse any overlapping span
whatever writes it (another relay version, a bug, a hand-made INSERT). Spans are [start, end)
in milliseconds: ``int8range`` is half-open too, so spans that only touch are allowed.

``btree_gist`` gives GiST the ``=`` on the user's name; it is a trusted extension
(PostgreSQL >= 13), so the database's owner may create it, no superuser needed. SQLite has no
exclusion constraints: there the ingest's placement (one writer at a time) holds the rule
alone, and this revision changes nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CONSTRAINT = "ex_active_spans_no_overlap"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute(
        f"ALTER TABLE active_spans ADD CONSTRAINT {CONSTRAINT} "
        "EXCLUDE USING gist (user_name WITH =, int8range(start_ms, end_ms) WITH &&)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # The extension stays: other tables of the database may use it.
    op.execute(f"ALTER TABLE active_spans DROP CONSTRAINT {CONSTRAINT}")
