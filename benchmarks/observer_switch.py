"""A benchmark-only server extension: timeback's kernel observer attached to or detached from
every kernel of a running server, for the kernel benchmark's paired design (blocks of cells
with and without it in ONE server process). Loaded only by that benchmark, never by the
product: ``GET /timeback-bench/observer?on=1|0`` (without ``on``: only apply what is held).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web


class ObserverSwitch(JupyterHandler):
    @web.authenticated
    def get(self) -> None:
        on = self.get_argument("on", "")
        (app,) = self.serverapp.extension_manager.extension_apps["timeback_jupyter"]
        binding = app.binding
        # Signals held from the cells before the switch are applied now, not in the next block
        # (code that holds none, as before held_signals, is measured the same way).
        held = getattr(binding, "held", None)
        if held is not None:
            held.drain()
        if on == "1":
            binding.watcher.attach_all()
        elif on == "0":
            binding.watcher.detach_all()
        self.finish({"watched": binding.watcher.watched})


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "benchmarks.observer_switch"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    route = url_path_join(serverapp.base_url, "/timeback-bench/observer")
    serverapp.web_app.add_handlers(".*$", [(route, ObserverSwitch)])
