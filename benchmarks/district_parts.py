"""The processes the relay benchmarks start and watch: the stand-in Timeback with the district's
students, a relay replica, and the CPU and outbox readings (district, relaycpu, forward)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .common import ROOT, cpu_seconds

STANDIN = """
import sys
from timeback_jupyter.testing.standin import StandIn
with StandIn(sys.argv[1], sys.argv[2]) as api:
    for name in open(sys.argv[3]).read().split():
        api.users[f"{name}@school.edu"] = [f"sourced-{name}"]
    print(api.url, flush=True)
    sys.stdin.read()
"""


def student_name(i: int) -> str:
    """The hub's and the stand-in's name of the district's i-th student."""
    return f"d{i:05d}"


def start_standin(tmp: Path, n: int) -> tuple[subprocess.Popen[str], str]:
    """The stand-in Timeback in a process of its own (it validates every event with the
    official models: its CPU is not the relay's), knowing the first ``n`` students for the
    relay's OneRoster lookups; returns the process (stop it with ``terminate``) and its URL."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.relay.hub import CLIENT_ID, CLIENT_SECRET

    names = tmp / "names.txt"
    names.write_text("\n".join(student_name(i) for i in range(n)))
    proc = subprocess.Popen(
        [sys.executable, "-c", STANDIN, CLIENT_ID, CLIENT_SECRET, str(names)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"the stand-in Timeback did not start (it printed {url!r})")
    return proc, url


def start_relay(
    i: int, port: int, hub: Any, standin_url: str, db_url: str, tmp: Path, *options: str
) -> subprocess.Popen[bytes]:
    """``jupyter timeback relay`` #``i`` as the hub's service on ``port``, delivering to the
    stand-in; its log in ``tmp/relay<i>.log``. ``DISTRICT_PROFILE=1``: the first replica runs
    under cProfile (its profile in ``.cache/district/relay0.prof``)."""
    from tests.relay.hub import (
        BIN,
        CATALOG,
        CLIENT_ID,
        CLIENT_SECRET,
        PREFIX,
        RELAY_HUB_TOKEN,
        SERVICE,
    )
    from timeback_jupyter.testing.standin import TOKEN_PATH

    from .district_hub import CACHE

    catalog = tmp / "timeback.config.json"
    catalog.write_text(json.dumps(CATALOG))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIMEBACK_", "JUPYTERHUB_"))}
    env.update(
        TIMEBACK_CLIENT_ID=CLIENT_ID, TIMEBACK_CLIENT_SECRET=CLIENT_SECRET,
        JUPYTERHUB_API_TOKEN=RELAY_HUB_TOKEN, JUPYTERHUB_API_URL=hub.api_url,
        JUPYTERHUB_SERVICE_NAME=SERVICE, JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
        JUPYTERHUB_SERVICE_PREFIX=PREFIX, JUPYTER_CONFIG_DIR=str(tmp / f"config{i}"),
    )  # fmt: skip
    profile = ["-m", "cProfile", "-o", str(CACHE / "relay0.prof")]
    head = (
        [sys.executable, *profile, str(BIN / "jupyter-timeback")]
        if (i == 0 and os.environ.get("DISTRICT_PROFILE"))
        else [str(BIN / "jupyter"), "timeback"]
    )
    command = [
        *head, "relay", f"--Relay.catalog={catalog}",
        "--Relay.email_template={name}@school.edu", f"--Relay.db_url={db_url}",
        "--Relay.sink=timeback",
        f"--Timeback.base_url={standin_url}", f"--Timeback.auth_url={standin_url}{TOKEN_PATH}",
        f"--Timeback.oneroster_base_url={standin_url}", *options,
    ]  # fmt: skip
    log = open(tmp / f"relay{i}.log", "w")  # noqa: SIM115  (the child holds it)
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    log.close()
    return proc


def pg_pids(server: Any) -> list[int]:
    """The cluster's processes: the postmaster (first line of postmaster.pid) and its children."""
    try:
        top = int((server.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [top]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fp:
                    if int(fp.read().rsplit(")", 1)[1].split()[1]) == top:
                        pids.append(int(entry))
            except (OSError, ValueError):
                continue
    return pids


def cpu_of(pids: dict[str, list[int]]) -> dict[str, float]:
    """Each group's user+system CPU seconds so far (a process gone meanwhile counts 0)."""
    out = {}
    for name, group in pids.items():
        total = 0.0
        for pid in group:
            try:
                total += cpu_seconds(pid)
            except OSError:
                continue
        out[name] = total
    return out


def _lag_sql() -> str:
    """The outbox's waiting events as the relay reads them (outbox_sql.WAITING: each status a
    constant, read from its partial index; an IN list here once scanned the whole outbox every
    2 s, ~10 s of PostgreSQL's time in a run)."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    from timeback_jupyter.relay.outbox_sql import WAITING
    from timeback_jupyter.relay.schema import outbox

    query = sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(WAITING)
    return str(query.compile(dialect=postgresql.dialect()))


LAG_SQL = _lag_sql()


class Lag(threading.Thread):
    """The outbox's depth and oldest pending age, read from PostgreSQL every 2 s."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.samples, self.stopping = url, [], threading.Event()

    def run(self) -> None:
        import psycopg

        conninfo = self.url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not self.stopping.wait(2.0):
                row = conn.execute(LAG_SQL).fetchone()
                now = time.time()
                age = 0.0 if row is None or row[1] is None else max(0.0, now - row[1])
                self.samples.append((now, int(row[0]) if row else 0, age))

    def drained(self, since: float) -> bool:
        """Whether a reading taken after ``since`` found the outbox empty."""
        return any(t > since and depth == 0 for t, depth, _ in self.samples[-3:])
