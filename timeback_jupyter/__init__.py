"""timeback-jupyter: Jupyter notebooks as Timeback activities.

The server extension (``timeback_jupyter.server``) owns time and delivery; the kernel side
(``timeback_jupyter.kernel``) offers the ``%timeback`` magic and the completion widget. Both are
imported lazily so that ``import timeback_jupyter`` stays cheap in a kernel and in the server.

For notebook authors::

    from timeback_jupyter import CompletionButton, exercise

    exercise("q1").check(answer == 42)        # -> bool, the answer is recorded
    CompletionButton(exercises=["q1"], require="correct")

Type checkers see the real classes (the package is typed, ``py.typed``).
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .kernel import (
        CompletionButton,
        CompletionView,
        Exercise,
        RunView,
        StartView,
        exercise,
        load_ipython_extension,
    )

__all__ = [
    "CompletionButton",
    "CompletionView",
    "Exercise",
    "RunView",
    "StartView",
    "__version__",
    "exercise",
    "load_ipython_extension",
]

# Kernel-side names, imported on first use (``%load_ext timeback_jupyter`` looks one up).
_KERNEL_EXPORTS = frozenset(__all__) - {"__version__"}

if not TYPE_CHECKING:
    # Hidden from type checkers, which see the imports above instead: a misspelt name is then
    # an error in the author's editor, not Any.
    def __getattr__(name: str) -> object:
        if name in _KERNEL_EXPORTS:
            from . import kernel

            return getattr(kernel, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import TimebackApp

    return [{"module": "timeback_jupyter", "app": TimebackApp}]
