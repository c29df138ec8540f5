"""The kernel side: the ``%timeback`` magic, exercises and the completion widget.

It talks to the Jupyter server's timeback extension over HTTP with a kernel-scoped token and
imports only the model from the core, except when no server is reachable (:mod:`.standalone`).
Each piece is imported when first used, so loading the extension costs little.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .exercises import Exercise
    from .results import CompletionView, RunView, StartView
    from .widget import CompletionButton

__all__ = [
    "CompletionButton",
    "CompletionView",
    "Exercise",
    "RunView",
    "StartView",
    "exercise",
    "load_ipython_extension",
]

# Imported on first use: the widget brings ipywidgets, which a magic alone does not need.
_LAZY = {
    "CompletionButton": "widget",
    "Exercise": "exercises",
    "CompletionView": "results",
    "RunView": "results",
    "StartView": "results",
}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext timeback_jupyter``: register ``%timeback``."""
    from .magics import TimebackMagics
    from .session import get_session

    session = get_session()
    if session.shell is None:
        session.shell = ipython
    ipython.register_magics(TimebackMagics(ipython, session))


def exercise(exercise_id: str) -> Exercise:
    """Declare the exercise ``exercise_id``; ``.check(condition)`` records its answer."""
    from .exercises import exercise as declare

    return declare(exercise_id)


if not TYPE_CHECKING:
    # Hidden from type checkers, which see the imports above instead: a misspelt name is then
    # an error in the author's editor, not Any.
    def __getattr__(name: str) -> object:
        if name in _LAZY:
            from importlib import import_module

            return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
