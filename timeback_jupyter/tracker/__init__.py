"""Runs + clock + store + events: the one place where signals become events.

The server's service and the kernel watcher call the tracker; nothing else writes the outbox. It
knows nothing of Jupyter: a notebook is just a path string that a run is bound to
(:mod:`.notebooks`); which run a notebook gets is :mod:`.resume`'s decision; :mod:`.tracking`
holds the :class:`Tracker` itself; :mod:`.pending` the windows waiting for the store and
:mod:`.checkpoints` the open windows written every few seconds (what a kill -9 can lose).
"""

from .pending import RECORD_BATCH
from .results import CompletionResult, StartResult, TrackerError
from .tracking import METADATA_SCHEMA_VERSION, Tracker

__all__ = [
    "METADATA_SCHEMA_VERSION",
    "RECORD_BATCH",
    "CompletionResult",
    "StartResult",
    "Tracker",
    "TrackerError",
]
