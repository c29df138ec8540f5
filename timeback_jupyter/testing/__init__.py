"""Testing activity notebooks: a stand-in Timeback and a notebook runner for pytest.

The fixtures are in :mod:`timeback_jupyter.pytest_plugin`; this package holds what they use.
"""

from .kernel import CompletionWidget
from .record import Cell, Completed, NotebookNotCompleted, NotebookRecord
from .standin import Fault, StandIn

__all__ = [
    "Cell",
    "Completed",
    "CompletionWidget",
    "Fault",
    "NotebookNotCompleted",
    "NotebookRecord",
    "StandIn",
]
