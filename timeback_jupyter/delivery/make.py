"""The sink ``c.Timeback.sink`` names."""

from __future__ import annotations

from ..config import Credentials, Timeback
from ..connection import Connection
from .local import LocalSink
from .sink import Sink
from .timeback import TimebackSink


def make_sink(
    config: Timeback, credentials: Credentials | None, connection: Connection | None = None
) -> Sink:
    """The sink ``c.Timeback.sink`` names; a Timeback sink on ``connection`` if given."""
    if config.sink == "timeback":
        return TimebackSink.from_config(config, credentials, connection)
    return LocalSink()
