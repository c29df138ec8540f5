"""The sink ``c.Timeback.sink`` names."""

from __future__ import annotations

from ..config import Credentials, Timeback
from .local import LocalSink
from .sink import Sink
from .timeback import TimebackSink


def make_sink(config: Timeback, credentials: Credentials | None) -> Sink:
    """The sink ``c.Timeback.sink`` names."""
    if config.sink == "timeback":
        return TimebackSink.from_config(config, credentials)
    return LocalSink()
