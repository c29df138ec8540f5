"""Testing activity notebooks: a stand-in Timeback and a notebook runner for pytest.

The fixtures are in :mod:`timeback_jupyter.pytest_plugin`; this package holds what they use.
Names are imported on first use, so ``python -m timeback_jupyter.testing.standin`` runs the
stand-in module once, not a second copy of it.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .kernel import CompletionWidget
    from .notebooks import NotebookRunner
    from .record import Cell, Completed, NotebookNotCompleted, NotebookRecord
    from .standin import Fault, StandIn

__all__ = [
    "Cell",
    "Completed",
    "CompletionWidget",
    "Fault",
    "NotebookNotCompleted",
    "NotebookRecord",
    "NotebookRunner",
    "StandIn",
]

_MODULES = {
    "CompletionWidget": "kernel",
    "Cell": "record",
    "Completed": "record",
    "NotebookNotCompleted": "record",
    "NotebookRecord": "record",
    "NotebookRunner": "notebooks",
    "Fault": "standin",
    "StandIn": "standin",
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name in _MODULES:
            from importlib import import_module

            return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
