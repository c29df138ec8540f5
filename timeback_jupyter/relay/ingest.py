"""The relay's core: envelopes from students' servers in, the truth for Timeback out.

:class:`Relay` takes one Caliper envelope from one hub user at a time (the service face has
already asked the hub who sent it) and applies the rules of :mod:`.rules` to each event, all
of them in ONE transaction, acknowledged only after its commit:

- the actor is the hub user's (:class:`.users.UserDirectory`); whatever actor, email or student
  id the event carries is ignored, and its object is rebuilt from the relay's catalog;
- idempotent by event id, per user: the same id and body again is a duplicate (no-op), the same
  id with another body is refused;
- per hub user, the active seconds forwarded over any interval never exceed its length, across
  all their servers and runs; a window longer than ``max_window`` is cut to it, an event from
  beyond ``future_skew`` ahead of the relay's clock is refused, and every cut is recorded
  (the answer, :meth:`Relay.record`, :meth:`Relay.status`);
- one completion per run (a database constraint); its XP is recomputed by ``xp.award_xp`` from
  the catalog's expected XP, threshold and ``xpWithoutQuestions``, the attempt the relay counts
  and the active seconds it forwarded for the run; an activity not in the catalog earns 0 XP
  (with the reason) or is refused, as ``unknown_activity`` says;
- what is accepted goes to the relay's outbox (:mod:`.outbox`) in the same transaction, for the
  same ``delivery.Drainer`` a server uses.

What no relay can know. A student's server runs as the student, so everything it reports is the
student's word: presence and activity from it are exactly as trustworthy as a browser's (a
kernel can post "active" with its own token; a forged heartbeat looks like a real one), and
the totals of questions it reports on completion are the notebook's. The relay bounds what it
cannot check: at most wall-clock time per user whatever the number of servers, windows no
longer than the clock writes them, nothing from the future. And it makes sure time alone never
earns XP: every catalog activity has an expected XP (required), so XP comes from the mastery
rules (questions, threshold, attempt) and never from minutes; forged presence can only make a
run look *wasteful* (less XP), never more. Only answers the relay checks itself would close
the last gap; that is a grader's job, not a time tracker's.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..caliper import Actor
from ..delivery.errors import RejectedError
from ..delivery.sink import check_envelope
from ..identity import IdentityError
from ..store import StoreError
from ..xp import XpPolicy
from . import incoming, records
from .batching import BatchTiming, GroupCommit
from .catalog import Catalog
from .database import RelayDatabase, RelayDatabaseUnavailable
from .outbox import RelayOutbox
from .rules import MAX_SPAN_MS, Rules, Turn, UnknownActivity, apply, wants
from .state import BatchState, lock_users
from .users import HubUser, UserDirectory

LOG = logging.getLogger("timeback_jupyter.relay")
MAX_WINDOW = 16.0  # the clock's 15 s windows, and a second of slack for float sums
FUTURE_SKEW = 10.0  # how far ahead of the relay a server's clock may be
MAX_EVENTS = 1000  # per envelope (a server's drainer sends 50)
# How long the forwarder is left asleep after a commit queued events: at a few envelopes a
# second, waking it per commit made every event pay a whole delivery (claim, send, record the
# job, poll it: ~8 ms of CPU an event at 27 envelopes/s); a quarter second later it finds them
# all and sends full batches. Timeback sees them at most this much later.
NOTIFY_LINGER = 0.25
# Group commits in flight at once per process on PostgreSQL (relay/batching.py: lanes), each
# on a pooled connection of its own; SQLite has one writer, so one. One by default: lanes were
# added when a commit took ~0.4 s; with its statements planned right (revisions 0005, 0006) a
# commit takes ~15 ms, and at the district's pace-60 load one lane's fuller batches gave p99
# 148 ms where three gave 406 (same run, benchmarks/district.py, 2026-12-04).
COMMIT_LANES = 1
STATUSES = ("accepted", "duplicate", "refused")
# Container allocations between the cyclic GC's young collections (Python's default: 700).
# An envelope's JSON, rows and events are a few hundred containers freed by refcount; with the
# default a collection ran every envelope or two, and the GC was a tenth of the relay's CPU.
GC_YOUNG_THRESHOLD = 10_000
# the hub user's name, their actor, the events read
Envelope = tuple[str, Actor, list[incoming.Prepared]]


def settle_heap() -> None:
    """Once the relay has started: what startup made (modules, SQLAlchemy, tornado, the
    catalog) is kept out of the cyclic GC's scans (``gc.freeze``), and the young generation is
    collected every :data:`GC_YOUNG_THRESHOLD` allocations, not 700. Measured at saturation,
    4 windows an envelope: the GC's CPU 50 -> under 1 us per event."""
    gc.freeze()
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)


def _user_of(envelope: Envelope) -> str:
    return envelope[0]


class InvalidEnvelope(ValueError):
    """The envelope itself is malformed (the face answers 400 ``{message, reason}``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed Caliper envelope: {reason}")


class RelayUnavailable(RuntimeError):
    """Nothing was stored and the sender should try again later (the face answers 503):
    the hub user could not be turned into an actor (OneRoster unreachable, not rostered)."""


@dataclass(frozen=True)
class IngestResult:
    """The outcome of one envelope, per event and counted; ``to_dict`` is the HTTP answer."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)

    @functools.cached_property
    def counts(self) -> dict[str, int]:
        """Events by status (each of :data:`STATUSES`, 0 if none), counted once: the answer,
        the metrics and the traffic summary all read it."""
        counted = dict.fromkeys(STATUSES, 0)
        for event in self.events:
            counted[event["status"]] = counted.get(event["status"], 0) + 1
        return counted

    def to_dict(self) -> dict[str, Any]:
        return {"events": self.events, **self.counts}


class Relay:
    """The relay's core: rules, store and outbox, driven by injected time (``now``)."""

    def __init__(
        self,
        db: RelayDatabase,
        catalog: Catalog,
        users: UserDirectory,
        policy: XpPolicy | None = None,
        unknown_activity: UnknownActivity = "zero",
        sensor: str | None = None,
        now: Callable[[], float] = time.time,
        *,
        max_window: float = MAX_WINDOW,
        future_skew: float = FUTURE_SKEW,
        notify: Callable[[], None] | None = None,
        notify_linger: float = NOTIFY_LINGER,
        commit_lanes: int | None = None,
    ) -> None:
        """``sensor`` overrides the envelope sensor of every forwarded event (default: each
        course's sensor in the catalog). ``notify`` (``drainer.notify``) is called
        ``notify_linger`` seconds after a commit that queued events, once for all the commits
        meanwhile (0: at once, after each). ``commit_lanes``: group commits in flight at once
        (default :data:`COMMIT_LANES` on PostgreSQL; SQLite always 1)."""
        if unknown_activity not in ("zero", "refuse"):
            raise ValueError(
                f"unknown_activity must be 'zero' or 'refuse', got {unknown_activity!r}"
            )
        if not 1 <= max_window <= MAX_SPAN_MS / 1000:
            raise ValueError(f"max_window must be 1 to {MAX_SPAN_MS // 1000} s, got {max_window}")
        if not 0 <= future_skew <= 3600:
            raise ValueError(f"future_skew must be 0 to 3600 s, got {future_skew}")
        self.db = db
        self.catalog = catalog
        self.users = users
        self.rules = Rules(
            catalog=catalog,
            policy=policy or XpPolicy(),
            unknown_activity=unknown_activity,
            sensor=sensor,
            max_window_ms=round(max_window * 1000),
            future_skew=float(future_skew),
        )
        self.now = now
        self.notify = notify
        self.notify_linger = float(notify_linger)
        self._notify_due: asyncio.TimerHandle | None = None
        self.outbox = RelayOutbox(db, now=now)
        # Each transaction holds every envelope that waited for it; on PostgreSQL a few at once,
        # never two holding the same hub user (relay/batching.py).
        lanes = 1 if db.dialect != "postgresql" else commit_lanes or COMMIT_LANES
        self._commits: GroupCommit[Envelope, list[dict[str, Any]]] = GroupCommit(
            self._apply, lanes=lanes, key=_user_of
        )

    def observe_commits(self, observe: Callable[[BatchTiming], None] | None) -> None:
        """Call ``observe`` (on the event loop) with each group commit's timing."""
        self._commits.observe = observe

    async def ingest(self, user: HubUser, envelope: Any) -> IngestResult:
        """Apply the rules to every event of ``envelope`` from ``user``, in one transaction.

        Returns only after the commit. Raises :class:`InvalidEnvelope` (nothing stored),
        :class:`RelayUnavailable` (nothing stored, try later) or ``RelayStoreError`` (rolled
        back, try later).
        """
        if not isinstance(user, HubUser):
            raise TypeError("user must be a HubUser (the hub's answer for the token)")
        try:
            data = check_envelope(envelope)
        except RejectedError as err:
            raise InvalidEnvelope(err.reason) from None
        if len(data) > MAX_EVENTS:
            raise InvalidEnvelope(f"more than {MAX_EVENTS} events in one envelope")
        try:
            actor = await self.users.actor_for(user)
        except IdentityError as err:
            raise RelayUnavailable(f"cannot tell Timeback who {user.name!r} is: {err}") from None
        prepared = [incoming.prepare(user.name, event) for event in data]
        outcomes = await self._commits.submit((user.name, actor, prepared))
        if self.notify is not None and any(e["status"] == "accepted" for e in outcomes):
            self._wake_forwarder()
        return IngestResult(outcomes)

    def _wake_forwarder(self) -> None:
        if self.notify_linger <= 0:
            self._notify_now()
        elif self._notify_due is None:
            loop = asyncio.get_running_loop()
            self._notify_due = loop.call_later(self.notify_linger, self._notify_now)

    def _notify_now(self) -> None:
        self._notify_due = None
        if self.notify is not None:
            self.notify()

    def _apply(self, envelopes: list[Envelope]) -> list[list[dict[str, Any]] | Exception]:
        """Envelopes in one transaction: their users locked, their rows read and written in a
        few statements (:mod:`.state`). If that fails (a bug, a constraint, a deadlock), each
        envelope is applied again alone, so only the one at fault is answered with its error."""
        try:
            return self._transaction(envelopes)
        except RelayDatabaseUnavailable:
            # The database is gone, not an envelope at fault: none of the batch is stored and
            # all hear "unavailable" (503 + Retry-After); retrying each alone would only wait
            # on a dead server once per envelope.
            raise
        except Exception as err:
            if len(envelopes) == 1:
                return [self._failed(envelopes[0], err)]
        out: list[list[dict[str, Any]] | Exception] = []
        for envelope in envelopes:
            try:
                out.extend(self._transaction([envelope]))
            except Exception as err:
                out.append(self._failed(envelope, err))
        return out

    def _failed(self, envelope: Envelope, err: Exception) -> Exception:
        if isinstance(err, StoreError):
            return err
        LOG.error("the relay failed on an envelope of %s", envelope[0], exc_info=err)
        return err

    def _transaction(self, envelopes: list[Envelope]) -> list[list[dict[str, Any]] | Exception]:
        max_window = self.rules.max_window_ms
        with self.db.write() as conn:
            now = self.now()
            lock_users(conn, (user for user, _, _ in envelopes), now)
            state = BatchState(conn)
            state.load(
                [w for user, _, events in envelopes for w in wants(user, events, max_window)],
                MAX_SPAN_MS,
            )
            out: list[list[dict[str, Any]] | Exception] = []
            for user, actor, events in envelopes:
                turn = Turn(state=state, user=user, actor=actor, now=now)
                out.append([apply(self.rules, turn, event) for event in events])
            state.flush(now)
        return out

    def lookup(self, user: HubUser, event_id: str) -> dict[str, Any] | None:
        """``{"id", "status"}`` of an event ``user`` sent, or None if never received (what a
        server's ``exists`` asks before sending an event again)."""
        key = incoming.stored_id(user.name, event_id)
        found = records.received_status(self.db, key)
        return None if found is None else {"id": event_id, "status": found}

    def record(self, user: HubUser) -> dict[str, Any]:
        """The student's own record: active time forwarded and cut, runs, completions with
        their XP and reasons, the latest refusals."""
        return records.user_record(self.db, user.name)

    def status(self) -> dict[str, Any]:
        """For admins: outbox depth, Timeback's jobs, counts, what was cut, catalog problems."""
        return {
            **records.relay_counts(self.db),
            "outbox": self.outbox.stats(),
            "jobs": self.outbox.job_stats(),  # pending, failed, confirmed, events_awaiting
            "catalog_problems": self.catalog.problems(),
            "unknown_activity": self.rules.unknown_activity,
        }
