"""The relay's process for :mod:`.relay_cpu`: ``python -m benchmarks.relay_cpu_child JOB.json``."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def child(job_path: str) -> None:
    """The relay, as ``relay.app.serve`` builds it, with or without its forwarder. SIGUSR1
    starts a phase (its name in ``phase_file``), SIGUSR2 ends it: each batch's size, wall and
    CPU time and the event loop's lags then go to ``<phase_file>.<phase>.json`` (and the
    profile, if asked)."""
    job = json.loads(Path(job_path).read_text())
    if job.get("code"):  # another checkout's relay (a before/after comparison)
        sys.path.insert(0, job["code"])
    import cProfile
    import logging

    from timeback_jupyter.config import Timeback
    from timeback_jupyter.relay import app as relay_app
    from timeback_jupyter.relay import ingest
    from timeback_jupyter.relay.handlers import MAX_BODY_BYTES, Face
    from timeback_jupyter.relay.logs import setup_logging
    from timeback_jupyter.relay.metrics import RelayMetrics
    from timeback_jupyter.relay.settings import Relay as RelaySettings

    settings = RelaySettings(**job["relay"])
    timeback = Timeback(**job["timeback"])
    setup_logging(settings.log_format, logging.INFO, settings.replica_id)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    state: dict[str, Any] = {"batches": []}
    apply = ingest.Relay._apply

    def timed(self: Any, envelopes: list[Any]) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return apply(self, envelopes)
        finally:
            state["batches"].append(
                (len(envelopes), time.perf_counter() - wall, time.thread_time() - cpu)
            )

    ingest.Relay._apply = timed  # type: ignore[method-assign]  (bound by each new Relay)
    spent: dict[str, float] = {}  # RELAY_CPU_PARTS
    if os.environ.get("RELAY_CPU_PARTS"):
        _time_parts(spent)

    state["lags"] = []
    state["gc"] = [0.0, 0, 0.0]  # seconds in the cyclic GC, collections, when the current began

    def gc_timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            state.setdefault("gens", [0, 0, 0])[info["generation"]] += 1
            state["gc"][2] = time.thread_time()
        else:
            state["gc"][0] += time.thread_time() - state["gc"][2]
            state["gc"][1] += 1

    gc.callbacks.append(gc_timed)

    async def probe() -> None:
        """How late a 10 ms sleep wakes: the time the event loop was held by other work (a
        callback that blocks, or the GIL held by the commit's thread)."""
        while True:
            began = time.perf_counter()
            await asyncio.sleep(0.01)
            state["lags"].append(time.perf_counter() - began - 0.01)

    def start_phase() -> None:
        spent.clear()
        state["phase"] = Path(job["phase_file"]).read_text().strip()
        state["batches"] = []
        state["lags"] = []
        state["gc"][:2] = [0.0, 0]
        if state["phase"] == job.get("profile_phase"):
            state["profile"] = cProfile.Profile(time.thread_time)
            state["profile"].enable()

    def end_phase() -> None:
        out = job["phase_file"] + "." + state.get("phase", "?")
        Path(out + ".part").write_text(
            json.dumps(
                {
                    "batches": state["batches"],
                    "lags": state["lags"],
                    "gc": state["gc"][:2],
                    "gens": state.get("gens"),
                    "parts": spent,
                }
            )
        )
        os.replace(out + ".part", out + ".json")
        p = state.pop("profile", None)
        if p is not None:
            p.disable()
            p.dump_stats(job["profile_path"] + ".part")
            os.replace(job["profile_path"] + ".part", job["profile_path"])

    if job.get("profile_phase"):
        # Profiling only: the group commit's transaction runs on the loop's thread, so the
        # profile's clock (this thread's CPU time) sees all of the relay's work, exactly.
        async def inline(fn: Any, *args: Any) -> Any:
            return fn(*args)

        asyncio.to_thread = inline  # type: ignore[assignment]

    async def ingest_only() -> None:
        from tornado import httpserver

        auth = relay_app.hub_auth(settings, os.environ)
        parts = relay_app.build_parts(settings, timeback, os.environ)
        parts.relay.notify = None  # the forwarder is not running: nothing to wake
        face = Face(parts.relay, auth, settings.service_name, parts.drainer)
        app = relay_app.make_app(
            face, settings.prefix, metrics=RelayMetrics(parts.db, parts.relay.now)
        )
        server = httpserver.HTTPServer(app, xheaders=True, max_body_size=MAX_BODY_BYTES)
        server.listen(settings.port, settings.ip)
        settle = getattr(ingest, "settle_heap", None)  # as serve() does (not in older code)
        if settle is not None:
            settle()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        server.stop()
        await parts.aclose()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, start_phase)
        loop.add_signal_handler(signal.SIGUSR2, end_phase)
        state["probe"] = asyncio.create_task(probe())
        if job["forwarder"]:
            await relay_app.serve(settings, timeback, os.environ)
        else:
            await ingest_only()

    asyncio.run(main())


def _time_parts(parts: dict[str, float]) -> None:
    """``RELAY_CPU_PARTS=1``: the CPU (of the thread that ran it) spent in each of a few parts
    of the ingest, summed over the phase; a part inside another counts in both."""
    from timeback_jupyter.relay import handlers, incoming, ingest, state

    def wrap(owner: Any, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def timed(*args: Any, **kw: Any) -> Any:
            began = time.thread_time()
            try:
                return fn(*args, **kw)
            finally:
                parts[label] = parts.get(label, 0.0) + time.thread_time() - began

        setattr(owner, name, timed)

    wrap(incoming, "prepare", "prepare")
    wrap(ingest, "apply", "rules")
    wrap(ingest, "lock_users", "sql_lock")
    wrap(state.BatchState, "load", "sql_load")
    wrap(state.BatchState, "flush", "sql_flush")
    wrap(state.BatchState, "runs_of_activity", "sql_runs")
    wrap(ingest.Relay, "_transaction", "transaction")
    wrap(handlers.RelayHandler, "json_body", "json_body")
    wrap(handlers.RelayHandler, "answer", "answer")
    wrap(handlers.RelayHandler, "hub_user", "hub_user_sync")


if __name__ == "__main__":
    child(sys.argv[1])
