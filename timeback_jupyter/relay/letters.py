"""What the relay's outbox and its jobs share: event ids checked, and the move of undelivered
events to the dead letters (kept for review, out of the queue) within a caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from ..model import InvalidInput
from .schema import dead_letters, outbox

ERROR_LENGTH = 2000  # a reason or an error kept, at most


def checked_ids(ids: Iterable[str]) -> list[str]:
    found = list(ids)
    if not all(isinstance(i, str) for i in found):
        raise InvalidInput("event_ids", "must be strings")
    return found


def move_to_dead_letters(conn: sa.Connection, ids: list[str], reason: str, at: float) -> None:
    """Events ``ids`` not yet delivered leave the queue for the dead letters, with ``reason``
    (a dead letter already there for the same id is replaced)."""
    if not ids:
        return
    undelivered = sa.and_(outbox.c.event_id.in_(ids), outbox.c.status != "sent")
    moving = sa.select(outbox.c.event_id).where(undelivered).scalar_subquery()
    conn.execute(sa.delete(dead_letters).where(dead_letters.c.event_id.in_(moving)))
    columns = ("event_id", "user_name", "run_id", "kind", "sensor", "payload")
    conn.execute(
        sa.insert(dead_letters).from_select(
            [*columns, "reason", "at"],
            sa.select(
                *(outbox.c[name] for name in columns),
                sa.literal(str(reason)[:ERROR_LENGTH], sa.Text),
                sa.literal(at, sa.Double),
            ).where(undelivered),
        )
    )
    conn.execute(sa.delete(outbox).where(undelivered))
