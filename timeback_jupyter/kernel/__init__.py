"""The kernel side: the ``%timeback`` magic, exercises and the completion widget.

It talks to the Jupyter server's timeback extension over HTTP with a kernel-scoped token and
imports only the model from the core, except when no server is reachable (:mod:`.standalone`).
Each piece is imported when first used, so loading the extension costs little.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .exercises import Exercise
    from .widget import CompletionButton

__all__ = ["CompletionButton", "exercise", "load_ipython_extension"]


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


def __getattr__(name: str) -> Any:
    if name == "CompletionButton":
        from .widget import CompletionButton

        return CompletionButton
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
