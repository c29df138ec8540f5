"""``jupyter timeback``: status, report, export, flush, doctor and strip.

Every subcommand reads the Jupyter server's own configuration (``c.Timeback.*``), so it sees
the store, sink and environment the server uses.
"""

from .app import SUBCOMMANDS, TimebackCommand, main, run
from .base import CLIError, Command

__all__ = ["SUBCOMMANDS", "CLIError", "Command", "TimebackCommand", "main", "run"]
