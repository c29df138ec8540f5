"""A benchmark-only server extension: timeback's kernel observer attached to or detached from
every kernel of a running server, for the kernel benchmark's paired design (blocks of cells
with and without it in ONE server process). Loaded only by that benchmark, never by the
product: ``GET /timeback-bench/observer?on=1|0`` (without ``on``: only apply what is held).

While attached, our part is also timed where it runs (``time.thread_time_ns`` around it, in
the server's own loop): the observer's share of each IOPub callback (after Jupyter's own
``record_activity``, which is not counted) and each drain of the held signals (the signals it
applies, the loop over them included). The answer carries the nanoseconds and calls so far,
less the timer's own cost, split by part (``parts``), and the counters restart.

``split=1`` (with ``on=1``) also times the apply's levels, each around its own entry point:
the service's signal method(s), the tracker's, the clock's; what a level's timer reads beyond
the next one's is that level's own (the binding's is the drain's beyond the service's). These
timers cost CPU of their own inside the parts they split, so the benchmark takes the split in
blocks of its own, never in the paired ones.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

import timeback_jupyter
from timeback_jupyter.server.kernels import DELIM

# The levels of a held signal applied, outermost first, and their entry points (a level's
# batch one is timed where the code has one, else its one-signal one).
LEVELS = ("service", "tracker", "clock")
ENTRY_POINTS = ("signal", "signals")
# what kernels._holding's callback holds: it holds statuses raw
HOLDING = {"previous", "observer", "entries", "arm", "append", "kernel_id", "read", "now"}


class Timing:
    def __init__(self) -> None:
        # part -> [ns, calls]; "signals" counts only (no time)
        self.parts: dict[str, list[int]] = {}
        # what an empty timed region reads (the timer's own cost), taken off each region
        clock, empty = time.thread_time_ns, 0
        for _ in range(2000):
            t0 = clock()
            empty += clock() - t0
        self.overhead = empty / 2000

    def add(self, part: str, ns: int, calls: int = 1) -> None:
        held = self.parts.get(part)
        if held is None:
            self.parts[part] = [ns, calls]
        else:
            held[0] += ns
            held[1] += calls

    def own(self, part: str) -> float:
        ns, calls = self.parts.get(part, (0, 0))
        return max(0.0, ns - calls * self.overhead)

    def take(self) -> dict[str, Any]:
        calls = {part: held[1] for part, held in self.parts.items()}
        parts: dict[str, Any] = {
            "callback_ns": self.own("statuses") + self.own("others"),
            "messages": calls.get("statuses", 0) + calls.get("others", 0),
            "statuses": calls.get("statuses", 0),
            "statuses_ns": self.own("statuses"),
            "others_ns": self.own("others"),
            # the observer detached: the timer alone, where ours runs (see _empty_timer)
            "empty_ns": self.own("empty"),
            "empty_calls": calls.get("empty", 0),
            "apply_ns": self.own("apply"),
            "drains": calls.get("apply", 0),
            "signals": calls.get("signals", 0),
        }
        if any(level in self.parts for level in LEVELS):
            # Each level's own: its timer's reading less the next level's whole reading (the
            # inner timer's own cost is in the outer one's, so it is taken off too).
            outer = "apply"
            for level in LEVELS:
                inner = self.parts.get(level, [0, 0])
                parts[f"{outer}_own_ns"] = max(
                    0.0, self.own(outer) - inner[0] - inner[1] * self.overhead
                )
                parts[f"{level}_calls"] = inner[1]
                outer = level
            parts["clock_own_ns"] = self.own("clock")
            parts["binding_own_ns"] = parts.pop("apply_own_ns")
        said = {
            "ns": parts["callback_ns"] + self.own("apply"),
            "calls": parts["messages"] + calls.get("apply", 0),
            "overhead_ns": self.overhead,
            "parts": parts,
        }
        self.parts = {}
        return said


TIMING = Timing()


def _timed_observer(shared: Any) -> None:
    """Replace the stream's chained callback by one doing the same, our part timed: a copy
    of the product's (kernels._holding, or the observer-calling one before it), so that the
    timer starts after Jupyter's own callback; told apart by what its closure holds."""
    stream = shared.stream
    chained = stream._recv_callback
    names = inspect.getclosurevars(chained).nonlocals
    if set(names) not in ({"previous", "observer"}, HOLDING):
        raise RuntimeError(f"observer_switch cannot time this callback: {sorted(names)}")
    previous, observer = names["previous"], names["observer"]
    clock, add = time.thread_time_ns, TIMING.add

    def timed(parts: list[bytes]) -> None:
        previous(parts)
        t0 = clock()
        if not (len(parts) > 6 and parts[1] == DELIM and b'"status"' not in parts[3]):
            observer(parts)
            add("statuses", clock() - t0)
        else:
            add("others", clock() - t0)

    if set(names) == HOLDING:
        entries, arm, append = names["entries"], names["arm"], names["append"]
        kernel_id, read, now = names["kernel_id"], names["read"], names["now"]

        def timed(parts: list[bytes]) -> None:
            previous(parts)
            t0 = clock()
            if len(parts) > 6 and parts[1] == DELIM:
                if parts[3].find(b'"status"') != -1:
                    if not entries:
                        arm()
                    append((kernel_id, read, parts, now()))
                    add("statuses", clock() - t0)
                else:
                    add("others", clock() - t0)
                return
            observer(parts)
            add("statuses", clock() - t0)

    timed.chained = chained  # type: ignore[attr-defined]
    stream.on_recv(timed)


def _empty_timer(stream: Any) -> None:
    """With the observer detached: the same timer, around nothing, at the same place behind
    Jupyter's callback. What it reads is the timer's own cost where ours runs (its syscalls
    find the caches as cold as our code does), to take off what the attached blocks read."""
    jupyter = stream._recv_callback
    clock, add = time.thread_time_ns, TIMING.add

    def timed(parts: list[bytes]) -> None:
        jupyter(parts)
        t0 = clock()
        add("empty", clock() - t0)

    timed.jupyter = jupyter  # type: ignore[attr-defined]
    stream.on_recv(timed)


def _jupyter_streams(binding: Any) -> list[Any]:
    km = binding.watcher._km
    streams = []
    for kernel_id in km.list_kernel_ids():
        stream = getattr(km.get_kernel(kernel_id), "_activity_stream", None)
        if stream is not None and callable(getattr(stream, "_recv_callback", None)):
            streams.append(stream)
    return streams


def _no_empty_timers(binding: Any) -> None:
    for stream in _jupyter_streams(binding):
        jupyter = getattr(stream._recv_callback, "jupyter", None)
        if jupyter is not None:
            stream.on_recv(jupyter)


def _untimed(shared: Any) -> None:
    chained = getattr(shared.stream._recv_callback, "chained", None)
    if chained is not None:
        shared.stream.on_recv(chained)  # as attached: its close() then gives Jupyter's back


def _timed_drain(binding: Any) -> None:
    """Time each drain that applies something (the loop over the held signals with it),
    wherever it is called from: the timer, the clock's hook, the binding."""
    held = binding.held
    if "drain" in vars(held):
        return
    drain, clock, add = held.drain, time.thread_time_ns, TIMING.add

    def timed() -> None:
        signals = len(held)
        if not signals:
            drain()  # nothing held (or a drain under way): untimed, as with the observer off
            return
        t0 = clock()
        try:
            drain()
        finally:
            add("apply", clock() - t0)
            add("signals", 0, signals)

    held.drain = timed
    binding.service.catch_up = timed  # the clock's hook took the bound method at start


def _timed(owner: Any, name: str, part: str) -> None:
    if name in vars(owner) or not callable(getattr(owner, name, None)):
        return
    method: Callable[..., Any] = getattr(owner, name)
    clock, add = time.thread_time_ns, TIMING.add

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = clock()
        try:
            return method(*args, **kwargs)
        finally:
            add(part, clock() - t0)

    setattr(owner, name, timed)


def _levels(binding: Any) -> list[tuple[Any, str]]:
    service = binding.service
    tracker = service.tracker
    return [(service, "service"), (tracker, "tracker"), (tracker.clock, "clock")]


def _split(binding: Any, on: bool) -> None:
    for owner, part in _levels(binding):
        for name in ENTRY_POINTS:
            vars(owner).pop(name, None)  # the class's method again
        if on:  # the batch entry point where there is one (its one-signal one calls it)
            _timed(owner, "signals" if hasattr(owner, "signals") else "signal", part)


class ObserverSwitch(JupyterHandler):
    @web.authenticated
    def get(self) -> None:
        on = self.get_argument("on", "")
        (app,) = self.serverapp.extension_manager.extension_apps["timeback_jupyter"]
        binding = app.binding
        # Signals held from the cells before the switch are applied now, not in the next block.
        _timed_drain(binding)
        binding.held.drain()
        streams = binding.watcher._streams
        if on in ("0", "1"):
            # Jupyter's chained callback back first: attaching again over our timed one would
            # chain the observer behind itself
            for shared in streams.values():
                if hasattr(shared, "stream"):
                    _untimed(shared)
            _no_empty_timers(binding)
            _split(binding, on == "1" and self.get_argument("split", "") == "1")
        if on == "1":
            binding.watcher.attach_all()
            for shared in streams.values():
                if hasattr(shared, "stream"):
                    _timed_observer(shared)
        elif on == "0":
            binding.watcher.detach_all()
            for stream in _jupyter_streams(binding):
                _empty_timer(stream)
        self.finish(
            {
                "watched": binding.watcher.watched,
                "timing": TIMING.take(),
                "product": str(Path(timeback_jupyter.__file__).resolve().parent),
            }
        )


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "benchmarks.observer_switch"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    route = url_path_join(serverapp.base_url, "/timeback-bench/observer")
    serverapp.web_app.add_handlers(".*$", [(route, ObserverSwitch)])
