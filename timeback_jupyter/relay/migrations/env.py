"""Alembic's environment for the relay: always online, on the connection the relay hands in."""

from __future__ import annotations

from alembic import context

from timeback_jupyter.relay.schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the relay's migrations run from timeback_jupyter.relay.database.open_relay_db, which "
        "hands them its connection"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    # SQLite cannot ALTER most things in place: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
