"""What the relay's prebuilt statements (:mod:`.statements`, :mod:`.outbox_sql`) share: a
list parameter per dialect, so a statement is built once for each.

On PostgreSQL a list is one array parameter (``= ANY(...)``: one statement text whatever the
list's length, so psycopg prepares it once and PostgreSQL plans it once); on SQLite an
``IN (...)`` list (in-process: no statement cache to keep warm).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

bind = sa.bindparam
Within = Callable[[sa.Column[Any], str], sa.ColumnElement[bool]]


def in_list(column: sa.Column[Any], name: str) -> sa.ColumnElement[bool]:
    return column.in_(sa.bindparam(name, expanding=True))


def any_array(column: sa.Column[Any], name: str) -> sa.ColumnElement[bool]:
    return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))


def per_dialect(build: Callable[[Within], Any]) -> dict[str, Any]:
    """``build(within)`` for each dialect, ``within(column, name)`` being its list test."""
    return {"sqlite": build(in_list), "postgresql": build(any_array)}
