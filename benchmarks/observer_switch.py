"""A benchmark-only server extension: timeback's kernel observer attached to or detached from
every kernel of a running server, for the kernel benchmark's paired design (blocks of cells
with and without it in ONE server process). Loaded only by that benchmark, never by the
product: ``GET /timeback-bench/observer?on=1|0`` (without ``on``: only apply what is held).

While attached, our part is also timed where it runs (``time.thread_time_ns`` around it, in
the server's own loop): the observer's share of each IOPub callback (after Jupyter's own
``record_activity``, which is not counted) and each held signal applied. The answer carries
the nanoseconds and calls so far, less the timer's own cost, and the counters restart.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from timeback_jupyter.server.kernels import DELIM


class Timing:
    def __init__(self) -> None:
        self.ns = 0
        self.calls = 0
        # what an empty timed region reads (the timer's own cost), taken off each region
        clock, empty = time.thread_time_ns, 0
        for _ in range(2000):
            t0 = clock()
            empty += clock() - t0
        self.overhead = empty / 2000

    def take(self) -> dict[str, float]:
        own = max(0.0, self.ns - self.calls * self.overhead)
        said = {"ns": own, "calls": self.calls, "overhead_ns": self.overhead}
        self.ns = self.calls = 0
        return said


TIMING = Timing()


def _timed_observer(shared: Any) -> None:
    """Replace the stream's chained callback by one doing the same, our part timed."""
    stream = shared.stream
    chained = stream._recv_callback
    names = inspect.getclosurevars(chained).nonlocals
    previous, observer = names["previous"], names["observer"]
    clock = time.thread_time_ns

    def timed(parts: list[bytes]) -> None:
        previous(parts)
        t0 = clock()
        if not (len(parts) > 6 and parts[1] == DELIM and b'"status"' not in parts[3]):
            observer(parts)
        TIMING.ns += clock() - t0
        TIMING.calls += 1

    timed.chained = chained  # type: ignore[attr-defined]
    stream.on_recv(timed)


def _untimed(shared: Any) -> None:
    chained = getattr(shared.stream._recv_callback, "chained", None)
    if chained is not None:
        shared.stream.on_recv(chained)  # as attached: its close() then gives Jupyter's back


def _timed_apply(held: Any) -> None:
    if getattr(held._apply, "untimed", None) is not None:
        return
    apply, clock = held._apply, time.thread_time_ns

    def timed(kernel_id: str, kind: str, at: float) -> None:
        t0 = clock()
        try:
            apply(kernel_id, kind, at)
        finally:
            TIMING.ns += clock() - t0
            TIMING.calls += 1

    timed.untimed = apply  # type: ignore[attr-defined]
    held._apply = timed


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
            _timed_apply(held)
            held.drain()
        streams = binding.watcher._streams
        if on in ("0", "1"):
            # Jupyter's chained callback back first: attaching again over our timed one would
            # chain the observer behind itself
            for shared in streams.values():
                if hasattr(shared, "stream"):
                    _untimed(shared)
        if on == "1":
            binding.watcher.attach_all()
            for shared in streams.values():
                if hasattr(shared, "stream"):
                    _timed_observer(shared)
        elif on == "0":
            binding.watcher.detach_all()
        self.finish({"watched": binding.watcher.watched, "timing": TIMING.take()})


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "benchmarks.observer_switch"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    route = url_path_join(serverapp.base_url, "/timeback-bench/observer")
    serverapp.web_app.add_handlers(".*$", [(route, ObserverSwitch)])
