"""The district load generator's own CPU per event: `python -m benchmarks.district_loadcpu`.

The generator (:mod:`.district_load`, or another version of it given as a file) runs a job
like the district benchmark's against two answering servers in another process that only
parse each request and answer as the relay does (200, its JSON), so the figure is the
generator's alone: its CPU time over the open phase divided by the events sent in it.
``--generator FILE`` measures another version (e.g. ``git show main:benchmarks/district_load.py``)
on the same job. Environment: LOADCPU_RATE (envelopes/s, default 600), LOADCPU_SECONDS (20),
LOADCPU_PACE (seconds per envelope per student, default 15: one window each; 60: four).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import district_plan as plan
from .common import ROOT, cpu_seconds

# Two servers on free ports, answering every request with the relay's answer for one event.
SERVER = r"""
import asyncio, sys
ANSWER = (b'{"results": [{"id": "x", "status": "accepted"}], "accepted": 1, '
          b'"duplicate": 0, "refused": 0}')
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(ANSWER), ANSWER)

class Answer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            at = self.buffer.find(b"Content-Length: ", 0, end)
            length = int(self.buffer[at + 16:self.buffer.index(b"\r\n", at)])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(RESPONSE)

async def main():
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(Answer, "127.0.0.1", 0) for _ in range(2)]
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.district_loadcpu")
    parser.add_argument("--generator", default=None, help="a district_load.py to run instead")
    args = parser.parse_args(argv)
    rate = float(os.environ.get("LOADCPU_RATE", 600))
    seconds = float(os.environ.get("LOADCPU_SECONDS", 20))
    pace = plan.paces(os.environ.get("LOADCPU_PACE", "15"))[0]
    windows, interval = int(pace // plan.INTERVAL), float(pace)
    n = int(rate * interval)
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        ports = [int(p) for p in server.stdout.readline().split()]
        with tempfile.TemporaryDirectory(prefix="tb-bench-loadcpu-") as tmp_name:
            tmp = Path(tmp_name)
            students = [(f"d{i:05d}", f"token-{i:05d}-" + "x" * 20, i % 2, (i * 0.6180339887) % 1,
                         i / n) for i in range(n)]  # fmt: skip
            phases = [
                {"name": "first", "group": "first", "interval": plan.INTERVAL, "seconds": 0.0,
                 "share": 1.0, "closed": True, "start": 0.0, "drain": 3.0},
                {"name": "district", "group": "district", "interval": interval,
                 "window": plan.INTERVAL, "windows": windows, "seconds": seconds, "share": 1.0,
                 "start": 0.0, "drain": 3.0},
            ]  # fmt: skip
            job = {"replicas": [["127.0.0.1", p] for p in ports], "path": "/relay/api/events",
                   "connections_per_replica": 64, "completion_every": 40, "phases": phases,
                   "students": students, "sync_dir": str(tmp), "generator": 0}  # fmt: skip
            (tmp / "job.json").write_text(json.dumps(job))
            profile = os.environ.get("LOADCPU_PROFILE")  # a file: the generator's cProfile
            command = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else [])]
            command += [args.generator] if args.generator else ["-m", "benchmarks.district_load"]
            gen = subprocess.Popen([*command, str(tmp / "job.json"), str(tmp / "out.json")],
                                   cwd=ROOT)  # fmt: skip
            while not plan.ready(tmp, "district", 1):
                if gen.poll() is not None:
                    raise RuntimeError("the generator stopped in its first phase")
                time.sleep(0.05)
            start = time.time() + 1.0
            plan.write_schedule(tmp, "district", phases, start)
            time.sleep(max(0.0, start - time.time()))
            cpu0 = cpu_seconds(gen.pid)
            time.sleep(max(0.0, start + seconds - time.time()))
            cpu = cpu_seconds(gen.pid) - cpu0
            gen.wait(timeout=seconds + 120)
            out = json.loads((tmp / "out.json").read_text())
    finally:
        server.terminate()
        server.wait(10)
    first, district = out["phases"]
    events = district["events"]
    latency = sorted(district["latency"])
    result = {
        "envelopes_per_s": rate,
        "windows_per_envelope": windows,
        "envelopes": len(latency) - district["late_tasks"],
        "events": events,
        "errors": len(first["errors"]) + len(district["errors"]),
        "late": district["late_tasks"],
        "cpu_s": cpu,
        "us_per_event": cpu / max(events, 1) * 1e6,
        "p50_ms": latency[len(latency) // 2] if latency else float("nan"),
        "p99_ms": latency[int(len(latency) * 0.99)] if latency else float("nan"),
        "load": os.getloadavg()[0],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
