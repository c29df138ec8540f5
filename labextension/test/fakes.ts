/** A scripted stand-in for the server extension and the page, for the presence loop's tests. */

import type {
  Outcome,
  PresenceAnswer,
  PresenceReport,
  RunInfo,
  Server,
  StartAnswer,
  TimebackMetadata
} from '../src/presence';

export const RUN_ID = '0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11';

export function makeRun(overrides: Partial<RunInfo> = {}): RunInfo {
  return {
    id: RUN_ID,
    activity: { id: 'fractions-lesson', name: 'Fractions lesson' },
    attempt: 1,
    status: 'active',
    state: 'active',
    live: true,
    path: 'lesson.ipynb',
    active_seconds: 0,
    inactive_seconds: 0,
    exercises: {},
    started_at: 1_768_471_200,
    ended_at: null,
    ...overrides
  };
}

export function metadataOf(run: RunInfo): TimebackMetadata {
  return {
    schema_version: 1,
    activity: { id: run.activity.id, name: run.activity.name },
    run: { id: run.id, student: 'abc123', status: run.status, attempt: run.attempt }
  };
}

type Failure = { ok: false; status: number | null; error: string };
export const offline: Failure = { ok: false, status: null, error: 'unreachable' };
export const failing = (status: number, error = `server says ${status}`): Failure => ({
  ok: false,
  status,
  error
});

/**
 * Answers like the server extension: one run per notebook once started. Each hook can be
 * replaced to script a failure; `hold()` keeps the next answers pending until `release()`.
 */
export class FakeServer implements Server {
  run: RunInfo | null = null;
  starts: string[] = [];
  reports: PresenceReport[] = [];
  gets: string[] = [];
  leaves: PresenceReport[] = [];
  /** Scripted outcomes, consumed first; else the default answer. */
  startScript: Failure[] = [];
  presenceScript: (Failure | 'forget')[] = [];
  down = false;
  stored: Map<string, RunInfo> = new Map();

  startRun(path: string): Promise<Outcome<StartAnswer>> {
    this.starts.push(path);
    const failure = this.down ? offline : this.startScript.shift();
    if (failure) {
      return this._answer(failure);
    }
    this.run = this.stored.get(RUN_ID) ?? this.run ?? makeRun({ path });
    this.run = { ...this.run, status: 'active', state: 'active', live: true };
    this.stored.set(this.run.id, this.run);
    return this._answer({ ok: true, value: { run: this.run, metadata: metadataOf(this.run) } });
  }

  presence(report: PresenceReport): Promise<Outcome<PresenceAnswer>> {
    this.reports.push(report);
    const scripted = this.down ? offline : this.presenceScript.shift();
    if (scripted === 'forget') {
      this.run = null;
    } else if (scripted) {
      return this._answer(scripted);
    }
    const run = this.run === null ? null : { ...this.run, metadata: metadataOf(this.run) };
    return this._answer({ ok: true, value: { run } });
  }

  getRun(id: string): Promise<Outcome<{ run: RunInfo }>> {
    this.gets.push(id);
    if (this.down) {
      return this._answer(offline);
    }
    const run = this.stored.get(id);
    return this._answer(run ? { ok: true, value: { run } } : failing(404, `no run ${id}`));
  }

  leave(report: PresenceReport): void {
    this.leaves.push(report);
  }

  /** Keep answers pending until release(): a request in flight. */
  hold(): void {
    this._held = [];
  }

  release(): void {
    const held = this._held ?? [];
    this._held = null;
    held.forEach(fn => fn());
  }

  private _answer<T>(outcome: Outcome<T>): Promise<Outcome<T>> {
    if (this._held !== null) {
      const held = this._held;
      return new Promise(resolve => held.push(() => resolve(outcome)));
    }
    return Promise.resolve(outcome);
  }

  private _held: (() => void)[] | null = null;
}

export class FakePage {
  shown = true;
  focus = true;
  visible = (): boolean => this.shown;
  focused = (): boolean => this.shown && this.focus;
}
