"""Several relay replicas on one database: who claimed each inflight event, and one OAuth
token for all of them.

``outbox.claimed_by`` is the claiming replica's key (``relay/replicas.py``: the key of a
PostgreSQL advisory lock the replica holds while it lives). A replica settles only its own
sends of unknown outcome and those of replicas gone; a live replica's batch in flight is
neither looked up nor sent again by the others. NULL: claimed by a relay before this revision,
or on SQLite (one relay process), settled by whoever finds it.

``relay_tokens`` holds the access token of each (token URL, client id), with its expiry: the
replica that finds it expired fetches the next one (``fetching_until`` keeps the others
waiting for it meanwhile), so N replicas ask the token endpoint once, not N times.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("claimed_by", sa.Integer, nullable=True))
    op.create_table(
        "relay_tokens",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("access_token", sa.Text, nullable=True),
        sa.Column("expires_at", sa.Double, nullable=False, server_default="0"),
        sa.Column("fetching_until", sa.Double, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("relay_tokens")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_by")
