"""The fault drills in their full form (20 kills, ten times the fuzz examples), for the record.

They are tests (tests/test_drills_*.py); `make test` runs them short. Here they run long with
TIMEBACK_DRILLS=full and their outcome is kept beside the benchmark figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .common import ROOT, Result, say

DRILLS = {
    "test_drills_kill.py": "kill -9 of the server mid-session: nothing acknowledged lost, no "
    "duplicate, runIds continue; the open window's time recovered up to its last checkpoint "
    "(about 2 s before the kill), never more than the clock counted",
    "test_drills_outage.py": "Timeback down 10 simulated minutes, then 429 storms: all "
    "delivered in order, no busy loop",
    "test_drills_store.py": "store locked, on a full or read-only disk, corrupt: Jupyter works, "
    "status says why, nothing lost",
    "test_drills_fuzz.py": "garbage REST bodies and notebook metadata: 4xx with a message, "
    "never a 5xx or a crash; garbage frames down one presence socket: each answered (4xx or a "
    "run), the socket stays open",
}


def run(quick: bool = False) -> Result:
    env = {**os.environ, "TIMEBACK_DRILLS": "short" if quick else "full"}
    with tempfile.TemporaryDirectory(prefix="tb-drills-") as tmp:
        report = Path(tmp) / "junit.xml"
        files = [f"tests/{name}" for name in DRILLS]
        say(f"drills: {'short' if quick else 'full'} form of {', '.join(DRILLS)}")
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s",
             f"--junitxml={report}", *files],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        cases = _cases(report) if report.exists() else []
    printed = [line.split("DRILL ", 1)[1] for line in done.stdout.splitlines() if "DRILL " in line]
    return Result(
        name="drills",
        title="Fault drills",
        command="python -m benchmarks drills",
        target="every drill passes",
        passed=done.returncode == 0,
        quick=quick,
        params={"form": "short" if quick else "full"},
        metrics={"seconds": elapsed, "cases": cases, "printed": printed},
        notes=[] if done.returncode == 0 else [done.stdout[-3000:]],
    )


def _cases(report: Path) -> list[dict[str, Any]]:
    out = []
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped" and child.get("type") == "pytest.xfail":
                # A known bug pinned by a strict xfail: the reason names the fix.
                outcome = f"known bug (xfail): {child.get('message', '').removeprefix('reason: ')}"
            elif child.tag == "skipped":
                outcome = f"skipped: {child.get('message', '')}"
        out.append(
            {
                "file": Path(case.get("file") or case.get("classname", "").replace(".", "/")).name,
                "name": case.get("name"),
                "outcome": outcome,
                "seconds": float(case.get("time") or 0),
            }
        )
    return out


def render(r: dict[str, Any]) -> str:
    m = r["metrics"]
    lines = ["| drill | case | outcome | seconds |", "|---|---|---|---|"]
    for case in m["cases"]:
        lines.append(
            f"| {case['file'].removeprefix('test_drills_').removesuffix('.py')} | "
            f"`{case['name'][:90]}` | {case['outcome']} | {case['seconds']:.1f} |"
        )
    if m["printed"]:
        lines += ["", "What the drills reported:", ""]
        lines += [f"- {line.strip()}" for line in m["printed"]]
    lines += ["", f"{r['params']['form'].capitalize()} form, {m['seconds']:.0f} s in all."]
    return "\n".join(lines)
