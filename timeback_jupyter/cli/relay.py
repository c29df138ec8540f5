"""``jupyter timeback relay``: run the hub relay service (see :mod:`timeback_jupyter.relay`).

Reads ``jupyter_timeback_relay_config.py`` (``c.Relay.*`` and the delivery knobs of
``c.Timeback.*``) from the Jupyter config path or ``--config``, never the single-user servers'
config: the relay runs on the hub's side, as the hub's user.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, ClassVar

from traitlets import TraitError, default
from traitlets.config import Application

from ..config import Timeback
from ..relay.logs import setup_logging
from ..relay.settings import Relay
from .base import EXIT_USAGE, EXPECTED_ERRORS, CLIError, Command, common_flags, one_line


class RelayCommand(Command):
    """Run the relay: a JupyterHub service that takes students' events and sends them on."""

    name = "jupyter-timeback-relay"
    verb = "relay"
    description = (
        "Run the timeback relay as a JupyterHub service: it takes the events of students' "
        "servers (authenticated by the hub), decides what reaches Timeback and delivers it "
        "with the credentials in its own environment. Configure with c.Relay.* and "
        "c.Timeback.* in jupyter_timeback_relay_config.py."
    )
    examples = """
    jupyter timeback relay --Relay.catalog=/srv/timeback/timeback.config.json \\
        --Relay.email_template='{name}@school.edu' --Relay.db_url=sqlite:////srv/timeback/relay.db
    """
    classes: ClassVar[list[Any]] = [Relay, Timeback]
    aliases: ClassVar[dict[str, Any]] = {
        "config": "RelayCommand.config_file",
        "catalog": "Relay.catalog",
        "db-url": "Relay.db_url",
        "port": "Relay.port",
        "ip": "Relay.ip",
        "log-level": "Application.log_level",
    }
    flags: ClassVar[dict[str, Any]] = common_flags

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    @default("config_file_name")
    def _default_config_file_name(self) -> str:
        return "jupyter_timeback_relay_config"

    def load_config_file(self, suppress_errors: bool = True) -> None:  # type: ignore[override]
        try:
            Application.load_config_file(self, self.config_file_name, path=self.config_file_paths)
            if self.config_file:
                path, name = os.path.split(os.path.abspath(self.config_file))
                Application.load_config_file(self, name, path=[path])
        except (TraitError, CLIError):
            raise
        except Exception as err:
            raise CLIError(
                f"cannot load the relay's config ({type(err).__name__}: {one_line(str(err))})"
            ) from None

    def start(self) -> None:
        if self.extra_args:
            self.fail(f"unexpected argument {self.extra_args[0]!r}", EXIT_USAGE)
        try:
            relay = Relay(parent=self)
            timeback = Timeback(parent=self)
        except TraitError as err:
            self.fail(f"bad setting: {one_line(str(err))}", EXIT_USAGE)
            return
        # A service, not a report: its log is what the hub admin (or a collector) reads.
        setup_logging(relay.log_format, self.log_level, relay.replica_id)
        # Alembic narrates every start (plugins, contexts) at INFO; its upgrades are warnings.
        logging.getLogger("alembic").setLevel(max(self.log_level, logging.WARNING))
        from ..relay.app import serve  # tornado and jupyterhub: only for this subcommand

        try:
            asyncio.run(serve(relay, timeback, os.environ))
        except EXPECTED_ERRORS as err:
            self.fail(str(err))
        except KeyboardInterrupt:
            pass
