"""A real HTTP server on 127.0.0.1 standing in for Timeback's token and Caliper endpoints.

It speaks what the official ``timeback_caliper`` client speaks (OAuth2 client credentials with
HTTP Basic, ``POST /caliper/event``, ``POST /caliper/event/validate``, ``GET
/caliper/events/{id}``, ``GET /jobs/{id}/status``) and validates every envelope and event with
the official models, so a test that passes here sent what Timeback accepts. As Timeback does, it
answers an envelope with a job id and processes the job later (``job_delay``, 0 by default):
waiting, active, then completed (the events stored and visible) or failed. Faults are scripted
per request::

    with StandIn(job_delay=0.5) as api:
        api.script(Fault.rate_limited(30), Fault.error(503), Fault.hang(2, then="drop"))
        api.script(Fault.job_fails("database busy"), Fault.job_slow(5))
        ...
        assert api.received_ids == [...]

Run it by hand with ``python -m timeback_jupyter.testing.standin --port 8765`` (prints its URL).

The parts: :mod:`.server` (the :class:`StandIn`), :mod:`.handler` (HTTP and routing),
:mod:`.faults`, :mod:`.jobs` (Timeback's asynchronous processing), :mod:`.validation` (the
official models), :mod:`.records` (requests and stored events), :mod:`.oauth` and
:mod:`.oneroster`, :mod:`.samples` (real events for tests).
"""

from .faults import Fault
from .paths import EVENT_PATH, JOB_STATUS_PATH, TOKEN_PATH, USERS_PATH, VALIDATE_PATH
from .records import Request
from .samples import SENSOR, completion_event, time_spent_events
from .samples import _actor as _actor
from .samples import _target as _target
from .server import StandIn, main

__all__ = [
    "EVENT_PATH",
    "JOB_STATUS_PATH",
    "SENSOR",
    "TOKEN_PATH",
    "USERS_PATH",
    "VALIDATE_PATH",
    "Fault",
    "Request",
    "StandIn",
    "completion_event",
    "main",
    "time_spent_events",
]
