/**
 * How a run looks in the status bar: labels, durations and the live active-time counter.
 * Pure (no JupyterLab import), so it is unit-tested beside the presence logic.
 */

import type { RunCompletion, RunInfo, Snapshot } from './presence';

export type Label =
  'starting' | 'active' | 'idle' | 'paused' | 'ended' | 'completed' | 'offline' | 'not recording';

/** The one word the status bar shows for a notebook's run. */
export function label(snapshot: Snapshot): Label {
  const run = snapshot.run;
  if (run !== null && run.status === 'completed') {
    return 'completed'; // done is done, whatever the network says
  }
  if (!snapshot.online) {
    return 'offline';
  }
  if (run === null) {
    // no run: still asking for one, or the server refused it (the error says why)
    return snapshot.phase === 'starting' ? 'starting' : 'not recording';
  }
  if (run.status === 'ended' || run.state === 'ended') {
    return 'ended';
  }
  switch (run.state) {
    case 'active':
      return 'active';
    case 'paused':
      return 'paused';
    case 'completed':
      return 'completed';
    default:
      return 'idle';
  }
}

/** 5 -> "0:05", 754 -> "12:34", 3723 -> "1:02:03". Negative or non-finite counts as 0. */
export function formatDuration(seconds: number): string {
  const total = Number.isFinite(seconds) && seconds > 0 ? Math.floor(seconds) : 0;
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = String(s).padStart(2, '0');
  if (h > 0) {
    return `${h}:${String(m).padStart(2, '0')}:${ss}`;
  }
  return `${m}:${ss}`;
}

/**
 * The run's active seconds now: the server's figure, plus the time since it arrived while the
 * run is active and the server reachable. The extrapolation is capped (answers that stop coming
 * must not invent time), and while it runs the shown value never goes back, so a server figure
 * slightly below our guess does not make the clock tick backwards. At rest (idle, paused,
 * completed, offline) it is the server's figure exactly.
 */
export class ActiveTime {
  constructor(maxExtrapolationMs: number) {
    this._max = maxExtrapolationMs;
  }

  seconds(snapshot: Snapshot, now: number): number {
    const run = snapshot.run;
    if (run === null) {
      this._runId = null;
      this._shown = 0;
      return 0;
    }
    if (run.id !== this._runId) {
      this._runId = run.id;
      this._shown = 0;
    }
    if (run.state === 'active' && run.status === 'active' && snapshot.online) {
      const since = Math.min(Math.max(0, now - snapshot.receivedAt), this._max);
      this._shown = Math.max(this._shown, run.active_seconds + since / 1000);
    } else {
      this._shown = run.active_seconds;
    }
    return this._shown;
  }

  private readonly _max: number;
  private _runId: string | null = null;
  private _shown = 0;
}

/** "2 of 3 correct: q1 ✓, q2 ✓, q3 ✗", or "none yet". */
export function describeExercises(exercises: RunInfo['exercises']): string {
  const entries = Object.entries(exercises);
  if (entries.length === 0) {
    return 'none yet';
  }
  const correct = entries.filter(([, ok]) => ok).length;
  const list = entries.map(([id, ok]) => `${id} ${ok ? '✓' : '✗'}`).join(', ');
  return `${correct} of ${entries.length} correct: ${list}`;
}

/**
 * The XP a completion earned, in the policy's own words ("0 XP: 6/10 correct, below 80%"; each
 * reason already names the amount), or just the amount for a completion recorded before the
 * server kept reasons.
 */
export function describeXp(completion: RunCompletion): string {
  const xp = Number.isFinite(completion.xp_earned) ? completion.xp_earned : 0;
  const reasons = (completion.xp_outcome?.reasons ?? []).filter(
    (r): r is string => typeof r === 'string' && r.length > 0
  );
  return reasons.length > 0 ? reasons.join('; ') : `${Math.round(xp * 10) / 10} XP`;
}

/** Epoch ms of the last local midnight: "today" is the student's day, not the server's. */
export function localMidnight(now: Date = new Date()): number {
  return new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
}

/** JSON equality that ignores key order (metadata read back from a file may be reordered). */
export function sameJson(a: unknown, b: unknown): boolean {
  return stableStringify(a) === stableStringify(b);
}

function stableStringify(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(stableStringify).join(',')}]`;
  }
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record)
      .filter(key => record[key] !== undefined)
      .sort();
    return `{${keys.map(key => `${JSON.stringify(key)}:${stableStringify(record[key])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'undefined';
}
