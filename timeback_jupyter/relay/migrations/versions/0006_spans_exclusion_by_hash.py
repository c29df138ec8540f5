"""The rule "one user's active spans never overlap", held by an index PostgreSQL can keep.

Revision 0003's constraint compared user names in GiST (``btree_gist``'s text): the union key
of an index page is the range of names under it, which with thousands of users overlaps almost
everywhere, so each insert's search for a conflict visited much of the index. Measured on this
machine, spans of 20,000 users written as the ingest writes them (batches of 26): ~365 us of
PostgreSQL CPU per span at 52,000 spans, growing with the table (the district's load writes
1,333 a second); without the constraint ~41 us of wall time per row.

The constraint here leads with a 64-bit hash of the name, an integer GiST sorts and prunes
well (~20 us of CPU per span, the same measure), and keeps the name itself beside it, so the
rule is exactly the old one: two spans conflict when their users' hashes AND names are equal
and their ranges overlap, which is when their names are equal and they overlap. The name is
kept under the same constraint name, so a refusal reads as before. SQLite has no exclusion
constraints (the placement, one writer at a time, holds the rule there): nothing changes.

Rebuilding the index reads every stored span under an exclusive lock on ``active_spans``: a
relay store of a district's year takes minutes, so run the upgrade in a quiet hour.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CONSTRAINT = "ex_active_spans_no_overlap"
SPAN = "int8range(start_ms, end_ms) WITH &&"


def _replace(columns: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE active_spans DROP CONSTRAINT {CONSTRAINT}")
    op.execute(
        f"ALTER TABLE active_spans ADD CONSTRAINT {CONSTRAINT} "
        f"EXCLUDE USING gist ({columns}, {SPAN})"
    )


def upgrade() -> None:
    _replace("hashtextextended(user_name, 0) WITH =, user_name WITH =")


def downgrade() -> None:
    _replace("user_name WITH =")
