/**
 * What one browser tab tells the server extension about one notebook, and when.
 *
 * Pure on purpose: no JupyterLab import. Time, timers, the page and the server are injected, so
 * the unit tests drive it with fake timers and a scripted server. The wiring to JupyterLab lives
 * in index.ts.
 *
 * Rules:
 * - a notebook that declares an activity first starts (or resumes) its run; any notebook then
 *   reports presence, so the server knows a browser looks after it and never writes the file
 *   behind the editor (a run started later from the kernel shows up in the answers);
 * - while the notebook is visible and focused, one report every `interval` ms; otherwise (hidden,
 *   or visible in a window or beside a notebook that has the focus) none once the server has
 *   heard it: the server counts no time for such a notebook, whoever says so, so reporting it
 *   again would tell the server nothing (hundreds of open notebooks would cost it a message
 *   each every few seconds for no information);
 * - a visibility or focus change is reported at once when it differs from what the server was
 *   last told (coalesced while a request is in flight), and so is input after a pause;
 * - a failed request is retried after `interval`, then twice as long each time up to
 *   `maxBackoff`; changes while a retry is pending wait for it (it samples the page anew);
 * - leaving (pagehide, notebook closed) is one fire-and-forget report with `leaving: true`.
 */

export type RunStatus = 'active' | 'ended' | 'completed';
export type RunState = 'active' | 'inactive' | 'paused' | 'ended' | 'completed';

/** A run as the server extension describes it (GET /timeback/api/runs/{id}). */
export interface RunInfo {
  id: string;
  activity: { id: string; name: string; [key: string]: unknown };
  attempt: number;
  status: RunStatus;
  state: RunState;
  live: boolean;
  path: string | null;
  active_seconds: number;
  inactive_seconds: number;
  exercises: Record<string, boolean>;
  started_at: number;
  ended_at: number | null;
  /** A completed run's completion as the server recorded it (null before completion). */
  completion?: RunCompletion | null;
}

/** The XP a completion earned and why (the server's XP policy; see timeback_jupyter/xp.py). */
export interface RunCompletion {
  xp_earned: number;
  xp_outcome?: { reasons?: string[] } | null;
  [key: string]: unknown;
}

/** `metadata.timeback` as the server wants it saved with the notebook. */
export interface TimebackMetadata {
  schema_version: number;
  activity: Record<string, unknown>;
  run: { id: string; status: RunStatus; [key: string]: unknown };
  [key: string]: unknown;
}

export interface PresenceReport {
  path: string;
  source: string;
  visible: boolean;
  focused: boolean;
  idle_ms: number;
  leaving?: true;
}

/** A request's result: `status` null means the server could not be reached at all. */
export type Outcome<T> =
  { ok: true; value: T } | { ok: false; status: number | null; error: string };

export interface StartAnswer {
  run: RunInfo;
  metadata: TimebackMetadata;
}

export interface PresenceAnswer {
  run: (RunInfo & { metadata: TimebackMetadata }) | null;
}

export interface Server {
  startRun(path: string): Promise<Outcome<StartAnswer>>;
  presence(report: PresenceReport): Promise<Outcome<PresenceAnswer>>;
  getRun(id: string): Promise<Outcome<{ run: RunInfo }>>;
  /** Must send synchronously (socket, beacon or keepalive fetch): the page may be going away. */
  leave(report: PresenceReport): void;
}

export interface Page {
  /** The page is visible and so is this notebook in it. */
  visible(): boolean;
  /** The window has focus and this notebook is the current widget. */
  focused(): boolean;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * - starting: asking the server to start or resume the declared activity's run;
 * - tracking: reporting presence;
 * - stopped: the server refused the run for good (no activity, bad metadata): `error` says why;
 * - left: the page was hidden for good (pagehide) or the notebook closed;
 * - disposed: nothing more will happen.
 */
export type Phase = 'idle' | 'starting' | 'tracking' | 'stopped' | 'left' | 'disposed';

export interface Snapshot {
  phase: Phase;
  run: RunInfo | null;
  metadata: TimebackMetadata | null;
  /** False while the server cannot be reached. */
  online: boolean;
  /** The last request's error, cleared by the next success. */
  error: string | null;
  /** clock.now() when `run` arrived, to extrapolate its active time between answers. */
  receivedAt: number;
}

export interface LoopOptions {
  path: string;
  source: string;
  server: Server;
  page: Page;
  clock: Clock;
  /** Milliseconds between reports while visible. */
  interval?: number;
  /** Longest wait between retries while the server fails. */
  maxBackoff?: number;
  onChange?: (snapshot: Snapshot) => void;
  /** Called with every metadata the server sends; the caller writes it when it differs. */
  onMetadata?: (metadata: TimebackMetadata) => void;
}

export const DEFAULT_INTERVAL = 5000;
export const DEFAULT_MAX_BACKOFF = 60000;

/** Status codes after which starting again cannot help: the notebook itself is the problem. */
const FINAL_START_ERRORS = new Set([400, 404, 409, 413]);

export function backoff(failures: number, interval: number, max: number): number {
  if (failures <= 0) {
    return interval;
  }
  return Math.min(max, interval * 2 ** (failures - 1));
}

/** metadata.timeback with the run marked as `status` (the server forgets completed runs). */
export function withRunStatus(metadata: TimebackMetadata, status: RunStatus): TimebackMetadata {
  return { ...metadata, run: { ...metadata.run, status } };
}

export class PresenceLoop {
  constructor(options: LoopOptions) {
    this._path = options.path;
    this._source = options.source;
    this._server = options.server;
    this._page = options.page;
    this._clock = options.clock;
    this._interval = options.interval ?? DEFAULT_INTERVAL;
    this._maxBackoff = options.maxBackoff ?? DEFAULT_MAX_BACKOFF;
    this._onChange = options.onChange;
    this._onMetadata = options.onMetadata;
    this._lastInput = this._clock.now();
  }

  get snapshot(): Snapshot {
    return {
      phase: this._phase,
      run: this._run,
      metadata: this._metadata,
      online: this._online,
      error: this._error,
      receivedAt: this._receivedAt
    };
  }

  get path(): string {
    return this._path;
  }

  /** The notebook was renamed: later reports name the new path. */
  set path(path: string) {
    this._path = path;
  }

  /** Milliseconds until the next scheduled request, or null when none is scheduled. */
  get nextIn(): number | null {
    return this._timer === null ? null : this._dueAt - this._clock.now();
  }

  /**
   * Begin: start the run first when the notebook declares an activity, else only report.
   */
  begin(declaresActivity: boolean): void {
    if (this._phase !== 'idle') {
      return;
    }
    this._declared = declaresActivity;
    this._phase = declaresActivity ? 'starting' : 'tracking';
    void this._step();
  }

  /** Keyboard, pointer or scroll input in the notebook at `at` (default: now). */
  input(at?: number): void {
    const now = this._clock.now();
    const idleBefore = now - this._lastInput;
    this._lastInput = Math.max(this._lastInput, at ?? now);
    // Back from a pause longer than a report's spacing: say so now, not up to `interval` later,
    // so the server counts the student active again from this instant.
    if (idleBefore > this._interval && this._run !== null) {
      this._reportDue = true;
      this.changed();
    }
  }

  /** The server has news about this notebook's run (it says so over the socket): ask now. */
  refresh(): void {
    this._reportDue = true;
    this.changed();
  }

  /** Visibility, focus or the current notebook may have changed: report at once if so. */
  changed(): void {
    if (this._phase !== 'starting' && this._phase !== 'tracking') {
      return;
    }
    if (this._failures > 0 && this._timer !== null) {
      return; // the pending retry samples the page anew
    }
    if (this._phase === 'tracking' && !this._busy && !this._news()) {
      return; // e.g. another notebook got the focus: this one's report would be the same
    }
    void this._step();
  }

  /** The page goes away (pagehide) or the notebook closes: one last report, then quiet. */
  leave(): void {
    if (this._phase !== 'tracking' && this._phase !== 'starting') {
      return;
    }
    this._cancel();
    this._phase = 'left';
    this._server.leave({ ...this._report(), visible: false, focused: false, leaving: true });
    this._emit();
  }

  /** The page came back from the back/forward cache after a pagehide. */
  back(): void {
    if (this._phase !== 'left') {
      return;
    }
    this._phase = this._declared && this._run === null ? 'starting' : 'tracking';
    void this._step();
  }

  dispose(): void {
    if (this._phase === 'disposed') {
      return;
    }
    this.leave();
    this._cancel();
    this._phase = 'disposed';
  }

  // ---- internals ------------------------------------------------------------------------

  private _report(): PresenceReport {
    const now = this._clock.now();
    return {
      path: this._path,
      source: this._source,
      visible: this._page.visible(),
      focused: this._page.focused(),
      idle_ms: Math.max(0, Math.round(now - this._lastInput))
    };
  }

  private async _step(): Promise<void> {
    if (this._busy) {
      this._again = true;
      return;
    }
    this._cancel();
    this._busy = true;
    try {
      if (this._phase === 'starting') {
        await this._start();
      }
      if (this._phase === 'tracking') {
        await this._ping();
      }
    } finally {
      this._busy = false;
    }
    if (this._again) {
      this._again = false;
      if (this._failures === 0 && this._active() && this._news()) {
        return this._step();
      }
    }
    this._schedule();
  }

  private async _start(): Promise<void> {
    const outcome = await this._server.startRun(this._path);
    if (this._phase !== 'starting') {
      return; // left or disposed meanwhile
    }
    if (!outcome.ok) {
      this._fail(outcome);
      if (outcome.status !== null && FINAL_START_ERRORS.has(outcome.status)) {
        this._phase = 'stopped';
        this._emit();
      }
      return;
    }
    this._succeed();
    this._phase = 'tracking';
    this._adopt(outcome.value.run, outcome.value.metadata);
  }

  private async _ping(): Promise<void> {
    const report = this._report();
    this._reportDue = false; // a failed report is retried, sampling idle_ms anew
    const outcome = await this._server.presence(report);
    if (this._phase !== 'tracking') {
      return;
    }
    if (!outcome.ok) {
      this._fail(outcome);
      return;
    }
    this._toldPage = { visible: report.visible, focused: report.focused };
    this._succeed();
    const answer = outcome.value.run;
    if (answer !== null) {
      const { metadata, ...run } = answer;
      this._adopt(run, metadata);
      return;
    }
    await this._vanished();
  }

  /** The server holds no live run for this notebook: find out why before starting again. */
  private async _vanished(): Promise<void> {
    const last = this._run;
    if (last === null || last.status !== 'active') {
      this._emit();
      return; // nothing was running, or it was closed on purpose: not the browser's call
    }
    const outcome = await this._server.getRun(last.id);
    if (this._phase !== 'tracking') {
      return;
    }
    if (outcome.ok && outcome.value.run.status !== 'active') {
      // Completed or ended from the kernel (the widget, %timeback end) since our last answer:
      // show it as it is and save it so; only opening the notebook again starts anew.
      const status = outcome.value.run.status;
      const metadata = this._metadata ? withRunStatus(this._metadata, status) : null;
      this._adopt(outcome.value.run, metadata);
      return;
    }
    if (!outcome.ok && outcome.status === null) {
      this._fail(outcome);
      return;
    }
    // Unknown to the server (a new one) or still active in its store (it crashed): the open
    // notebook gets its run back.
    this._phase = 'starting';
    await this._start();
    if (this.snapshot.phase === 'tracking') {
      await this._ping();
    }
  }

  private _adopt(run: RunInfo, metadata: TimebackMetadata | null): void {
    this._run = run;
    this._receivedAt = this._clock.now();
    if (metadata !== null) {
      this._metadata = metadata;
      this._onMetadata?.(metadata);
    }
    this._emit();
  }

  private _succeed(): void {
    const changed = !this._online || this._error !== null;
    this._failures = 0;
    this._online = true;
    this._error = null;
    if (changed) {
      this._emit();
    }
  }

  private _fail(outcome: { status: number | null; error: string }): void {
    this._failures += 1;
    this._online = outcome.status !== null;
    this._error = outcome.error;
    this._emit();
  }

  /** Whether the last report the server took matches the page as it is now. */
  private _told(): boolean {
    const told = this._toldPage;
    return (
      told !== null &&
      told.visible === this._page.visible() &&
      told.focused === this._page.focused()
    );
  }

  /** Whether a report now would tell the server something it does not know. */
  private _news(): boolean {
    return this._phase !== 'tracking' || this._reportDue || !this._told();
  }

  private _active(): boolean {
    return this._phase === 'starting' || this._phase === 'tracking';
  }

  private _schedule(): void {
    this._cancel();
    if (!this._active()) {
      return;
    }
    const counted = this._page.visible() && this._page.focused();
    if (this._failures === 0 && !counted && this._told()) {
      return; // not in front, and the server knows: the next change reports
    }
    const delay =
      this._failures > 0
        ? backoff(this._failures, this._interval, this._maxBackoff)
        : this._interval;
    this._dueAt = this._clock.now() + delay;
    this._timer = this._clock.setTimeout(() => {
      this._timer = null;
      void this._step();
    }, delay);
  }

  private _cancel(): void {
    if (this._timer !== null) {
      this._clock.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _emit(): void {
    this._onChange?.(this.snapshot);
  }

  private _path: string;
  private readonly _source: string;
  private readonly _server: Server;
  private readonly _page: Page;
  private readonly _clock: Clock;
  private readonly _interval: number;
  private readonly _maxBackoff: number;
  private readonly _onChange?: (snapshot: Snapshot) => void;
  private readonly _onMetadata?: (metadata: TimebackMetadata) => void;
  private _phase: Phase = 'idle';
  private _declared = false;
  private _run: RunInfo | null = null;
  private _metadata: TimebackMetadata | null = null;
  private _online = true;
  private _error: string | null = null;
  private _receivedAt = 0;
  private _lastInput: number;
  private _failures = 0;
  private _busy = false;
  private _again = false;
  private _reportDue = false;
  private _timer: unknown = null;
  private _dueAt = 0;
  private _toldPage: { visible: boolean; focused: boolean } | null = null;
}
