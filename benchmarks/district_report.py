"""The district benchmark's figures: summed from the load generators' records, and rendered.

Events and requests are counted apart: a paced server's envelope (one request) holds several
heartbeat windows (events). Latency is per request; CPU is given per event and per request.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from .common import percentile
from .district_probe import render as probe_lines

TARGET_P99_MS = 100.0
STUDENTS = 20_000
GROUPS = ("relays", "postgres", "hub", "standin", "generators")


def _latency(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    return {
        "p50_ms": statistics.median(values),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values),
    }


def _worst(records: list[dict[str, Any]], name: str) -> dict[str, float]:
    return {q: max(r.get(name, {}).get(q, 0.0) for r in records) for q in ("p50", "p99", "max")}


def _phase(
    phase: dict[str, Any], records: list[dict[str, Any]], lag: list[tuple[float, int, float]]
) -> dict[str, Any]:
    latency = [x for r in records for x in r["latency"]]
    events = sum(r["events"] for r in records)
    unanswered = sum(r.get("late_tasks", 0) for r in records)
    envelopes = len(latency) - unanswered  # answered; the unanswered count as late
    errors = [e for r in records for e in r["errors"]]
    (t0, c0), (t1, c1) = phase["cpu"]
    wall = max(t1 - t0, 1e-9)
    cpu = {g: (c1.get(g, 0.0) - c0.get(g, 0.0)) / wall for g in GROUPS}
    start, end = phase["start"], phase["start"] + phase["seconds"]
    mine = [(t, depth, age) for t, depth, age in lag if start <= t <= end + 3]
    offered = phase["offered_envelopes_per_s"]
    slices = []  # p99 per 5-second slice: how the tail moves within the phase
    for k in range(int(phase["seconds"] // 5)):
        chunk = [lat for r in records for s, lat in zip(r["sent"], r["latency"], strict=True)
                 if 5 * k <= s < 5 * (k + 1)]  # fmt: skip
        if chunk:
            slices.append(round(percentile(chunk, 99), 1))
    seconds = max(phase["seconds"], 1e-9)
    return {
        "seconds": phase["seconds"],
        "pace_s": phase.get("pace"),
        "windows_per_envelope": phase.get("windows", 1),
        "multiplier": phase.get("multiplier", 1.0),
        "offered_envelopes_per_s": offered,
        "offered_events_per_s": offered * phase["events_per_envelope"],
        "envelopes": envelopes,
        "envelopes_per_s": envelopes / seconds,
        "events": events,
        "events_per_s": events / seconds,
        **_latency(latency),
        "p99_per_5s": slices,
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "refused_envelopes": sum(r["refused"] for r in records),
        "unanswered": unanswered,
        "generator_late_start_s": max(r.get("late_start_s", 0.0) for r in records),
        # The generators' own lateness (worst generator): requests made late, and put on a
        # connection late (that, plus waiting for a free one of the pool's).
        **{f"generator_{name}": _worst(records, name) for name in ("made_late_ms", "sent_late_ms")},
        "cpu_share": cpu,
        "relay_cpu_us_per_event": cpu["relays"] * wall / max(events, 1) * 1e6,
        "relay_cpu_us_per_envelope": cpu["relays"] * wall / max(envelopes, 1) * 1e6,
        "pg_cpu_us_per_event": cpu["postgres"] * wall / max(events, 1) * 1e6,
        "hub_cpu_ms_per_envelope": cpu["hub"] * wall / max(envelopes, 1) * 1e3,
        "outbox_max_depth": max((d for _, d, _ in mine), default=0),
        "outbox_max_age_s": max((a for _, _, a in mine), default=0.0),
        "outbox_age_series": [round(a, 1) for _, _, a in mine],
    }


def _ceiling(steps: dict[str, dict[str, Any]]) -> tuple[float | None, str]:
    """The highest ramp step (then the district's rate) whose p99 stayed under 100 ms, in
    events/s taken, climbing until the first step that did not."""
    ceiling = None
    for p in steps.values():
        if p["p99_ms"] >= TARGET_P99_MS or p["errors"] or p.get("unanswered"):
            break
        ceiling = p["events_per_s"]
    note = (
        "the highest ramp step whose p99 stayed under 100 ms (steps: "
        + ", ".join(f"x{p['multiplier']:g} p99 {p['p99_ms']:.0f} ms" for p in steps.values())
        + ")"
    )
    return ceiling, note


def summarize(
    phases: list[dict[str, Any]],
    outs: list[dict[str, Any]],
    lag: list[tuple[float, int, float]],
    tokens_made_s: float,
) -> dict[str, Any]:
    """``first`` (every student's first envelope) and, per pace, its steps and ceiling."""
    out: dict[str, Any] = {"tokens_made_s": tokens_made_s, "paces": {}}
    for i, phase in enumerate(phases):
        figures = _phase(phase, [o["phases"][i] for o in outs], lag)
        if phase.get("pace") is None:
            out["first"] = figures
            continue
        pace = out["paces"].setdefault(str(phase["pace"]), {"phases": {}})
        pace["phases"][phase["name"]] = figures
    for pace in out["paces"].values():
        pace["ceiling_events_per_s"], pace["ceiling_note"] = _ceiling(pace["phases"])
    return out


def paces(m: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(first phase, {pace: its figures}), also from a result written before paces (one
    envelope per heartbeat: pace 15)."""
    if "paces" in m:
        return m["first"], m["paces"]
    steps = dict(m["phases"])
    first = steps.pop("first")
    note = m.get("ceiling_note", "")
    return first, {"15": {"phases": steps, "ceiling_events_per_s": m.get("ceiling_events_per_s"),
                          "ceiling_note": note}}  # fmt: skip


def _per_request(p: dict[str, Any], per_event: float) -> float:
    return per_event * p["events"] / max(p["envelopes"], 1)


def headline(r: dict[str, Any]) -> str:
    _, by_pace = paces(r["metrics"])
    parts = []
    for pace, m in by_pace.items():
        d = m["phases"]["district"]
        ceiling = m.get("ceiling_events_per_s")
        ceiling_text = "below the ramp's first step" if ceiling is None else f"{ceiling:,.0f}"
        parts.append(
            f"pace {pace} s ({d['offered_envelopes_per_s']:,.0f} requests/s offered): "
            f"{d['events_per_s']:,.0f} events/s taken, p99 {d['p99_ms']:,.0f} ms "
            f"(p50 {d['p50_ms']:,.0f}), oldest outbox event {d['outbox_max_age_s']:.0f} s, "
            f"ceiling (p99 < 100 ms) {ceiling_text} events/s"
        )
    d = next(iter(by_pace.values()))["phases"]["district"]
    return (
        f"{r['params']['students']:,} students, offered {d['offered_events_per_s']:,.0f} "
        "events/s; " + "; ".join(parts)
    )


def _share(cpu: dict[str, float]) -> str:
    return ", ".join(f"{g} {cpu[g]:.0%}" for g in GROUPS)


def _row(pace: str, name: str, p: dict[str, Any]) -> str:
    label = f"**{name}**" if name == "district" else name
    seconds = max(p["seconds"], 1e-9)
    return (
        f"| {pace} | {label} | {p['offered_events_per_s']:,.0f} / {p['events_per_s']:,.0f} "
        f"| {p['offered_envelopes_per_s']:,.0f} / {p['envelopes'] / seconds:,.0f} "
        f"| {p['p50_ms']:,.1f} | **{p['p99_ms']:,.1f}** | {p['max_ms']:,.0f} "
        f"| {p['outbox_max_depth']:,} / {p['outbox_max_age_s']:.1f} "
        f"| {p['relay_cpu_us_per_event']:,.0f} / "
        f"{_per_request(p, p['relay_cpu_us_per_event']):,.0f} "
        f"| {p['pg_cpu_us_per_event']:,.0f} | {_share(p['cpu_share'])} "
        f"| {p['errors']} / {p.get('unanswered', 0):,} |"
    )


def render(r: dict[str, Any]) -> str:
    first, by_pace = paces(r["metrics"])
    lines = [
        "| pace s | phase | events/s offered / taken | requests/s offered / taken "
        "| p50 ms (per request) | p99 ms | max ms | outbox: max depth / oldest s "
        "| relay CPU µs per event / per request | PG CPU µs/event | CPU (share of one core) "
        "| errors / unanswered |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        _row("-", "first", first),
    ]
    for pace, m in by_pace.items():
        lines += [_row(pace, name, p) for name, p in m["phases"].items()]
    for pace, m in by_pace.items():
        d = m["phases"]["district"]
        ceiling = m.get("ceiling_events_per_s")
        per_event = {g: d["cpu_share"][g] / max(d["events_per_s"], 1e-9) * 1e6 for g in GROUPS}
        total_ms = sum(per_event.values()) / 1000
        top = "none of the ramp steps" if ceiling is None else f"{ceiling:,.0f} events/s"
        lines += [
            "",
            f"**Pace {pace} s** ({d.get('windows_per_envelope', 1)} window(s) per request). "
            f"Ceiling: {top} ({m['ceiling_note']}). Where the CPU goes in the district "
            "phase, per event taken: "
            + ", ".join(f"{g} {v:,.0f} µs" for g, v in per_event.items())
            + f"; {total_ms:.2f} ms in all ({_per_request(d, total_ms):.2f} ms per request), "
            f"so {d['offered_events_per_s']:,.0f} events/s would need "
            f"{total_ms * d['offered_events_per_s'] / 1000:.1f} cores at that price (this "
            "machine has 2, shared with other work). p99 per 5 s slice (ms): "
            f"{', '.join(f'{x:g}' for x in d['p99_per_5s'])}. Oldest pending outbox event "
            f"every 2 s (s): {', '.join(f'{x:g}' for x in d['outbox_age_series'])}.",
        ]
    lines += probe_lines(r["metrics"].get("probes", {}))
    hub_ms = first["hub_cpu_ms_per_envelope"]
    lines += [
        "",
        f"First envelope of every student ({first['envelopes']:,} in {first['seconds']:.0f} s, "
        f"{first['envelopes'] / max(first['seconds'], 1e-9):,.0f}/s; the hub's token lookup, the "
        f"stand-in's OneRoster lookup, the user's first row): the hub used "
        f"{hub_ms:.1f} ms CPU per lookup, so one hub core verifies "
        f"~{1000 / max(hub_ms, 1e-9):,.0f} tokens/s and a relay "
        f"restart at district scale ({STUDENTS:,} tokens) costs the hub "
        f"{STUDENTS * hub_ms / 1000:,.0f} CPU seconds. With HubAuth's "
        f"cache at the relay's default 60 s, {STUDENTS:,} tokens would cost the hub "
        f"{STUDENTS / 60:,.0f} lookups/s, {STUDENTS / 60 * hub_ms / 1000:.1f} cores: "
        "the benchmark runs with c.Relay.auth_cache_seconds = "
        f"{r['params']['auth_cache_seconds']}. Users and tokens made in "
        f"{r['metrics']['tokens_made_s']:.0f} s this run (0: from the cache in .cache/district/).",
    ]
    return "\n".join(lines)
