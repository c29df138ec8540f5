"""kill -9 of a relay mid-stream: every envelope it acknowledged is stored and queued, no
envelope is stored in part, and nothing is queued twice (a real process; a real SQLite file and
a real PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from timeback_jupyter.relay.database import open_relay_db
from timeback_jupyter.relay.incoming import stored_id
from timeback_jupyter.relay.schema import outbox, received

PER_ENVELOPE = 4
SENDER = r"""
import asyncio, json, sys, uuid
sys.path.insert(0, sys.argv[2])
from tests.relay.conftest import Clock, T0, envelope, make_relay, tse
from timeback_jupyter.relay.users import HubUser

async def main():
    relay = make_relay(sys.argv[1], Clock(T0 + 10**6))
    for n in range(100_000):
        user = HubUser(f"s{n % 7}")
        run = str(uuid.UUID(int=n))
        ids = [f"urn:uuid:{uuid.UUID(int=n * 4 + i)}" for i in range(4)]
        events = [tse(run, T0 + 15 * (n * 4 + i + 1), event_id=ids[i]) for i in range(4)]
        await relay.ingest(user, envelope(*events))
        print(json.dumps([user.name, [e["id"] for e in events]]), flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.parametrize("after", [3, 11, 25])
def test_kill_9_mid_stream_loses_and_duplicates_nothing(relay_db_url, after):
    url = relay_db_url()
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", SENDER, url, str(root)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    acked: list[tuple[str, list[str]]] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while len(acked) < after and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        user, ids = json.loads(line)
        acked.append((user, ids))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(acked) == after, "the sender stopped before the kill"
    with open_relay_db(url) as db, db.read() as conn:
        keys = {r.key: r.user_name for r in conn.execute(sa.select(received))}
        queued = [r.event_id for r in conn.execute(sa.select(outbox.c.event_id))]
    # every acknowledged envelope is there, whole
    for user, ids in acked:
        assert all(stored_id(user, i) in keys for i in ids)
    # no envelope in part: events come in groups of PER_ENVELOPE
    assert len(keys) % PER_ENVELOPE == 0
    assert len(keys) >= after * PER_ENVELOPE
    # accepted = queued, each once
    assert sorted(queued) == sorted(keys) and len(set(queued)) == len(queued)
