"""The stand-in itself: its lifecycle, the faults scripted for it, and what it recorded."""

from __future__ import annotations

import argparse
import threading
import time
from collections import deque
from typing import Any

from .faults import Fault
from .handler import Handler, Server
from .jobs import Jobs, JobState
from .oauth import Tokens
from .paths import TOKEN_PATH
from .records import Recording, Request


class StandIn:
    """The server. Thread-safe accessors; use as a context manager or start()/stop()."""

    def __init__(
        self,
        client_id: str = "standin-client",
        client_secret: str = "standin-secret",
        *,
        port: int = 0,
        latency: float = 0.0,
        job_delay: float = 0.0,
        token_ttl: int = 3600,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.latency = latency  # every event POST: its job made first, answered after this delay
        # Seconds from accepting an envelope to its job's completion (its events stored). 0:
        # completed by the time anything can ask about it, which keeps tests fast.
        self.job_delay = job_delay
        self.token_ttl = token_ttl
        # OneRoster users by email (the official SDK finds the actor's sourcedId this way)
        self.users: dict[str, list[str]] = {}
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._faults: deque[Fault] = deque()
        self._tokens = Tokens()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> StandIn:
        handler = type("Handler", (Handler,), {"standin": self})
        server = Server(("127.0.0.1", self._port), handler)
        server.daemon_threads = True
        server.block_on_close = False  # hanging handlers must not hold up stop()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The Caliper base URL (``base_url`` for the official client)."""
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    # -- scripting and inspection ----------------------------------------------------------

    def script(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        """Forget the scripted faults and everything recorded (not the tokens, nor the users)."""
        with self._lock:
            self._faults = deque()
            self._recording = Recording()
            self._jobs = Jobs(self._recording.accept)

    @property
    def received(self) -> list[dict[str, Any]]:
        """Events stored by completed jobs, in order (duplicates included, if any were sent)."""
        self._jobs.process_due()
        return self._recording.received

    @property
    def received_ids(self) -> list[str]:
        return [event["id"] for event in self.received]

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        """The envelopes whose jobs were processed (completed, or failed having stored part)."""
        self._jobs.process_due()
        return self._recording.envelopes

    @property
    def jobs(self) -> dict[str, JobState]:
        """Every job's state by job id, in order of submission."""
        return self._jobs.states()

    def forget_finished_jobs(self) -> int:
        """Forget the completed and failed jobs (their status answers 404), keeping what they
        stored, as Timeback's queue expires old jobs."""
        return self._jobs.forget_finished()

    def job_events(self, job_id: str) -> list[str]:
        """The event ids of the envelope a job was made for."""
        return self._jobs.events_of(job_id)

    @property
    def requests(self) -> list[Request]:
        return self._recording.requests

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    # -- used by the handler ---------------------------------------------------------------

    def _note(self, request: Request) -> Fault | None:
        """Record a request; the scripted fault that answers it, if the next one is for its path."""
        self._jobs.process_due()
        with self._lock:
            # Under the one lock, so the request the log shows first is the one faulted first.
            self._recording.note(request)
            if self._faults and self._faults[0].path == request.path:
                return self._faults.popleft()
        return None

    def _submit(self, envelope: dict[str, Any], fault: Fault | None) -> str:
        """Take a valid envelope as a Timeback job and answer its id; the job is processed
        ``job_delay`` seconds later (or as a ``job_*`` fault says), as :mod:`.jobs` tells."""
        delay = fault.seconds if fault is not None and fault.seconds else self.job_delay
        if fault is not None and fault.body is not None:
            return self._jobs.submit(envelope, delay, fail=str(fault.body), keep=fault.keep)
        return self._jobs.submit(envelope, delay)

    def _pause(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def main(argv: list[str] | None = None) -> None:
    """``python -m timeback_jupyter.testing.standin``: serve until interrupted, print the URL."""
    parser = argparse.ArgumentParser(description="A local stand-in for Timeback's Caliper API")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client-id", default="standin-client")
    parser.add_argument("--client-secret", default="standin-secret")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--job-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    stand = StandIn(
        args.client_id,
        args.client_secret,
        port=args.port,
        latency=args.latency,
        job_delay=args.job_delay,
    )
    with stand:
        print(stand.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
