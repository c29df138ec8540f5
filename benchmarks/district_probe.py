"""Where the district's time goes, beside the CPU: what PostgreSQL's sessions wait on, what the
relays' own probes say (their Prometheus metrics: group commits and event-loop lag), and how
long the outbox's events waited to be claimed and then confirmed.

- :class:`PgActivity` samples ``pg_stat_activity`` every 100 ms (the relays' and generators'
  sessions only: its own is left out): per sample, each session's state and wait event.
- :func:`scrape` reads a replica's ``/metrics`` (the benchmark opens them:
  ``c.Relay.authenticate_prometheus = False``); :func:`relay_delta` turns two scrapes into a
  phase's figures (mean batch, mean and bucketed p99 wall, wait and loop lag).
- :func:`outbox_timings` reads, per phase, how long its events waited for a claim
  (claimed_at - created_at) and then for their job (sent_at - claimed_at).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter
from typing import Any

from .common import percentile

SAMPLE_EVERY = 0.1
HISTOGRAMS = {
    "commit_envelopes": "timeback_relay_group_commit_envelopes",
    "commit_wall_s": "timeback_relay_group_commit_duration_seconds",
    "commit_wait_s": "timeback_relay_group_commit_wait_seconds",
    "loop_lag_s": "timeback_relay_event_loop_lag_seconds",
    "ingest_s": "timeback_relay_ingest_duration_seconds",
    # the collector's full collections (every thread of the replica waits them out)
    "gc2_pause_s": "timeback_relay_gc_pause_seconds_gen2",
}
COUNTERS = {"commit_cpu_s": "timeback_relay_group_commit_cpu_seconds_total"}


class PgActivity(threading.Thread):
    """``pg_stat_activity`` every :data:`SAMPLE_EVERY` s: (time, [(state, wait, query head)])."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.samples, self.stopping = url, [], threading.Event()

    def run(self) -> None:
        import psycopg

        conninfo = self.url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not self.stopping.wait(SAMPLE_EVERY):
                rows = conn.execute(
                    "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'CPU'), "
                    "left(regexp_replace(query, '\\s+', ' ', 'g'), 40) FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
                    "AND datname = current_database()"
                ).fetchall()
                self.samples.append((time.time(), rows))

    def summary(self, start: float, end: float) -> dict[str, Any]:
        """Per sample on average: sessions active, and what the active ones wait on (CPU: no
        wait event) and run; idle in transaction counted apart."""
        mine = [rows for t, rows in self.samples if start <= t <= end]
        if not mine:
            return {}
        waits: Counter[str] = Counter()
        queries: Counter[str] = Counter()
        idle_tx = 0
        for rows in mine:
            for state, wait, query in rows:
                if state == "active":
                    waits[wait] += 1
                    queries[query] += 1
                elif state and state.startswith("idle in transaction"):
                    idle_tx += 1
        n = len(mine)
        return {
            "samples": n,
            "active_per_sample": round(sum(waits.values()) / n, 2),
            "idle_in_transaction_per_sample": round(idle_tx / n, 2),
            "active_waits": {k: round(v / n, 2) for k, v in waits.most_common(8)},
            "active_queries": {k: round(v / n, 2) for k, v in queries.most_common(6)},
        }


def scrape(port: int, prefix: str) -> dict[str, Any]:
    """The replica's metrics: per histogram its buckets, sum and count; counters' totals."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{prefix}metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # a histogram by generation: one entry per generation (<name>_gen<g>)
            gen = f"_gen{sample.labels['generation']}" if "generation" in sample.labels else ""
            if sample.name.endswith("_bucket"):
                buckets = out.setdefault(sample.name[:-7] + gen, {}).setdefault("buckets", {})
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith(("_sum", "_count")):
                base, _, kind = sample.name.rpartition("_")
                out.setdefault(base + gen, {})[kind] = sample.value
            elif sample.name in COUNTERS.values():
                out[sample.name] = sample.value
    return out


def _quantile(buckets: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding the q-th quantile (cumulative counts)."""
    total = buckets.get(float("inf"), 0.0)
    if total <= 0:
        return float("nan")
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return bound
    return float("inf")


def relay_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One replica's figures over a phase, from its scrapes at the phase's ends."""
    out: dict[str, Any] = {}
    for key, name in HISTOGRAMS.items():
        a, b = after.get(name, {}), before.get(name, {})
        count = a.get("count", 0.0) - b.get("count", 0.0)
        if count <= 0:
            continue
        buckets = {k: v - b.get("buckets", {}).get(k, 0.0) for k, v in a.get("buckets", {}).items()}
        mean = (a.get("sum", 0.0) - b.get("sum", 0.0)) / count
        out[key] = {
            "count": int(count),
            "mean": round(mean, 4),
            "p50_le": _quantile(buckets, 0.5),
            "p99_le": _quantile(buckets, 0.99),
        }
    for key, name in COUNTERS.items():
        out[key] = round(after.get(name, 0.0) - before.get(name, 0.0), 3)
    return out


def outbox_timings(url: str, windows: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Per phase (name: its start and end), of the outbox events created in it: seconds to
    their claim and from their claim to their confirmation (p50, p99, max), and how many were
    confirmed, still waiting or claimed more than once."""
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    out: dict[str, Any] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name, (start, end) in windows.items():
            rows = conn.execute(
                "SELECT created_at, claimed_at, sent_at, attempts FROM outbox "
                "WHERE created_at >= %s AND created_at < %s",
                (start, end),
            ).fetchall()
            claim = [c - a for a, c, _, _ in rows if c is not None]
            confirm = [s - c for _, c, s, _ in rows if c is not None and s is not None]
            out[name] = {
                "events": len(rows),
                "confirmed": len(confirm),
                "claimed_twice": sum(1 for *_, n in rows if n and n > 1),
                "to_claim_s": _stats(claim),
                "claim_to_confirm_s": _stats(confirm),
            }
    return out


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"p50": round(percentile(values, 50), 3), "p99": round(percentile(values, 99), 3),
            "max": round(max(values), 3)}  # fmt: skip


def render(probes: dict[str, Any]) -> list[str]:
    """One paragraph per probed district phase, for BENCHMARKS.md."""
    lines = []
    for name, p in probes.items():
        if not name.endswith(" district"):
            continue
        parts = []
        for i, r in enumerate(p.get("relays", [])):
            size, wall = r.get("commit_envelopes", {}), r.get("commit_wall_s", {})
            wait, lag = r.get("commit_wait_s", {}), r.get("loop_lag_s", {})
            if size:
                busy = size["count"] * wall.get("mean", 0.0)
                parts.append(
                    f"replica {i}: {size['count']} group commits of {size['mean']:.1f} envelopes, "
                    f"wall {wall.get('mean', 0) * 1000:.0f} ms on average (thread CPU "
                    f"{r.get('commit_cpu_s', 0) / max(busy, 1e-9):.0%} of it), oldest envelope "
                    f"queued {wait.get('mean', 0) * 1000:.0f} ms before its commit began, "
                    f"event-loop lag {lag.get('mean', 0) * 1000:.0f} ms on average "
                    f"(p99 <= {lag.get('p99_le', 0) * 1000:.0f} ms)"
                )
        pg = p.get("postgres", {})
        if pg:
            waits = ", ".join(f"{k} {v:g}" for k, v in pg.get("active_waits", {}).items())
            parts.append(
                f"PostgreSQL (every 100 ms): {pg['active_per_sample']:g} sessions active on "
                f"average ({waits}), {pg['idle_in_transaction_per_sample']:g} idle in a "
                "transaction (waiting for the relay)"
            )
        box = p.get("outbox", {})
        if box.get("to_claim_s"):
            parts.append(
                f"outbox events made in the phase: claimed after {box['to_claim_s']['p50']:g} s "
                f"(p99 {box['to_claim_s']['p99']:g}), their job confirmed "
                f"{box.get('claim_to_confirm_s', {}).get('p50', float('nan')):g} s after the "
                f"claim; {box['confirmed']:,} of {box['events']:,} confirmed by the run's end"
            )
        lines += ["", f"Probes, {name}: " + "; ".join(parts) + "."]
    return lines
