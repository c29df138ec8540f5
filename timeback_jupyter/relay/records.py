"""What the relay shows: a student's own record, the admin's counts, one event's status."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .database import RelayDatabase
from .schema import completions, hub_users, received, runs

RECENT_REFUSALS = 20


def received_status(db: RelayDatabase, key: str) -> str | None:
    with db.read() as conn:
        return conn.execute(
            sa.select(received.c.status).where(received.c.key == key)
        ).scalar_one_or_none()


def user_record(db: RelayDatabase, name: str) -> dict[str, Any]:
    with db.read() as conn:
        user = conn.execute(sa.select(hub_users).where(hub_users.c.name == name)).first()
        counts: dict[str, int] = dict(
            conn.execute(
                sa.select(received.c.status, sa.func.count())
                .where(received.c.user_name == name)
                .group_by(received.c.status)
            ).all()
        )
        run_rows = conn.execute(
            sa.select(runs).where(runs.c.user_name == name).order_by(runs.c.first_seen)
        ).all()
        done = {
            row.run_id: row
            for row in conn.execute(sa.select(completions).where(completions.c.user_name == name))
        }
        refusals = conn.execute(
            sa.select(received.c.event_id, received.c.kind, received.c.reason, received.c.at)
            .where(received.c.user_name == name, received.c.status == "refused")
            .order_by(received.c.at.desc())
            .limit(RECENT_REFUSALS)
        ).all()
    return {
        "user": name,
        "active_seconds": 0.0 if user is None else user.active_ms / 1000,
        "cut_seconds": 0.0 if user is None else user.cut_ms / 1000,
        "events": {s: int(counts.get(s, 0)) for s in ("accepted", "refused")},
        "runs": [
            {
                "run_id": r.run_id,
                "course": r.course,
                "activity": r.activity,
                "attempt": r.attempt,
                "active_seconds": r.active_ms / 1000,
                "cut_seconds": r.cut_ms / 1000,
                "completed": r.run_id in done,
            }
            for r in run_rows
        ],
        "completions": [
            {
                "run_id": c.run_id,
                "xp": c.xp,
                "rule": c.outcome.get("rule"),
                "reasons": c.outcome.get("reasons", []),
                "attempt": c.outcome.get("attempt"),
                "at": c.at,
            }
            for c in sorted(done.values(), key=lambda c: c.at)
        ],
        "refused": [
            {"id": r.event_id, "kind": r.kind, "reason": r.reason, "at": r.at} for r in refusals
        ],
    }


def relay_counts(db: RelayDatabase) -> dict[str, Any]:
    with db.read() as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                sa.select(received.c.status, sa.func.count()).group_by(received.c.status)
            ).all()
        )
        users, active, cut = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(hub_users.c.active_ms), 0),
                sa.func.coalesce(sa.func.sum(hub_users.c.cut_ms), 0),
            )
        ).one()
        done = conn.execute(sa.select(sa.func.count()).select_from(completions)).scalar_one()
    return {
        "users": int(users),
        "events": {s: int(counts.get(s, 0)) for s in ("accepted", "refused")},
        "completions": int(done),
        "active_seconds": int(active) / 1000,
        "cut_seconds": int(cut) / 1000,
    }
