"""What the hub tests read: a student's own outbox (as root), what the stand-in Timeback got,
and the cells a curious student runs against the relay."""

from __future__ import annotations

import json
import pwd
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from timeback_jupyter.relay.incoming import stored_id
from timeback_jupyter.testing.hub import Hub
from timeback_jupyter.testing.hub_student import StudentServer
from timeback_jupyter.testing.standin import StandIn

STORE = ".local/share/jupyter/timeback/timeback.sqlite3"  # a student's store, in their home
XP_CAP = 5 * 1.25  # the catalog's 5 XP and the policy's best bonus (a perfect first attempt)


def wait_until(predicate: Callable[[], Any], timeout: float = 120, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def outbox(user: pwd.struct_passwd, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The rows of the student's own outbox (of ``run_ids``), oldest first."""
    with sqlite3.connect(Path(user.pw_dir) / STORE) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM outbox ORDER BY seq")]
    if run_ids is not None:
        wanted = set(run_ids)
        rows = [r for r in rows if r["run_id"] in wanted]
    return rows


def for_runs(standin: StandIn, run_ids: Iterable[str]) -> list[dict[str, Any]]:
    wanted = set(run_ids)
    return [e for e in standin.received if (e.get("extensions") or {}).get("runId") in wanted]


def counted(standin: StandIn) -> Counter[str]:
    return Counter(standin.received_ids)


def delivered(hub: Hub, *servers: StudentServer, flush: bool = True, timeout: float = 180) -> None:
    """Everything the servers hold has reached the relay, and the relay has delivered it.

    ``flush``: ask each server to deliver now (else wait for its drainer, as for servers that
    share one store: only the one holding its lease delivers)."""
    for server in servers:

        def empty(server: StudentServer = server) -> bool:
            if flush:
                server.flush(timeout=10)
            box = server.status()["outbox"]
            return box["pending"] == 0 and box["inflight"] == 0

        wait_until(empty, timeout, f"{server.user}'s outbox to empty")

    def relay_empty() -> bool:
        box = hub.relay_api("GET", "api/status", token=hub.token).json()["outbox"]
        return box["pending"] == 0 and box["inflight"] == 0

    wait_until(relay_empty, timeout, "the relay's outbox to empty")


def assert_each_once(standin: StandIn, user: str, event_ids: Iterable[str]) -> None:
    """Each of the student's event ids reached Timeback exactly once (under the relay's id)."""
    seen = counted(standin)
    counts = {event_id: seen[stored_id(user, event_id)] for event_id in event_ids}
    assert counts and set(counts.values()) == {1}, counts


def catalog_xp(completion: dict[str, Any]) -> float:
    """What the catalog's 5 XP quiz earns, all correct, on the attempt the relay counted (the
    nth run of this student on it): the policy's 25% bonus on the first only."""
    return 6.2 if completion["generated"]["attempt"] == 1 else 5.0


def actor_of(event: dict[str, Any]) -> tuple[str, str]:
    return event["actor"]["id"].rsplit("/", 1)[-1], event["actor"].get("email", "")


def xp_of(event: dict[str, Any]) -> float:
    items = event["generated"]["items"]
    return float(next(i["value"] for i in items if i["type"] == "xpEarned"))


# ---- a curious student's cells ---------------------------------------------------------------

# Posts to the relay itself with the server's token, as any cell can (both are in its
# environment); reads and forges the student's own events from their own outbox.
FORGE = f"""
import datetime, json, os, sqlite3, urllib.error, urllib.request, uuid
STORE = os.path.expanduser("~/{STORE}")

def mine(kind, run_id=None):
    query = "SELECT sensor, payload FROM outbox WHERE kind = ?"
    args = [kind]
    if run_id:
        query += " AND run_id = ?"
        args.append(run_id)
    with sqlite3.connect(STORE) as db:
        sensor, payload = db.execute(query + " ORDER BY seq DESC LIMIT 1", args).fetchone()
    return sensor, json.loads(payload)

def now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"

def renamed(event, run_id=None):
    event = dict(event, id="urn:uuid:" + str(uuid.uuid4()), eventTime=now())
    event["generated"] = dict(event["generated"], id="urn:uuid:" + str(uuid.uuid4()))
    if run_id:
        event["session"] = "urn:uuid:" + run_id
        event["extensions"] = dict(event["extensions"], runId=run_id)
    return event

def with_xp(event, xp):
    items = [i for i in event["generated"]["items"] if i["type"] != "xpEarned"]
    event["generated"] = dict(event["generated"], items=items + [dict(type="xpEarned", value=xp)])
    return event

def post(sensor, events):
    envelope = dict(sensor=sensor, sendTime=now(), data=events,
                    dataVersion="http://purl.imsglobal.org/ctx/caliper/v1p2")
    request = urllib.request.Request(
        os.environ["TIMEBACK_RELAY_URL"] + "api/events", data=json.dumps(envelope).encode(),
        method="POST", headers={{"Content-Type": "application/json",
                                 "Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]}})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
"""


def forged(server: StudentServer, code: str) -> Any:
    """Run :data:`FORGE` and ``code`` (which prints one JSON value) in the student's kernel."""
    ran = server.run_code(FORGE + code, path="forge.ipynb")
    assert ran.error is None, ran.traceback
    return json.loads(ran.stdout.strip().splitlines()[-1])
