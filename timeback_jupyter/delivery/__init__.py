"""Outbox delivery: an asyncio drainer and the sinks it sends through.

The drainer (:mod:`.drainer`) takes the oldest pending events of the store's outbox, wraps
each batch in one Caliper envelope and hands it to a sink. A sink either accepts the envelope,
raises :class:`RetryableError` (network, timeout, 429, 5xx: try again later, same event ids) or
:class:`RejectedError` (the envelope will never be accepted: its events go to dead letters).

Delivered means stored by Timeback, and Timeback stores events asynchronously: it answers an
envelope with a job id, and the events exist (``GET /caliper/events/{id}``) only once that job
has completed. So an event goes pending -> inflight (claimed, committed before the send) ->
inflight with the job's id (the answer; ``store/jobs.py``) -> sent (the job completed, learned
by polling it with the official client's ``jobs.get_status`` on a backoff: :mod:`.jobs`). A job
that failed loses its events: those not found upstream go again, same ids, in their place in the
queue, and after ``job_failures_max`` failed jobs to the dead letters with the reason. An event
whose job is still pending is never sent again, whatever else happens. The local sink has no
jobs: an event is delivered when it is kept.

A send whose outcome is unknown (a timeout, a connection dropped before the answer, a process
killed mid-send) leaves its events inflight without a job id, and nothing can tell us that job
id: the answer that carried it is lost, and Timeback can list neither its jobs nor the events a
job has not stored yet. The request may never have arrived; or its job may be queued; or
Timeback may still be holding the request it stopped answering and make the job later. Any
of these says "not found" today. So, before anything newer is sent (:mod:`.settle`):

- an event found upstream is delivered (acked): found means a job stored it;
- an event not found is sent again only once no job can still store it: ``job_timeout``
  seconds (``c.Timeback.job_timeout``, 5 min by default) after its claim (``claimed_at``, kept
  in the store, so a restart waits out the same deadline; the claim comes just before the
  request, which may first wait for an OAuth token). Before that it stays inflight and is
  looked up again on a backoff; a lookup that cannot answer waits too;
- a sink without jobs (the local sink) stores on acceptance or never: not found is lost at once.

That deadline is the one assumption: a request Timeback gives no trace of within it will never
be stored. Make it longer than a token fetch plus Timeback's worst stall and job backlog
(several ``request_timeout``s at least); shorter risks a duplicate, longer only delays a
re-send after a lost answer. Timeback does not deduplicate, so this rule is the only guard;
stable event ids keep every retry the same events.

``Sink`` is what a sink provides (:mod:`.sink`); :class:`LocalSink` keeps events on this
machine, :class:`TimebackSink` sends them with the official SDK; :func:`make_sink` picks the
one ``c.Timeback.sink`` names. Everything importable from ``timeback_jupyter.delivery`` before
it became a package still is.
"""

from ..connection import caliper_provider  # where it was before it moved
from .drainer import BATCH_PAUSE, LOG, Drainer
from .errors import DeliveryError, DrainerBusy, RejectedError, RetryableError
from .local import LocalSink
from .make import make_sink
from .ports import OutboxPort
from .report import DrainReport
from .sink import JobOutcome, Sink, check_envelope
from .timeback import TimebackSink

__all__ = [
    "BATCH_PAUSE",
    "LOG",
    "DeliveryError",
    "DrainReport",
    "Drainer",
    "DrainerBusy",
    "JobOutcome",
    "LocalSink",
    "OutboxPort",
    "RejectedError",
    "RetryableError",
    "Sink",
    "TimebackSink",
    "caliper_provider",
    "check_envelope",
    "make_sink",
]
