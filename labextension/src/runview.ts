/**
 * How a run looks in the status bar: labels, durations and the live active-time counter.
 * Pure (no JupyterLab import), so it is unit-tested beside the presence logic.
 */

import type { ServerStatus } from './api';
import type { RunCompletion, RunInfo, Snapshot } from './presence';

export type Label =
  'starting' | 'active' | 'idle' | 'paused' | 'ended' | 'completed' | 'offline' | 'not recording';

/** What the server says of a run beyond RunInfo (GET runs/<id>, status?run=<id>). */
export interface RunFigures {
  /** Seconds until the server pauses the run unless the student comes back (null: active). */
  pauses_in?: number | null;
  /** Seconds of the run's windows written but not yet delivered (status?run= only). */
  unsent_seconds?: number;
}

/** The run as the server last described it, and when (clock ms) that answer arrived. */
export function pausedBy(run: RunInfo & RunFigures, receivedAt: number, now: number): boolean {
  const after = run.pauses_in;
  return (
    run.state === 'inactive' &&
    typeof after === 'number' &&
    Number.isFinite(after) &&
    now >= receivedAt + after * 1000
  );
}

/**
 * The one word the status bar shows for a notebook's run. Given `now`, an idle run whose
 * pause the server announced (`pauses_in`) shows "paused" from then on, without waiting for an
 * answer a hidden tab does not ask for.
 */
export function label(snapshot: Snapshot, now?: number): Label {
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
  if (now !== undefined && pausedBy(run, snapshot.receivedAt, now)) {
    return 'paused';
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

/**
 * Whether a notebook's `metadata.timeback` asks for a run: it declares an activity, or it is
 * there but is no object at all (then starting the run is what names the problem; a notebook
 * without a run says nothing).
 */
export function declaresActivity(section: unknown): boolean {
  if (section === undefined || section === null) {
    return false;
  }
  if (typeof section !== 'object' || Array.isArray(section)) {
    return true;
  }
  return Boolean((section as { activity?: unknown }).activity);
}

/** How an author fixes a notebook's metadata.timeback (the words `%timeback status` uses). */
export function metadataFix(path: string | null): string {
  const name = path ? shellQuote(path) : 'NOTEBOOK';
  return (
    "correct metadata.timeback in the notebook's metadata (JupyterLab: Property Inspector, " +
    `Notebook metadata), save and reopen it; \`jupyter timeback doctor ${name}\` checks it`
  );
}

function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\"'\"'")}'`;
}

/** What the status bar item says now: its state (`data-state`), its text, and why. */
export interface Shown {
  word: Label;
  /** The state as shown: "idle", "active · delivery slow", "offline: 12 s not yet sent",
   * "not recording: <every reason> — fix: ..." */
  text: string;
  /** Every reason something is wrong, for the tooltip and the panel; empty when all is well. */
  problems: string[];
  /** The run as last described by the server (the newer of the two answers) and its time. */
  run: (RunInfo & RunFigures) | null;
  receivedAt: number;
  deliverySlow: boolean;
}

/**
 * The status bar's state from the presence loop's snapshot and the last status answer
 * (`status`, or `statusError` when it failed: `reachable` false when the server could not be
 * reached at all), received at `statusAt`.
 */
export function shown(
  snapshot: Snapshot,
  status: ServerStatus | null,
  statusAt: number,
  statusError: { error: string; reachable: boolean } | null,
  now: number
): Shown {
  let run: (RunInfo & RunFigures) | null = snapshot.run;
  let receivedAt = snapshot.receivedAt;
  const described = status?.run;
  if (
    run !== null &&
    described !== undefined &&
    !('error' in described) &&
    described.id === run.id &&
    statusAt > receivedAt
  ) {
    run = described;
    receivedAt = statusAt;
  }
  const current = { ...snapshot, run, receivedAt };
  const online = snapshot.online && (statusError === null || statusError.reachable);
  const problems = [snapshot.error, status?.problem, statusError?.error].filter(
    (e): e is string => typeof e === 'string' && e.length > 0
  );
  const unique = [...new Set(problems)];
  const deliverySlow = Boolean(status?.delivery?.slow);
  const base = { problems: unique, run, receivedAt, deliverySlow };
  if (run !== null && run.status === 'completed') {
    return { ...base, word: 'completed', text: 'completed' };
  }
  if (!online) {
    const unsent = unsentSeconds(run, status);
    const text = unsent === null ? 'offline' : `offline: ${unsent} s not yet sent`;
    return { ...base, word: 'offline', text };
  }
  const notRecording = status?.recording === false || (run === null && unique.length > 0);
  if (notRecording && snapshot.phase !== 'starting') {
    return { ...base, word: 'not recording', text: notRecordingText(unique, snapshot.run?.path) };
  }
  const word = label(current, now);
  const text = deliverySlow && run !== null ? `${word} · delivery slow` : word;
  return { ...base, word, text };
}

/** Seconds written but not delivered as the tab last knew, never more than was recorded. */
function unsentSeconds(
  run: (RunInfo & RunFigures) | null,
  status: ServerStatus | null
): number | null {
  const described = status?.run;
  if (run === null || described === undefined || 'error' in described || described.id !== run.id) {
    return null;
  }
  const unsent = described.unsent_seconds;
  if (typeof unsent !== 'number' || !Number.isFinite(unsent)) {
    return null;
  }
  const recorded = described.active_seconds + described.inactive_seconds;
  return Math.max(0, Math.floor(Math.min(unsent, recorded)));
}

function notRecordingText(problems: string[], path: string | null | undefined): string {
  if (problems.length === 0) {
    return 'not recording';
  }
  const metadata = problems.some(p => p.includes('metadata.timeback'));
  const where = problems.map(p => p.match(/^([^:]+\.ipynb): /)?.[1]).find(Boolean) ?? path ?? null;
  const fix = metadata
    ? metadataFix(where)
    : 'see the panel, or run `jupyter timeback doctor` where the server runs';
  return `not recording: ${problems.join('; ')} — fix: ${fix}`;
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

/** A line under the panel's table: something wrong, or something to fix that still records. */
export interface PanelNote {
  kind: 'error' | 'warning';
  text: string;
}

/**
 * The panel's notes: each error once (the run's, the server's problem, the status request's),
 * then the store's warning (recording, but on a disk where it should not be).
 */
export function panelNotes(
  snapshotError: string | null | undefined,
  status: ServerStatus | null,
  statusError: string | null
): PanelNote[] {
  const errors = [snapshotError, status?.problem, statusError].filter(
    (e): e is string => typeof e === 'string' && e.length > 0
  );
  const notes: PanelNote[] = [...new Set(errors)].map(text => ({ kind: 'error', text }));
  const warning = status?.store?.warning;
  if (typeof warning === 'string' && warning.length > 0) {
    notes.push({ kind: 'warning', text: warning });
  }
  return notes;
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
