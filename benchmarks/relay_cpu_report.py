"""The relay CPU benchmark's section of BENCHMARKS.md (its figures: benchmarks/relay_cpu.py)."""

from __future__ import annotations

from typing import Any

PHASES = {"warm": "first envelopes", "saturate": "back to back", "low": "open loop, low rate"}


def headline(r: dict[str, Any]) -> str:
    m = r["metrics"]
    parts = [
        f"{name}: {m[name]['saturate']['relay_cpu_us_per_event']:,.0f} µs relay CPU per event "
        f"saturated, {m[name]['low']['relay_cpu_us_per_event']:,.0f} at "
        f"{m[name]['low']['events_per_s']:.0f} events/s"
        for name in ("ingest", "forwarder")
        if name in m
    ]
    return "; ".join(parts)


def render(r: dict[str, Any]) -> str:
    lines = [
        "| relay | phase | events/s | p50 / p99 / max ms | relay CPU µs/event | PG CPU µs/event "
        "| group commits: envelopes (mean), CPU p50 / p99 ms, wall p50 / p99 ms "
        "| event loop lag p50 / p99 / max ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for config, label in (("ingest", "ingest alone"), ("forwarder", "with its forwarder")):
        for phase, what in PHASES.items():
            p = r["metrics"].get(config, {}).get(phase)
            if p is None:
                continue
            cpu = p.get("relay_cpu_us_per_event")
            pg = p.get("postgres_cpu_us_per_event")
            b = p.get("batches")
            batches = (
                f"{b['envelopes_mean']:.1f}, {b['cpu_ms_p50']:.1f} / {b['cpu_ms_p99']:.1f}, "
                f"{b['wall_ms_p50']:.1f} / {b['wall_ms_p99']:.1f}"
                if b
                else ""
            )
            lag = (
                f"{b['loop_lag_ms_p50']:.1f} / {b['loop_lag_ms_p99']:.1f} / "
                f"{b['loop_lag_ms_max']:.1f}"
                if b
                else ""
            )
            lines.append(
                f"| {label} | {what} | {p['events_per_s']:,.1f} | {p['p50_ms']:,.1f} / "
                f"{p['p99_ms']:,.1f} / {p['max_ms']:,.1f} | "
                f"{'' if cpu is None else f'{cpu:,.0f}'} | {'' if pg is None else f'{pg:,.0f}'} "
                f"| {batches} | {lag} | {p['errors']} |"
            )
    return "\n".join(lines)
