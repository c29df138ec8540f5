"""timeback-jupyter: Jupyter notebooks as Timeback activities.

The server extension (``timeback_jupyter.server``) owns time and delivery; the kernel side
(``timeback_jupyter.kernel``) offers the ``%timeback`` magic and the completion widget. Both are
imported lazily so that ``import timeback_jupyter`` stays cheap in a kernel.
"""

from typing import Any

from ._version import __version__

__all__ = ["CompletionButton", "__version__", "exercise", "load_ipython_extension"]

# Kernel-side names, imported on first use (``%load_ext timeback_jupyter`` looks one up).
_KERNEL_EXPORTS = ("CompletionButton", "exercise", "load_ipython_extension")


def __getattr__(name: str) -> Any:
    if name in _KERNEL_EXPORTS:
        from . import kernel

        return getattr(kernel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import TimebackApp

    return [{"module": "timeback_jupyter", "app": TimebackApp}]
