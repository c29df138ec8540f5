"""timeback-jupyter: Jupyter notebooks as Timeback activities.

The server extension (``timeback_jupyter.server``) owns time and delivery; the kernel side
(``timeback_jupyter.kernel``) offers the ``%timeback`` magic and the completion widget. Both are
imported lazily so that ``import timeback_jupyter`` stays cheap in a kernel.
"""

from typing import Any

from ._version import __version__

__all__ = ["__version__"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import TimebackApp

    return [{"module": "timeback_jupyter", "app": TimebackApp}]
