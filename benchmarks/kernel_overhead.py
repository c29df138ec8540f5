"""Kernel path overhead: execute round trips through the websocket, extension on vs off.

Two `jupyter server` processes run at once, one with the extension enabled (a notebook that
declares an activity, so its run is live and every cell is watched on iopub) and one without.
Cells are sent in pairs, one to each, in a random order per pair, so load on the machine hits
both alike. The figure is the ratio of the medians.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from .common import Result, say, summary
from .jupyter import JupyterServer, KernelSocket, activity, write_notebook

TARGET_RATIO = 1.02
BLOCK = 100  # pairs per block; the spread of block ratios shows the run's noise


async def _measure(on: KernelSocket, off: KernelSocket, cells: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    times: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(cells):
        code = f"{i} * 2"
        order = [("on", on), ("off", off)]
        rng.shuffle(order)
        for name, sock in order:
            times[name].append(await sock.execute(code))
    med = statistics.median
    blocks = [
        med(times["on"][k : k + BLOCK]) / med(times["off"][k : k + BLOCK])
        for k in range(0, cells - BLOCK + 1, BLOCK)
    ]
    return {"times": times, "blocks": blocks}


async def _run(workdir: Path, cells: int, warmup: int, seed: int) -> dict[str, Any]:
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
        await _measure(socks["on"], socks["off"], warmup, seed + 1)
        say(f"kernel: measuring {cells} cells on each server, interleaved")
        measured = await _measure(socks["on"], socks["off"], cells, seed)
        run = servers["on"].http.get("/timeback/api/status").json()
        for sock in socks.values():
            sock.close()
        measured["live_runs"] = run.get("live_runs")
        measured["outbox"] = run.get("outbox")
        return measured
    finally:
        for server in servers.values():
            server.stop()


def run(quick: bool = False, seed: int = 7) -> Result:
    cells = 200 if quick else 2000
    with tempfile.TemporaryDirectory(prefix="tb-bench-kernel-") as tmp:
        measured = asyncio.run(_run(Path(tmp), cells, 20 if quick else 100, seed))
    on = summary(measured["times"]["on"], 1000)
    off = summary(measured["times"]["off"], 1000)
    ratio = on["median"] / off["median"]
    blocks = measured["blocks"]
    return Result(
        name="kernel",
        title="Kernel path overhead",
        command="python -m benchmarks kernel",
        target=f"median round trip with / without the extension <= {TARGET_RATIO}",
        passed=ratio <= TARGET_RATIO,
        quick=quick,
        params={"cells_per_server": cells, "block": BLOCK, "seed": seed},
        metrics={
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
    return "\n".join(
        [
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
    )
