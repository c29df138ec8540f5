"""The district benchmark's plan: the paces it runs, each pace's phases and their rates, and the
start times it hands the load generators (:mod:`.district_load`).

A pace is what the relay tells students' servers (``send_every``): a server then sends its
pending heartbeats together, one envelope every pace seconds, so an envelope holds pace / 15
windows and the relays take students / pace requests a second for the same events.
``DISTRICT_PACE`` names the paces, in seconds: ``15`` (default: one envelope per heartbeat, as
servers send without a pace) or several, ``15,60``, run one after the other on the same relays
(the outbox drained between them) and reported side by side.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STUDENTS = 20_000
INTERVAL = 15.0  # a heartbeat window, as the servers' tracker writes them
COMPLETION_EVERY = 40  # a 10-minute activity: a completion with every 40th window
# The ramp climbs before the district phase: once a step overloads the relays, the requests
# they still hold (cut off, counted) spoil every later step.
RAMP = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75)
GAP = 3.0  # between phases: answers due at a phase's end land in it; later ones are cut off


def paces(text: str | None = None) -> list[int]:
    """The paces to run, from ``text`` (default ``$DISTRICT_PACE``, else 15): whole multiples of
    the 15-second window, comma-separated."""
    text = os.environ.get("DISTRICT_PACE", "15") if text is None else text
    out = []
    for part in text.split(","):
        try:
            pace = float(part)
        except ValueError:
            pace = -1.0
        if pace <= 0 or pace % INTERVAL:
            raise ValueError(
                f"DISTRICT_PACE={text!r}: each pace must be a positive multiple of "
                f"{INTERVAL:g} seconds (a heartbeat window), e.g. 15 or 15,60"
            )
        out.append(int(pace))
    return out


def _floats(name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{name}={text!r}: a comma-separated list of numbers") from None


def _rate(n: int, m: float) -> tuple[float, float]:
    """(share of the students, window) that offers ``m`` times the district's heartbeat rate
    (STUDENTS every INTERVAL): fewer students at 15 s below what ``n`` give, else all of them
    with shorter windows (a population smaller than the district's sends more often)."""
    wanted = m * STUDENTS / INTERVAL
    if wanted <= n / INTERVAL:
        return wanted * INTERVAL / n, INTERVAL
    return 1.0, n / wanted


def phases(quick: bool, n: int, pace_list: list[int]) -> list[dict[str, Any]]:
    """The first envelopes (every student once, one window), then per pace the ramp's steps
    and the district's rate. ``DISTRICT_SECONDS`` sets every step's length (default 30 s, 20
    quick; the district phase 90, 60 quick), ``DISTRICT_RAMP`` the ramp's multipliers."""
    seconds = _floats("DISTRICT_SECONDS", ())
    if len(seconds) > 1 or any(x <= 0 for x in seconds):
        raise ValueError(f"DISTRICT_SECONDS={seconds}: one length in seconds, above 0")
    step_s = seconds[0] if seconds else (20.0 if quick else 30.0)
    district_s = seconds[0] if seconds else (60.0 if quick else 90.0)
    out: list[dict[str, Any]] = [
        {"name": "first", "group": "first", "pace": None, "interval": INTERVAL,
         "window": INTERVAL, "windows": 1, "seconds": 0.0, "share": 1.0, "closed": True,
         "events_per_envelope": 1.0},
    ]  # fmt: skip
    for pace in pace_list:
        k = int(pace // INTERVAL)
        for m in (*_floats("DISTRICT_RAMP", RAMP), 1.0):
            share, window = _rate(n, m)
            name, length = (f"ramp x{m:g}", step_s) if m != 1.0 else ("district", district_s)
            out.append({"name": name, "group": f"pace{pace}", "pace": pace,
                        "interval": window * k, "window": window, "windows": k,
                        "seconds": length, "share": share, "multiplier": m,
                        "events_per_envelope": k * (1 + 1 / COMPLETION_EVERY)})  # fmt: skip
    for phase in out:
        phase["offered_envelopes_per_s"] = phase["share"] * n / phase["interval"]
        phase["drain"] = GAP  # later answers are cut off, counted with their wait
    return out


def groups(plan: list[dict[str, Any]]) -> list[str]:
    """The groups after the first phase, in order (one per pace)."""
    return list(dict.fromkeys(p["group"] for p in plan[1:]))


def write_schedule(sync: Path, group: str, plan: list[dict[str, Any]], start: float) -> None:
    """Give ``group``'s phases their start times from ``start`` (a phase, its drain, a second)
    and hand them to the generators waiting for them."""
    mine = [p for p in plan if p["group"] == group]
    for phase in mine:
        phase["start"] = start
        start += phase["seconds"] + phase["drain"] + 1.0
    part = sync / f"schedule-{group}.json.part"
    part.write_text(json.dumps([p["start"] for p in mine]))
    part.rename(sync / f"schedule-{group}.json")


def ready(sync: Path, group: str, generators: int) -> bool:
    """Whether every generator is done with what came before ``group`` and waits for it."""
    return all((sync / f"ready-{group}-{g}").exists() for g in range(generators))
