"""BENCHMARKS.md, rendered from benchmarks/results/*.json (never edited by hand)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import accuracy, drills, kernel_overhead, outbox, presence_load, startup
from .common import RESULTS, ROOT, load_results

ORDER = ["kernel", "presence", "outbox", "accuracy", "startup", "drills"]
RENDER: dict[str, Callable[[dict[str, Any]], str]] = {
    "kernel": kernel_overhead.render,
    "presence": presence_load.render,
    "outbox": outbox.render,
    "accuracy": accuracy.render,
    "startup": startup.render,
    "drills": drills.render,
}


def _headline(name: str, r: dict[str, Any]) -> str:
    m = r["metrics"]
    if name == "kernel":
        return f"ratio of medians {m['ratio_median']:.3f}"
    if name == "presence":
        share = m["server_handler"]["share_within"].get("0.01")
        share_text = "n/a" if share is None else f"{share:.1%}"
        return (
            f"CPU {m['cpu_share_under_load']:.1%} of a core; {share_text} of handlers <= 10 ms; "
            f"client p99 {m['client_round_trip_ms']['p99']:.1f} ms"
        )
    if name == "outbox":
        return (
            f"enqueue p99 {m['enqueue_ms']['record_window']['p99']:.2f} ms; drain "
            f"{m['drain']['batch_50']['events_per_s_median']:,.0f} events/s "
            f"({m['batching_speedup']:.0f}x one-per-request)"
        )
    if name == "accuracy":
        return f"worst {m['worst_error_per_10min']:.2f} s per 10 min"
    if name == "startup":
        load = m["load_ext_ms"]["median"]
        load_text = "n/a" if load is None else f"{load:.0f} ms"
        return (
            f"server +{m['server_start_added_ms']:.0f} ms (import "
            f"{m['extension_import_ms']['median']:.0f} ms); %load_ext {load_text}"
        )
    if name == "drills":
        cases = m["cases"]
        ok = sum(1 for c in cases if c["outcome"] == "passed")
        known = sum(1 for c in cases if c["outcome"].startswith("known bug"))
        pinned = f", {known} known bugs pinned as xfail" if known else ""
        return f"{ok}/{len(cases)} cases passed{pinned} ({r['params']['form']} form)"
    return ""


# Shown only while a target is missed: what profiling found behind the miss, so that the
# explanation disappears with the problem once it is fixed and the figure re-measured.
WHY_MISSED = {
    "kernel": (
        "The extension adds under a millisecond per cell, on the server's event loop, which "
        "also relays the websocket. A profile of the enabled server puts most of it in the "
        "IOPub watcher: it fully deserializes every message of the kernel (signature check, "
        "JSON and date parsing of header, parent header and metadata) only to find the two "
        "`status` messages of a cell, doubling what Jupyter already does per message. "
        "Recognizing a status message from the raw header part (one small json.loads, no date "
        "parsing) before anything else would skip the other messages; the rest is one asyncio "
        "task and a clock update per signal."
    ),
    "presence": (
        "Two causes. First, Jupyter itself: its cheapest authenticated API call costs the "
        "server the CPU shown in the floor column, so at 100 requests/s Jupyter alone is "
        "already over the budget; meeting it needs fewer requests (one report per browser "
        "for all its tabs, or a longer interval for tabs that are visible but not focused), "
        "not only a cheaper handler. Second, ours: a presence report costs O(live runs of the "
        "student), not O(1) (the table above): the one-active rule couples a student's runs, "
        "so `EngagementClock.presence` advances all of them and `Tracker.describe` -> "
        "`EngagementClock.state` copies and integrates all of them again to answer. With 500 "
        "notebooks of one student every report touches 500 runs twice. Every 15 s the tick "
        "also records 500 windows in one go on the event loop (each built and validated with "
        "the official models), which is where the client's tail latency comes from; Jupyter's "
        "own histogram does not see that wait, since it starts timing once the request is read."
    ),
    "outbox": (
        "Compare the rows: a commit takes a fraction of a millisecond of CPU, the CPU spin "
        "shows whether the machine itself stalled us, and the RAM-disk row what is left "
        "without the disk. A wall-clock tail far above the CPU and RAM-disk rows is time spent "
        "waiting for the disk (WAL writes, a checkpoint's fsync), which varies with what else "
        "writes to it: on this shared machine, other test suites."
    ),
    "startup": (
        "Most of the start-up cost is importing: the server side pulls in timeback_common "
        "and timeback_caliper (pydantic models) at load, even with the local sink, before "
        "any event is built. Importing them on first use (first event, first send) and "
        "keeping the extension's load path to jupyter_server and the standard library would "
        "bring the added start under the target. `%load_ext` imports the magic's modules and "
        "httpx, and asks the server for the kernel's run."
    ),
}


def render(results: dict[str, dict[str, Any]] | None = None) -> str:
    results = load_results() if results is None else results
    lines = [
        "# Benchmarks",
        "",
        "Figures for timeback-jupyter (issue #7), each measured side by side with its baseline "
        "in one run (extension enabled vs disabled, presence vs Jupyter's own handler, batches "
        "vs one event per request, tracked vs true time), quoted as medians and ratios. This "
        "file is rendered from `benchmarks/results/*.json` by the harness in `benchmarks/`; do "
        "not edit it by hand.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench                                         # everything below, then this file",
        ".venv/bin/python -m benchmarks kernel presence     # some benchmarks only",
        ".venv/bin/python -m benchmarks --quick             # small sizes: a smoke run, not for "
        "quoting",
        ".venv/bin/python -m benchmarks --render            # this file again from the JSON",
        "TIMEBACK_DRILLS=full .venv/bin/python -m pytest tests/test_drills_*.py  # drills, full",
        "```",
        "",
        "The machine matters: the figures below say where they were taken. Every benchmark "
        "runs its two sides at the same time or interleaved, so a busy machine slows both.",
        "",
        "## Summary",
        "",
        "| benchmark | target | measured | met |",
        "|---|---|---|---|",
    ]
    for name in ORDER:
        r = results.get(name)
        if r is None:
            lines.append(f"| {name} | | not measured yet | |")
            continue
        met = {True: "yes", False: "**no**", None: "n/a"}[r["passed"]]
        quick = " (quick run)" if r.get("quick") else ""
        lines.append(f"| {r['title']} | {r['target']} | {_headline(name, r)}{quick} | {met} |")
    for name in ORDER:
        r = results.get(name)
        if r is None:
            continue
        machine = r["machine"]
        lines += [
            "",
            f"## {r['title']}",
            "",
            f"Target: {r['target']}. Command: `{r['command']}`"
            + (" `--quick`" if r.get("quick") else "")
            + f". Measured {r['measured_at']} on {machine['cpus']} CPUs "
            f"({machine['cpu_model'] or 'unknown model'}), load average "
            f"{machine['load_average_1m']} at the start, Python {machine['python']}.",
            "",
            RENDER[name](r),
        ]
        if r["passed"] is False and name in WHY_MISSED:
            lines += ["", f"**Why the target is missed.** {WHY_MISSED[name]}"]
        for note in r.get("notes", []):
            lines += ["", f"- {note}" if "\n" not in note else f"```\n{note}\n```"]
    lines += [
        "",
        "## The drills",
        "",
        "Automated tests in `tests/test_drills_*.py`, run by `make test` in a short form "
        "(3 kills, fewer fuzz examples, about a minute and a half in all) and by `make bench` "
        "in full (`TIMEBACK_DRILLS=full`: 20 kills at random points, ten times the fuzz "
        "examples, not derandomized):",
        "",
        *[f"- `{file}`: {what}." for file, what in drills.DRILLS.items()],
        "",
    ]
    return "\n".join(lines)


def write(path: Path = ROOT / "BENCHMARKS.md", results_dir: Path = RESULTS) -> Path:
    path.write_text(render(load_results(results_dir)))
    return path
