"""`python -m benchmarks [NAME ...] [--quick] [--render]`: measure, save JSON, render the doc."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable

from . import (
    accuracy,
    checkpoint,
    dashboard,
    district,
    drills,
    event_path,
    kernel_overhead,
    open_windows,
    outbox,
    presence_load,
    relay_cpu,
    relay_ingest,
    report,
    soak,
    startup,
)
from .common import Result, say

BENCHMARKS: dict[str, Callable[[bool], Result]] = {
    "kernel": kernel_overhead.run,
    "presence": presence_load.run,
    "events": event_path.run,
    "outbox": outbox.run,
    "checkpoint": checkpoint.run,
    "accuracy": accuracy.run,
    "startup": startup.run,
    "drills": drills.run,
    "soak": soak.run,
    "openwindows": open_windows.run,
    "relay": relay_ingest.run,
    "dashboard": dashboard.run,
    "district": district.run,
    "relaycpu": relay_cpu.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure timeback-jupyter, write benchmarks/results/*.json and "
        "BENCHMARKS.md. A missed target is a figure, not an error; a crash is an error.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"what to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--render", action="store_true", help="only re-render BENCHMARKS.md")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(
            f"no benchmark named {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})"
        )
    if args.render:
        say(f"wrote {report.write()}")
        return 0
    failed = []
    for name in args.names or list(BENCHMARKS):
        started = time.monotonic()
        say(f"{name}: start{' (quick)' if args.quick else ''}")
        try:
            result = BENCHMARKS[name](args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        path = result.save()
        report.write()
        verdict = {True: "target met", False: "TARGET MISSED", None: "no target verdict"}
        say(f"{name}: {verdict[result.passed]} in {time.monotonic() - started:.0f}s -> {path.name}")
        if name == "drills" and not result.passed:
            failed.append(name)
    if failed:
        say(f"failed to run: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
