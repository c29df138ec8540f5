"""timeback-jupyter: Jupyter notebooks as Timeback activities.

The server extension (``timeback_jupyter.server``) owns time and delivery; the kernel side
(``timeback_jupyter.kernel``) offers the ``%timeback`` magic and the completion widget.
"""

from ._version import __version__

__all__ = ["__version__"]
