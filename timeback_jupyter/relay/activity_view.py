"""One activity's page: how long students took to complete it against its expected XP, so an
author can see whether the expected XP is calibrated (no tornado; read from the relay's store).

What the figures assume, from Timeback's XP system (``xp.py``, ``research/hub-relay.md``): 1 XP
is 1 minute of focused learning, and an activity's expected XP is a content constant set from a
competent person's timed speed-run, not from student averages. So the expected XP is read as
the focused minutes a competent person needs, students are expected to take about that or
longer, and a mastered run with more than ``XpPolicy.wasteful_after`` x those minutes earns only
part of the XP ("wasteful"). A run's time to completion is its forwarded active time: the same
figure ``xp.award_xp`` judged when the relay recorded the completion (a server closes a run
when it completes it, so no time is added after).

One point per completed run: a student who completed the activity twice is two points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ..config import CatalogActivity, Course
from ..xp import XpPolicy
from .catalog import Catalog
from .database import RelayDatabase
from .schema import completions, runs

# Bin widths a reader takes in at a glance, in minutes.
NICE_WIDTHS = (0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 240, 480)
TARGET_BINS = 12
FULL, PARTIAL, ZERO = "full", "partial", "zero"

# What each of xp.award_xp's rules (and the relay's own) means, for a reader of the outcomes.
RULES = {
    "perfect_first_attempt": "every question right on the first attempt: expected XP + bonus",
    "mastered": "mastered: the expected XP",
    "wasteful": "mastered, but far slower than expected: part of the expected XP",
    "focused_minutes": "no expected XP declared: 1 XP per focused minute",
    "below_80": "accuracy below 80%",
    "not_mastered": "below the mastery threshold",
    "unverified": "no questions, and the author did not allow XP without questions",
    "not_in_catalog": "the activity was not in the catalog when completed",
}


class NotFound(LookupError):
    """No such activity in the catalog (the message names it)."""


class Ambiguous(ValueError):
    """The activity id is in several courses; the message names them."""


def find(catalog: Catalog, slug: str, course: str | None = None) -> tuple[Course, CatalogActivity]:
    """The catalog's activity ``slug`` (of the course named ``course``, if given)."""
    found = [
        (c, a)
        for c in catalog.app.courses
        for a in c.activities
        if a.id == slug and (course is None or c.name == course)
    ]
    if not found:
        where = f" in course {course!r}" if course is not None else ""
        raise NotFound(f"the school's catalog has no activity {slug!r}{where}")
    if len(found) > 1:
        names = ", ".join(repr(c.name) for c, _ in found)
        raise Ambiguous(f"activity {slug!r} is in several courses ({names}): add ?course=<name>")
    return found[0]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted ``values``, linear between closest ranks."""
    rank = (len(values) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return values[low] + (values[high] - values[low]) * (rank - low)


@dataclass(frozen=True)
class Bin:
    low: float  # minutes, included
    high: float  # minutes, excluded
    count: int

    @property
    def label(self) -> str:
        return f"{self.low:g} to {self.high:g} min"


def bin_width(span: float) -> float:
    """The smallest nice width that covers ``span`` minutes in about TARGET_BINS bins."""
    return next((w for w in NICE_WIDTHS if span / w <= TARGET_BINS), NICE_WIDTHS[-1])


def histogram(minutes: list[float], expected: float) -> list[Bin]:
    """Bins of equal width from 0 past both the longest run and the expected minutes."""
    span = max([expected, *minutes])
    width = bin_width(span)
    n = min(int(span // width) + 1, 200)
    counts = [0] * n
    for m in minutes:
        counts[min(int(m // width), n - 1)] += 1
    return [Bin(i * width, (i + 1) * width, c) for i, c in enumerate(counts)]


@dataclass
class OutcomeGroup:
    kind: str  # full | partial | zero
    rule: str
    meaning: str
    count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # reason -> completions


@dataclass
class ActivityView:
    course: str
    slug: str
    name: str
    expected_xp: float
    wasteful_after: float
    scope: str  # whose runs, in words
    minutes: list[float]  # active minutes of each completed run, ascending
    students: int  # students with a completion
    started: int  # runs begun (completed or not)
    outcomes: list[OutcomeGroup]
    bins: list[Bin]

    @property
    def completions(self) -> int:
        return len(self.minutes)

    @property
    def wasteful_minutes(self) -> float:
        return self.expected_xp * self.wasteful_after

    def quartiles(self) -> tuple[float, float, float] | None:
        """(p25, median, p75) of the minutes to completion; None without completions."""
        if not self.minutes:
            return None
        return tuple(percentile(self.minutes, q) for q in (25, 50, 75))  # type: ignore[return-value]

    @property
    def width(self) -> float:
        return self.bins[0].high - self.bins[0].low

    @property
    def wasteful_charted(self) -> bool:
        """The wasteful limit falls inside the histogram (its last bin ends past the longest
        run and the expected minutes, not necessarily past the limit)."""
        return self.wasteful_minutes <= self.bins[-1].high

    def slower_than_wasteful(self) -> int:
        return sum(1 for m in self.minutes if m > self.wasteful_minutes)

    def faster_than_expected(self) -> int:
        return sum(1 for m in self.minutes if m < self.expected_xp)

    def verdict(self) -> str:
        """What the median says of the expected XP, in words."""
        q = self.quartiles()
        if q is None:
            return "No completions yet: nothing to compare the expected XP with."
        median, expected = q[1], self.expected_xp
        ratio = f"{median / expected:.1f}x" if expected else "n/a"
        if median < expected:
            return (
                f"The median completion ({minutes(median)}) is faster than the expected "
                f"{expected:g} minutes that a competent person's speed-run should take: the "
                "expected XP may be set too high."
            )
        if median > self.wasteful_minutes:
            return (
                f"The median completion ({minutes(median)}, {ratio} the expected "
                f"{expected:g} minutes) is past the wasteful limit of {self.wasteful_minutes:g} "
                "minutes, so most mastered runs earn only part of the XP: the expected XP may "
                "be set too low, or the activity is harder than its author thought."
            )
        return (
            f"The median completion ({minutes(median)}, {ratio} the expected {expected:g} "
            f"minutes) lies between the expected minutes and the wasteful limit of "
            f"{self.wasteful_minutes:g}: consistent with the expected XP."
        )


def minutes(value: float) -> str:
    return f"{value:.1f} min"


def kind_of(xp: float, expected: float | None) -> str:
    if xp <= 0:
        return ZERO
    return FULL if expected is None or xp >= expected else PARTIAL


def _outcomes(rows: Iterable[Any], expected: float) -> list[OutcomeGroup]:
    groups: dict[tuple[str, str], OutcomeGroup] = {}
    for row in rows:
        outcome = row.outcome or {}
        rule = str(outcome.get("rule") or "unknown")
        kind = kind_of(row.xp, outcome.get("expected", expected))
        group = groups.get((kind, rule))
        if group is None:
            meaning = RULES.get(rule, rule)
            group = groups[(kind, rule)] = OutcomeGroup(kind, rule, meaning)
        group.count += 1
        reasons = outcome.get("reasons") or [outcome.get("reason") or "no reason recorded"]
        text = "; ".join(str(r) for r in reasons)
        group.reasons[text] = group.reasons.get(text, 0) + 1
    order = {FULL: 0, PARTIAL: 1, ZERO: 2}
    return sorted(groups.values(), key=lambda g: (order[g.kind], -g.count, g.rule))


def activity(
    db: RelayDatabase,
    course: Course,
    listed: CatalogActivity,
    students: Iterable[str] | None,
    *,
    scope: str,
    policy: XpPolicy | None = None,
) -> ActivityView:
    """The completions of ``listed`` by ``students`` (None: every student the relay has)."""
    policy = policy or XpPolicy()
    where = [runs.c.course == course.name, runs.c.activity == listed.id]
    if students is not None:
        where.append(runs.c.user_name.in_(sorted(set(students))))
    with db.read() as conn:
        started = conn.execute(sa.select(sa.func.count()).select_from(runs).where(*where))
        started_count = int(started.scalar_one())
        done = conn.execute(
            sa.select(runs.c.user_name, runs.c.active_ms, completions.c.xp, completions.c.outcome)
            .join(
                completions,
                sa.and_(
                    completions.c.user_name == runs.c.user_name,
                    completions.c.run_id == runs.c.run_id,
                ),
            )
            .where(*where)
        ).all()
    spent = sorted(r.active_ms / 60_000 for r in done)
    return ActivityView(
        course=course.name,
        slug=listed.id,
        name=listed.name,
        expected_xp=listed.xp,
        wasteful_after=policy.wasteful_after,
        scope=scope,
        minutes=spent,
        students=len({r.user_name for r in done}),
        started=started_count,
        outcomes=_outcomes(done, listed.xp),
        bins=histogram(spent, listed.xp),
    )
