"""The relay's Alembic migrations, run by :func:`timeback_jupyter.relay.database.open_relay_db`
(no alembic.ini: the config is built in code; ``script_location`` is this package)."""
