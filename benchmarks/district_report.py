"""The district benchmark's figures: summed from the load generators' records, and rendered."""

from __future__ import annotations

import math
import statistics
from typing import Any

from .common import percentile

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


def summarize(
    phases: list[dict[str, Any]],
    outs: list[dict[str, Any]],
    cpu_marks: list[tuple[float, dict[str, float]]],
    lag: list[tuple[float, int, float]],
    tokens_made_s: float,
) -> dict[str, Any]:
    out: dict[str, Any] = {"phases": {}, "tokens_made_s": tokens_made_s}
    for i, phase in enumerate(phases):
        records = [o["phases"][i] for o in outs]
        latency = [x for r in records for x in r["latency"]]
        events = sum(r["events"] for r in records)
        unanswered = sum(r.get("late_tasks", 0) for r in records)
        envelopes = len(latency) - unanswered  # answered; the unanswered count as late
        errors = [e for r in records for e in r["errors"]]
        (t0, c0), (t1, c1) = cpu_marks[2 * i], cpu_marks[2 * i + 1]
        wall = max(t1 - t0, 1e-9)
        cpu = {g: (c1.get(g, 0.0) - c0.get(g, 0.0)) / wall for g in GROUPS}
        start, end = phase["start"], phase["start"] + phase["seconds"]
        mine = [(t, depth, age) for t, depth, age in lag if start <= t <= end + 3]
        offered = phase["offered_envelopes_per_s"]
        # per 5-second slice: how the tail moves within the phase
        slices = []
        for k in range(int(phase["seconds"] // 5)):
            chunk = [lat for r in records for s, lat in zip(r["sent"], r["latency"], strict=True)
                     if 5 * k <= s < 5 * (k + 1)]  # fmt: skip
            if chunk:
                slices.append(round(percentile(chunk, 99), 1))
        out["phases"][phase["name"]] = {
            "seconds": phase["seconds"],
            "multiplier": phase.get("multiplier", 1.0),
            "offered_envelopes_per_s": offered,
            "offered_events_per_s": offered * phase["events_per_envelope"],
            "envelopes": envelopes,
            "events": events,
            "events_per_s": events / phase["seconds"],
            **_latency(latency),
            "p99_per_5s": slices,
            "errors": len(errors),
            "error_examples": sorted(set(errors))[:3],
            "refused_envelopes": sum(r["refused"] for r in records),
            "unanswered": unanswered,
            "generator_late_start_s": max(r.get("late_start_s", 0.0) for r in records),
            "cpu_share": cpu,
            "relay_cpu_us_per_event": cpu["relays"] * wall / max(events, 1) * 1e6,
            "pg_cpu_us_per_event": cpu["postgres"] * wall / max(events, 1) * 1e6,
            "hub_cpu_ms_per_envelope": cpu["hub"] * wall / max(envelopes, 1) * 1e3,
            "outbox_max_depth": max((d for _, d, _ in mine), default=0),
            "outbox_max_age_s": max((a for _, _, a in mine), default=0.0),
            "outbox_age_series": [round(a, 1) for _, _, a in mine],
        }
    ceiling = None
    ramp = [(n, p) for n, p in out["phases"].items() if n != "first"]  # ramp, then district
    for _name, p in ramp:
        if p["p99_ms"] >= TARGET_P99_MS or p["errors"] or p.get("unanswered"):
            break
        ceiling = p["events_per_s"]
    out["ceiling_events_per_s"] = ceiling
    out["ceiling_note"] = (
        "the highest ramp step whose p99 stayed under 100 ms (steps: "
        + ", ".join(f"x{p['multiplier']:g} p99 {p['p99_ms']:.0f} ms" for _, p in ramp)
        + ")"
    )
    return out


def headline(r: dict[str, Any]) -> str:
    m = r["metrics"]
    d = m["phases"]["district"]
    ceiling = m.get("ceiling_events_per_s")
    ceiling_text = "below the ramp's first step" if ceiling is None else f"{ceiling:,.0f} events/s"
    return (
        f"{r['params']['students']:,} students, offered {d['offered_events_per_s']:,.0f} "
        f"events/s: {d['events_per_s']:,.0f} events/s taken, ingest p99 "
        f"{d['p99_ms']:,.0f} ms (p50 {d['p50_ms']:,.0f}), oldest outbox event "
        f"{d['outbox_max_age_s']:.0f} s; ceiling (p99 < 100 ms) {ceiling_text}"
    )


def _share(cpu: dict[str, float]) -> str:
    return ", ".join(f"{g} {cpu[g]:.0%}" for g in GROUPS)


def render(r: dict[str, Any]) -> str:
    m = r["metrics"]
    lines = [
        "| phase | offered events/s | taken events/s | p50 ms | p99 ms | max ms | outbox: "
        "max depth / oldest s | relay CPU µs/event | PG CPU µs/event | CPU (share of one "
        "core) | errors / unanswered |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in m["phases"].items():
        label = f"**{name}**" if name == "district" else name
        lines.append(
            f"| {label} | {p['offered_events_per_s']:,.0f} | {p['events_per_s']:,.0f} "
            f"| {p['p50_ms']:,.1f} | **{p['p99_ms']:,.1f}** | {p['max_ms']:,.0f} "
            f"| {p['outbox_max_depth']:,} / {p['outbox_max_age_s']:.1f} "
            f"| {p['relay_cpu_us_per_event']:,.0f} | {p['pg_cpu_us_per_event']:,.0f} "
            f"| {_share(p['cpu_share'])} | {p['errors']} / {p.get('unanswered', 0):,} |"
        )
    d, first = m["phases"]["district"], m["phases"]["first"]
    ceiling = m.get("ceiling_events_per_s")
    hub_ms = first["hub_cpu_ms_per_envelope"]
    per_event = {g: d["cpu_share"][g] / max(d["events_per_s"], 1e-9) * 1e6 for g in GROUPS}
    total_ms = sum(per_event.values()) / 1000
    lines += [
        "",
        f"Ceiling: {'none of the ramp steps' if ceiling is None else f'{ceiling:,.0f} events/s'}"
        f" ({m['ceiling_note']}).",
        "",
        "Where the CPU goes in the district phase, per event taken: "
        + ", ".join(f"{g} {v:,.0f} µs" for g, v in per_event.items())
        + f"; {total_ms:.2f} ms in all, so {d['offered_events_per_s']:,.0f} events/s would "
        f"need {total_ms * d['offered_events_per_s'] / 1000:.1f} cores at that price (this "
        "machine has 2, shared with other work).",
        "",
        f"District phase, p99 per 5 s slice (ms): {', '.join(f'{x:g}' for x in d['p99_per_5s'])}."
        f" Oldest pending outbox event every 2 s (s): "
        f"{', '.join(f'{x:g}' for x in d['outbox_age_series'])}.",
        "",
        f"First envelope of every student ({first['envelopes']:,} in {first['seconds']:.0f} s, "
        f"{first['envelopes'] / max(first['seconds'], 1e-9):,.0f}/s; the hub's token lookup, the "
        f"stand-in's OneRoster lookup, the user's first row): the hub used "
        f"{first['hub_cpu_ms_per_envelope']:.1f} ms CPU per lookup, so one hub core verifies "
        f"~{1000 / max(first['hub_cpu_ms_per_envelope'], 1e-9):,.0f} tokens/s and a relay "
        f"restart at district scale ({STUDENTS:,} tokens) costs the hub "
        f"{STUDENTS * first['hub_cpu_ms_per_envelope'] / 1000:,.0f} CPU seconds. With HubAuth's "
        f"cache at the relay's default 60 s, {STUDENTS:,} tokens would cost the hub "
        f"{STUDENTS / 60:,.0f} lookups/s, {STUDENTS / 60 * hub_ms / 1000:.1f} cores: "
        "the benchmark runs with "
        "c.Relay.auth_cache_seconds = "
        f"{r['params']['auth_cache_seconds']}. Users and tokens made in "
        f"{m['tokens_made_s']:.0f} s this run (0: from the cache in .cache/district/).",
    ]
    return "\n".join(lines)
