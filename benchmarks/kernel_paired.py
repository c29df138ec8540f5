"""The kernel benchmark's paired design: ONE `jupyter server` with the extension enabled and a
notebook whose run is live, its cells sent in blocks with timeback's kernel observer attached
(A) and detached (B) in turn, two blocks a pair in a random order.

Two server processes of the same code differ by up to a few hundred µs of CPU per cell for
their lifetime, which buries a figure of tens of µs; within one process that difference is
gone, and load on the machine that comes and goes hits both blocks of a pair alike. What the
difference of a pair includes: everything the observer makes the server do per cell (our
callback chained behind Jupyter's on the kernel's IOPub stream, the held signals applied to
binding, service, tracker and clock, the ticker woken). What it leaves out, being there in
both blocks: the rest of the extension (its ticks and heartbeat windows of the live run,
delivery, handlers, Jupyter's events): the fresh pairs of servers measure all of it. The
attached blocks time our part where it runs (benchmarks/observer_switch.py), and the detached
ones run the same timer around nothing at the same place, so the timer's cost is in both
blocks of a pair and its in-situ reading is known; after the pairs, blocks of their own time
each level of the apply (binding, service, tracker, clock).

The server's CPU per block is read from its threads' schedstat (nanoseconds: the figure) and
from /proc/<pid>/stat (user + system, in 10 ms ticks: 200 µs per cell in a block of 50, so
each pair's reading is coarse and only their median and mean mean anything). Each block ends
with a request that applies the signals it held (the same request in both blocks).
"""

from __future__ import annotations

import json
import os
import random
import statistics
from pathlib import Path
from typing import Any

from .common import cpu_seconds, say
from .jupyter import JupyterServer, KernelSocket, activity, write_notebook

PAIRS = 100  # short blocks, many pairs: load that comes and goes hits both blocks of a pair
BLOCK_CELLS = 50
SPLIT_BLOCKS = 20  # blocks with the apply's levels timed, after the pairs
REPO = Path(__file__).resolve().parent.parent


def cpu_ns(pid: int) -> int:
    """On-CPU nanoseconds of the process's threads alive now (/proc/<pid>/task/*/schedstat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as fp:
                total += int(fp.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return total


def _switch(server: JupyterServer, on: bool | None) -> list[str]:
    return list(_ask(server, on)["watched"])


def _ask(server: JupyterServer, on: bool | None, split: bool = False) -> dict[str, Any]:
    params = {} if on is None else {"on": "1" if on else "0"}
    if split:
        params["split"] = "1"
    r = server.http.get("/timeback-bench/observer", params=params)
    r.raise_for_status()
    return dict(r.json())


async def paired(
    workdir: Path,
    pairs: int,
    block: int,
    warmup: int,
    seed: int,
    code: Path | None = None,
    split_blocks: int = SPLIT_BLOCKS,
) -> dict[str, Any]:
    """``code``: a checkout whose timeback_jupyter the server runs (another branch's, to compare
    on one machine at one time); this one's by default. The server says which it runs, and a
    wrong one is an error (from inside another checkout, ``python -m`` puts that one first)."""
    root = workdir / "notebooks"
    root.mkdir(parents=True)
    path = write_notebook(root, "lesson.ipynb", {"activity": activity(1)})
    extra = workdir / "switch-config"
    (extra / "jupyter_server_config.d").mkdir(parents=True)
    (extra / "jupyter_server_config.d" / "observer_switch.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"benchmarks.observer_switch": True}}})
    )
    linked = None
    if code is not None:
        # that checkout's product, but this one's benchmarks (the switch and its timing)
        linked = workdir / "code"
        linked.mkdir()
        (linked / "timeback_jupyter").symlink_to(code / "timeback_jupyter")
    paths = (str(linked or REPO), str(REPO), os.environ.get("PYTHONPATH"))
    pythonpath = os.pathsep.join(p for p in paths if p)
    env = {"JUPYTER_CONFIG_PATH": str(extra), "PYTHONPATH": pythonpath}
    server = JupyterServer(workdir / "server", root, extension=True, env=env)
    try:
        server.wait_ready()
        if server.http.get("/timeback/api/status").status_code != 200:
            raise RuntimeError("the extension is not enabled in the paired server")
        kernel_id = server.open(path)["kernel"]["id"]
        sock = await KernelSocket.connect(server, kernel_id)
        first = _ask(server, True)
        if kernel_id not in first["watched"]:
            raise RuntimeError("the observer did not attach to the kernel")
        product = Path(first["product"])
        wanted = ((code or REPO) / "timeback_jupyter").resolve()
        if product != wanted:  # e.g. run from a checkout: `python -m` puts the cwd first
            raise RuntimeError(f"the server runs {product}, not {wanted}")
        say(f"kernel: paired design, warming up ({warmup} cells)")
        for i in range(warmup):
            await sock.execute(f"{i} * 2")
        rng, pid = random.Random(seed), server.pid
        said: dict[str, list[float]] = {"on": [], "off": [], "on_ns": [], "off_ns": []}
        own_ns, in_situ, detached, warm_timer_ns = 0.0, {}, {}, 0.0
        say(f"kernel: paired design, {pairs} pairs of blocks of {block} cells (observer on/off)")
        for _ in range(pairs):
            order = [True, False]
            rng.shuffle(order)
            for on in order:
                if (kernel_id in _switch(server, on)) != on:
                    raise RuntimeError(f"the observer did not switch {'on' if on else 'off'}")
                cpu, ns = cpu_seconds(pid), cpu_ns(pid)
                for i in range(block):
                    await sock.execute(f"{i} * 2")
                # what the block held is applied within it (both blocks); with it, our part's
                # CPU timed where it ran in the server during the block
                timing = _ask(server, None)["timing"]
                name = "on" if on else "off"
                if on:
                    own_ns += timing["ns"]
                _sum(in_situ if on else detached, timing["parts"])
                warm_timer_ns = timing["overhead_ns"]
                said[name].append((cpu_seconds(pid) - cpu) / block * 1e6)
                said[name + "_ns"].append((cpu_ns(pid) - ns) / block / 1e3)
        split = await _split_blocks(server, sock, kernel_id, split_blocks, block)
        _switch(server, True)
        run = server.http.get("/timeback/api/status").json()
        sock.close()
    finally:
        server.stop()
    diffs = [a - b for a, b in zip(said["on"], said["off"], strict=True)]
    diffs_ns = [a - b for a, b in zip(said["on_ns"], said["off_ns"], strict=True)]
    return {
        "pairs": pairs,
        "block_cells": block,
        "added_us_per_cell": _spread(diffs_ns),
        "added_us_per_cell_stat": _spread(diffs),
        "server_us_per_cell": {"on": _spread(said["on_ns"]), "off": _spread(said["off_ns"])},
        "pair_differences_us": [round(d, 1) for d in diffs_ns],
        # timed in situ: the observer's share of Jupyter's IOPub callback + held signals applied
        "own_in_server_us_per_cell": own_ns / (pairs * block) / 1e3,
        # the same timing by part, and what passed per cell (the attached blocks)
        "in_situ": _per_cell(in_situ, pairs * block),
        # the detached blocks: the same timer around nothing at the same place, per message
        "timer_in_situ_ns": detached["empty_ns"] / max(1, detached["empty_calls"]) + warm_timer_ns,
        "timer_warm_ns": warm_timer_ns,
        # blocks of their own with every level of the apply timed too (its timers cost)
        "split": split,
        "live_runs_during": run.get("live_runs"),
        "product": str(product),
    }


async def _split_blocks(
    server: JupyterServer, sock: KernelSocket, kernel_id: str, blocks: int, block: int
) -> dict[str, Any] | None:
    """Blocks with the observer attached and each level of the apply timed on its own."""
    if blocks <= 0:
        return None
    say(f"kernel: {blocks} blocks of {block} cells with the apply's levels timed")
    if kernel_id not in _ask(server, True, split=True)["watched"]:
        raise RuntimeError("the observer did not attach to the kernel")
    said: dict[str, float] = {}
    for _ in range(blocks):
        for i in range(block):
            await sock.execute(f"{i} * 2")
        _sum(said, _ask(server, None)["timing"]["parts"])
    return _per_cell(said, blocks * block)


def _sum(into: dict[str, float], parts: dict[str, float]) -> None:
    for name, value in parts.items():
        into[name] = into.get(name, 0.0) + value


def _per_cell(parts: dict[str, float], cells: int) -> dict[str, float]:
    """ns -> µs per cell, counts -> per cell; and the signals a drain applied on average."""
    said = {
        (name[:-3] + "_us" if name.endswith("_ns") else name): (
            value / cells / 1e3 if name.endswith("_ns") else value / cells
        )
        for name, value in parts.items()
    }
    said["cells"] = cells
    if parts.get("drains"):
        said["signals_per_drain"] = parts["signals"] / parts["drains"]
    return said


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def render(p: dict[str, Any]) -> list[str]:
    a, s = p["added_us_per_cell"], p["added_us_per_cell_stat"]
    on, off = p["server_us_per_cell"]["on"]["median"], p["server_us_per_cell"]["off"]["median"]
    return [
        f"**Paired, in one server** ({p['pairs']} pairs of blocks of {p['block_cells']} cells, "
        "timeback's kernel observer attached / detached in a random order per pair; what it "
        "includes: our IOPub callback, the held signals applied through binding, service, "
        "tracker and clock; not the rest of the extension, there in both blocks): added server "
        f"CPU per cell, median of the pairs' differences **{a['median']:+.0f} µs** (range "
        f"{a['min']:+.0f} to {a['max']:+.0f}, mean {a['mean']:+.0f}; from /proc/<pid>/stat's "
        f"10 ms ticks: median {s['median']:+.0f} µs, mean {s['mean']:+.0f}). The server's CPU per "
        f"cell: {on:.0f} µs attached, {off:.0f} µs detached (medians)."
        + (
            f" Our part timed where it runs in that server (thread CPU around the observer's "
            f"share of each IOPub callback and each held signal applied, the timer's own cost "
            f"taken off): **{p['own_in_server_us_per_cell']:.0f} µs per cell**."
            if "own_in_server_us_per_cell" in p
            else ""
        ),
        "",
        *_render_parts(p),
    ]


def _render_parts(p: dict[str, Any]) -> list[str]:
    """Where our part's time goes, in situ (results saved before the split have none)."""
    i = p.get("in_situ")
    if not i:
        return []
    extra = p["timer_in_situ_ns"] - p["timer_warm_ns"]
    lines = [
        f"By part, in the attached blocks: the observer's share of the IOPub callback "
        f"**{i['callback_us']:.0f} µs** per cell ({i['messages']:.1f} messages a cell: the "
        f"{i['statuses']:.1f} statuses {i['statuses_us']:.0f} µs, the others "
        f"{i['others_us']:.0f} µs), the held signals applied **{i['apply_us']:.0f} µs** "
        f"({i['signals']:.1f} signals a cell, {i.get('signals_per_drain', 0):.0f} a drain). "
        f"The timer itself, around nothing at the same place (the detached blocks), reads "
        f"{p['timer_in_situ_ns'] / 1e3:.1f} µs a message against {p['timer_warm_ns'] / 1e3:.1f} "
        f"µs in a warm loop (what is taken off): so about {extra * i['messages'] / 1e3:.0f} µs "
        f"of the callback's figure per cell is the timer's own, found cold.",
    ]
    s = p.get("split")
    if s and "clock_own_us" in s:
        lines[0] += (
            f" The apply by level ({s['cells']} cells in blocks of their own, each level "
            f"timed, which adds the timers' cost): binding {s['binding_own_us']:.1f}, service "
            f"{s['service_own_us']:.1f}, tracker {s['tracker_own_us']:.1f}, clock "
            f"{s['clock_own_us']:.1f} µs per cell (calls per cell: service "
            f"{s['service_calls']:.2f}, tracker {s['tracker_calls']:.2f}, clock "
            f"{s['clock_calls']:.2f})."
        )
    return [*lines, ""]
