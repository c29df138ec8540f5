"""Kernel path overhead: the server CPU the extension adds per cell, in two designs.

Paired, in ONE server (:mod:`.kernel_paired`, the figure held to the target): blocks of cells
with timeback's kernel observer attached and detached in turn, the median of the pairs'
differences; it measures the kernel path's own per-cell work, immune to the difference
between two server processes. Fresh pairs of servers (below): everything the extension does.

Two `jupyter server` processes run at once, one with the extension enabled (a notebook that
declares an activity, so its run is live and every cell is watched on iopub) and one without.
Cells are sent in pairs, one to each, in a random order per pair, so load on the machine hits
both alike. Figures: the server process's CPU time added per cell (read from /proc for both
servers over the same cells: other processes on a shared machine do not add to it), held to
the target; the ratio of the medians of the round trips, which on a noisy machine mostly
measures the noise; and the extension's own work per cell measured in-process (a cell's four
IOPub messages classified, its two signals through the binding, service, tracker and clock).

Two processes of the same code differ by up to a few hundred µs of CPU per cell on this
machine, persistently for their lifetime (memory layout, hash seeds, where their pages and
their kernel's land): so the cells are split into rounds, each with a fresh pair of servers,
and the per-round figures show that spread beside their median.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from . import kernel_paired
from .common import Result, cpu_seconds, say, summary
from .jupyter import JupyterServer, KernelSocket, activity, write_notebook

TARGET_RATIO = 1.02
TARGET_ADDED_CPU_US = 50.0
TARGET = (
    f"server CPU added per cell by the kernel path <= {TARGET_ADDED_CPU_US:g} µs (paired in one "
    "server, and our part timed where it runs there; beside it: fresh pairs of servers with / "
    f"without the extension, and median round trip with / without <= {TARGET_RATIO})"
)
BLOCK = 100  # pairs per block; the spread of block ratios shows the run's noise
CPU_BLOCK = 1000  # pairs per CPU reading: /proc counts in 10 ms ticks
ROUNDS = 4  # fresh pairs of servers (2 in a quick run)


async def _measure(
    on: KernelSocket, off: KernelSocket, cells: int, seed: int, pids: dict[str, int]
) -> dict[str, Any]:
    rng = random.Random(seed)
    times: dict[str, list[float]] = {"on": [], "off": []}
    cpu_start = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu_blocks: list[float] = []  # added server CPU per cell, per CPU_BLOCK pairs
    mark = dict(cpu_start)
    for i in range(cells):
        if i and i % CPU_BLOCK == 0:
            now = {name: cpu_seconds(pid) for name, pid in pids.items()}
            added = (now["on"] - mark["on"]) - (now["off"] - mark["off"])
            cpu_blocks.append(added / CPU_BLOCK)
            mark = now
        code = f"{i} * 2"
        order = [("on", on), ("off", off)]
        rng.shuffle(order)
        for name, sock in order:
            times[name].append(await sock.execute(code))
    cpu_end = {name: cpu_seconds(pid) for name, pid in pids.items()}
    if cells % CPU_BLOCK == 0 and cells >= CPU_BLOCK:
        added = (cpu_end["on"] - mark["on"]) - (cpu_end["off"] - mark["off"])
        cpu_blocks.append(added / CPU_BLOCK)
    cpu = {name: cpu_end[name] - cpu_start[name] for name in pids}
    med = statistics.median
    blocks = [
        med(times["on"][k : k + BLOCK]) / med(times["off"][k : k + BLOCK])
        for k in range(0, cells - BLOCK + 1, BLOCK)
    ]
    return {"times": times, "blocks": blocks, "cpu": cpu, "cpu_blocks": cpu_blocks}


async def _run(workdir: Path, cells: int, warmup: int, seed: int, idle: float) -> dict[str, Any]:
    root = workdir / "notebooks"
    root.mkdir()
    path = write_notebook(root, "lesson.ipynb", {"activity": activity(1)})
    servers = {
        "on": JupyterServer(workdir / "on", root, extension=True),
        "off": JupyterServer(workdir / "off", root, extension=False),
    }
    try:
        for server in servers.values():
            server.wait_ready()
        on_status = servers["on"].http.get("/timeback/api/status")
        off_status = servers["off"].http.get("/timeback/api/status")
        if on_status.status_code != 200 or off_status.status_code != 404:
            raise RuntimeError(
                f"extension on/off not as intended: {on_status.status_code}, "
                f"{off_status.status_code}"
            )
        socks = {}
        for name, server in servers.items():
            session = server.open(path)
            socks[name] = await KernelSocket.connect(server, session["kernel"]["id"])
        say(f"kernel: warming up ({warmup} cells each)")
        pids = {name: server.pid for name, server in servers.items()}
        await _measure(socks["on"], socks["off"], warmup, seed + 1, pids)
        if idle > 0:
            say(f"kernel: both servers idle for {idle:g}s (the extension's cost with no cells)")
        idle_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        await asyncio.sleep(idle)
        idle_cpu = {name: cpu_seconds(pid) - idle_before[name] for name, pid in pids.items()}
        say(f"kernel: measuring {cells} cells on each server, interleaved")
        measured = await _measure(socks["on"], socks["off"], cells, seed, pids)
        measured["idle_added_cpu_share"] = (
            (idle_cpu["on"] - idle_cpu["off"]) / idle if idle > 0 else None
        )
        run = servers["on"].http.get("/timeback/api/status").json()
        for sock in socks.values():
            sock.close()
        measured["live_runs"] = run.get("live_runs")
        measured["outbox"] = run.get("outbox")
        return measured
    finally:
        for server in servers.values():
            server.stop()


def own_path(cells: int) -> float:
    """CPU µs per cell of the extension's own per-cell work, in-process: a cell's four IOPub
    messages (status busy, execute_input, execute_result, status idle) through the callback
    the server chains behind Jupyter's (its statuses held as they came), and, applied as the
    server applies them, its two signals read and passed through the binding, the service,
    the tracker and the clock of a live run."""
    import logging

    from jupyter_client.session import Session

    from timeback_jupyter.config import Timeback, default_app_config
    from timeback_jupyter.identity import Student, actor_for
    from timeback_jupyter.model import Activity, CourseRef
    from timeback_jupyter.server.binding import KernelBinding
    from timeback_jupyter.server.kernels import _Classifier, _holding, _reader
    from timeback_jupyter.server.service import TimebackService
    from timeback_jupyter.server.tasks import TaskSet
    from timeback_jupyter.store import Store
    from timeback_jupyter.tracker import Tracker

    session = Session(key=b"benchmark")

    def wire(msg_type: str, content: dict[str, Any]) -> list[bytes]:
        parent = session.msg("execute_request", {})
        return list(session.serialize(session.msg(msg_type, content, parent=parent)))

    cell = [  # as IOPub sends them: the topic, then the message
        [b"kernel.k.status", *wire("status", {"execution_state": "busy"})],
        [b"kernel.k.execute_input", *wire("execute_input", {"code": "1", "execution_count": 1})],
        [
            b"kernel.k.execute_result",
            *wire("execute_result", {"data": {"text/plain": "2"}, "metadata": {}}),
        ],
        [b"kernel.k.status", *wire("status", {"execution_state": "idle"})],
    ]
    classify = _Classifier(session)
    log = logging.getLogger("benchmark")
    t = [1_790_000_000.0]
    with tempfile.TemporaryDirectory(prefix="tb-bench-own-") as tmp:
        settings = Timeback(store_path=str(Path(tmp) / "s.sqlite3"), student_email="a@school.edu")
        store = Store(settings.store_path)
        student = Student("a@school.edu")
        actor = actor_for(student, settings.oneroster_url, local=True)
        tracker = Tracker(
            store=store, settings=settings, app_config=default_app_config(), student=student,
            actor=actor, now=lambda: t[0],
        )  # fmt: skip
        service = TimebackService(settings, None, log=log, tasks=TaskSet(log))  # type: ignore[arg-type]
        service.tracker, service.store = tracker, store
        binding = KernelBinding(
            service, kernel_manager=None, session_manager=None, notebooks=None,  # type: ignore[arg-type]
            tokens=None, tasks=TaskSet(log), log=log,  # type: ignore[arg-type]
        )  # fmt: skip
        tracker.start(Activity("lesson", "Lesson", CourseRef("Math", 3)), path="lesson.ipynb")
        binding.kernel_paths["k"] = "lesson.ipynb"

        def stamp() -> float:
            t[0] += 0.01
            return t[0]

        def jupyter(parts: list[bytes]) -> None:
            pass  # Jupyter's own callback: not ours to count

        chained = _holding(jupyter, jupyter, binding.held, "k", _reader(classify), stamp)

        async def cells_run() -> float:  # in an event loop, as in the server (its timer armed)
            started = time.thread_time()
            for i in range(cells):
                for parts in cell:
                    chained(parts)
                if i % 100 == 99:  # as the server's timer (1 s: about 100 cells) or a read does
                    binding.held.drain()
            return time.thread_time() - started

        used = asyncio.run(cells_run())
        store.close()
    return used / cells * 1e6


def run(quick: bool = False, seed: int = 7) -> Result:
    cells = 1000 if quick else 4000  # fresh pairs: their spread is the processes', not cells'
    rounds = 2 if quick else ROUNDS
    pairs = 10 if quick else kernel_paired.PAIRS
    block = 50 if quick else kernel_paired.BLOCK_CELLS
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tb-bench-paired-") as tmp:
        paired = asyncio.run(
            kernel_paired.paired(
                Path(tmp),
                pairs,
                block,
                20 if quick else 200,
                seed,
                split_blocks=4 if quick else kernel_paired.SPLIT_BLOCKS,
            )
        )
    parts = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory(prefix="tb-bench-kernel-") as tmp:
            say(f"kernel: round {r + 1} of {rounds}, a fresh pair of servers")
            parts.append(
                asyncio.run(
                    _run(
                        Path(tmp), cells // rounds, 20 if quick else 100, seed + r,
                        (5.0 if quick else 30.0) if r == 0 else 0.0,
                    )
                )
            )  # fmt: skip
    cells = cells // rounds * rounds
    say("kernel: the extension's own work per cell, in-process")
    own_us = statistics.median(own_path(2000 if quick else 20_000) for _ in range(3))
    load_end = os.getloadavg()[0]
    measured = {
        "times": {k: [x for p in parts for x in p["times"][k]] for k in ("on", "off")},
        "blocks": [b for p in parts for b in p["blocks"]],
        "cpu": {k: sum(p["cpu"][k] for p in parts) for k in ("on", "off")},
        "cpu_blocks": [b for p in parts for b in p["cpu_blocks"]],
        "idle_added_cpu_share": parts[0]["idle_added_cpu_share"],
        "live_runs": parts[-1]["live_runs"],
        "outbox": parts[-1]["outbox"],
    }
    per_round = [(p["cpu"]["on"] - p["cpu"]["off"]) / (cells // rounds) * 1e6 for p in parts]
    on = summary(measured["times"]["on"], 1000)
    off = summary(measured["times"]["off"], 1000)
    ratio = on["median"] / off["median"]
    blocks = measured["blocks"]
    cpu = measured["cpu"]
    added_us = (cpu["on"] - cpu["off"]) / cells * 1e6
    cpu_blocks = [b * 1e6 for b in measured["cpu_blocks"]]
    paired_us = paired["added_us_per_cell"]["median"]
    return Result(
        name="kernel",
        title="Kernel path overhead",
        command="python -m benchmarks kernel",
        target=TARGET,
        # The paired median is the process's own reading, but its pairs swing by +-1 ms per
        # cell; our part timed where it runs is precise and bounds it from beneath: both count.
        passed=max(paired_us, paired["own_in_server_us_per_cell"]) <= TARGET_ADDED_CPU_US,
        quick=quick,
        params={
            "cells_per_server": cells,
            "paired_cells": 2 * pairs * block,
            "rounds": rounds,
            "block": BLOCK,
            "cpu_block": CPU_BLOCK,
            "seed": seed,
        },
        metrics={
            "paired": paired,
            "added_server_cpu_us_per_cell": added_us,
            "added_server_cpu_us_per_cell_rounds": per_round,
            "own_path_cpu_us_per_cell": own_us,
            "server_cpu_us_per_cell": {
                "on": cpu["on"] / cells * 1e6,
                "off": cpu["off"] / cells * 1e6,
            },
            "added_server_cpu_us_per_cell_blocks": {
                "median": statistics.median(cpu_blocks) if cpu_blocks else None,
                "min": min(cpu_blocks) if cpu_blocks else None,
                "max": max(cpu_blocks) if cpu_blocks else None,
            },
            "idle_added_cpu_share": measured["idle_added_cpu_share"],
            "ratio_met": ratio <= TARGET_RATIO,
            "load_average_1m": {"start": round(load_start, 2), "end": round(load_end, 2)},
            "with_extension_ms": on,
            "without_extension_ms": off,
            "ratio_median": ratio,
            "ratio_p90": on["p90"] / off["p90"],
            "block_ratios": {
                "median": statistics.median(blocks) if blocks else None,
                "min": min(blocks) if blocks else None,
                "max": max(blocks) if blocks else None,
            },
            "live_runs_during": measured["live_runs"],
            "outbox_after": measured["outbox"],
        },
        notes=[
            "Paired design (the target's figure): one server, its kernel observer attached and "
            "detached by a benchmark-only server extension (benchmarks/observer_switch.py) "
            "between blocks; held signals are applied at each switch, so each block pays for "
            "its own. Its difference is the kernel path's work per cell; the fresh pairs' is "
            "everything the extension does, with the spread between processes in it.",
            "Server CPU is user + system time of each jupyter server process (not its kernel) "
            "from /proc over the same measured cells; the added CPU per cell is the difference "
            "of the two divided by the cells. It includes everything the enabled server did "
            "meanwhile: reading each cell's IOPub messages, the clock, the tick loop, the "
            "heartbeat windows of the live run and their delivery.",
            "A round trip is execute_request sent -> execute_reply and status idle received "
            "over /api/kernels/{id}/channels; cells are `i * 2` (one execute_result each).",
            "Both servers run at the same time on the same machine; each pair of cells goes "
            "to both in a random order.",
        ],
    )


def render(r: dict[str, Any]) -> str:
    m = r["metrics"]
    on, off = m["with_extension_ms"], m["without_extension_ms"]
    b = m["block_ratios"]
    lines = kernel_paired.render(m["paired"]) if "paired" in m else []
    if "paired" in m:
        lines += ["**Fresh pairs of servers** (everything the extension does):", ""]
    if "added_server_cpu_us_per_cell" in m:  # results saved before CPU was read have none
        cpu, cb = m["server_cpu_us_per_cell"], m["added_server_cpu_us_per_cell_blocks"]
        load = m["load_average_1m"]
        lines += [
            "| server process CPU per cell | extension enabled | disabled | **added** |",
            "|---|---|---|---|",
            f"| over all {r['params']['cells_per_server']} cells | {cpu['on']:.0f} µs | "
            f"{cpu['off']:.0f} µs | **{m['added_server_cpu_us_per_cell']:.0f} µs** |",
            "",
            (
                f"Added CPU per cell by blocks of {r['params']['cpu_block']} pairs: median "
                f"{cb['median']:.0f} µs, range {cb['min']:.0f} to {cb['max']:.0f} µs. "
                if cb["median"] is not None
                else ""
            )
            + f"With no cells at all, the enabled server used {m['idle_added_cpu_share']:.2%} "
            f"of a core more than the disabled one (ticks of the live run). Load average "
            f"{load['start']} at the start, {load['end']} at the end.",
            "",
        ]
    rounds = m.get("added_server_cpu_us_per_cell_rounds")
    if rounds:
        lines += [
            f"By round (a fresh pair of servers each, {len(rounds)} rounds): "
            + ", ".join(f"{x:+.0f}" for x in rounds)
            + f" µs per cell (median {statistics.median(rounds):+.0f}). The extension's own "
            f"work per cell, measured in-process (four IOPub messages through the callback "
            f"chained behind Jupyter's, two signals read and applied through binding, "
            f"service, tracker and clock): "
            f"**{m['own_path_cpu_us_per_cell']:.0f} µs**.",
            "",
        ]
    if "added_server_cpu_us_per_cell" in m:
        lines += [
            "Beside it, the round trips (wall time, which other work on the machine moves):",
            "",
        ]
    lines += [
        "| | median | p90 | p99 |",
        "|---|---|---|---|",
        f"| extension enabled (run live) | {on['median']:.2f} ms | {on['p90']:.2f} ms "
        f"| {on['p99']:.2f} ms |",
        f"| extension disabled | {off['median']:.2f} ms | {off['p90']:.2f} ms "
        f"| {off['p99']:.2f} ms |",
        f"| **ratio** | **{m['ratio_median']:.3f}** | {m['ratio_p90']:.3f} | |",
        f"| added per cell | {on['median'] - off['median']:+.2f} ms | "
        f"{on['p90'] - off['p90']:+.2f} ms | |",
        "",
        f"{r['params']['cells_per_server']} cells per server. Ratio of medians per block of "
        f"{r['params']['block']} pairs: median {b['median']:.3f}, range "
        f"{b['min']:.3f} to {b['max']:.3f} (the run's noise).",
    ]
    return "\n".join(lines)
