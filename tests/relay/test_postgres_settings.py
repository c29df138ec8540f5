"""The test cluster takes server settings as a deployment would set them (the district
benchmark runs PostgreSQL as docs/jupyterhub.md tells a district to), and refuses a setting
that would reach pg_ctl's command line as anything but one ``-c name=value``."""

from __future__ import annotations

import pytest

from timeback_jupyter.testing.postgres import PostgresServer, require_bindir


def test_a_cluster_runs_with_the_settings_it_was_given():
    settings = {"shared_buffers": "64MB", "max_wal_size": "2GB"}
    with PostgresServer(require_bindir(), settings) as server, server.admin() as conn:
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in settings}
    assert shown == settings


@pytest.mark.parametrize(
    "settings",
    [{"shared_buffers": "1GB -c fsync=off"}, {"fsync=off -c x": "1"}, {"work_mem": "1'MB"}],
)
def test_a_setting_that_is_not_one_is_refused(settings):
    with pytest.raises(ValueError, match="not a PostgreSQL setting"):
        PostgresServer(require_bindir(), settings)
