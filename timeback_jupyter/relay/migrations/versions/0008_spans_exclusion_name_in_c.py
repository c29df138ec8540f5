"""The spans' exclusion keeps the name under the "C" collation, so no lookup by name plans on it.

Revision 0006's GiST index leads with a hash of the user name and keeps the name itself behind
it. A lookup by name alone (``user_name = ANY(...)``, the ingest's read of a batch's spans)
matches that second column, and PostgreSQL's cost model for GiST does not see that without the
hash every descent must visit the whole index: after an autoanalyze, the custom plans a
prepared statement makes took it over the (user_name, start_ms) btree. Measured in the
district benchmark: 35,000-70,000 pages and 400-860 ms for one batch's read, the ingest's
one-second stalls.

A clause only matches an index column of its own collation. Queries compare names under the
database's default collation, so with the name compared under "C" here none matches this
index any more, while the rule stays exactly the same (equality under any deterministic
collation is equality of the bytes). Only the exclusion itself uses the index.

On PostgreSQL the index is rebuilt under an exclusive lock on ``active_spans``, like 0006
(minutes for a district's year of spans). SQLite has no exclusion constraints: nothing changes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CONSTRAINT = "ex_active_spans_no_overlap"
HASH = "hashtextextended(user_name, 0) WITH ="
SPAN = "int8range(start_ms, end_ms) WITH &&"


def _replace(name: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE active_spans DROP CONSTRAINT {CONSTRAINT}")
    op.execute(
        f"ALTER TABLE active_spans ADD CONSTRAINT {CONSTRAINT} "
        f"EXCLUDE USING gist ({HASH}, {name} WITH =, {SPAN})"
    )


def upgrade() -> None:
    _replace('user_name COLLATE "C"')


def downgrade() -> None:
    _replace("user_name")
