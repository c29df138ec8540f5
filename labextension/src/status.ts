/**
 * The status bar item (activity, live active time, state) and the panel it opens on click (run
 * id, attempt, exercises, the run's and today's time, outbox health). Server errors show here,
 * never as dialogs, and every reason for not recording is in the item's own text. The panel's
 * figures are the server's, all from one status answer taken at one instant (the run asked for
 * by id, and today's time); the item asks for one every few seconds while it shows a run, so it
 * also says when delivery is slow and how much is not yet sent when the server goes away. Plain
 * DOM with textContent only: nothing from the server is parsed as HTML.
 */

import { showPopup } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import clockSvg from '../style/clock.svg';

import type { Outcome, RunInfo, Snapshot } from './presence';
import type { ServerStatus } from './api';
import { RECORDS_TITLE } from './records';
import {
  ActiveTime,
  describeExercises,
  describeXp,
  formatDuration,
  label,
  panelNotes,
  shown,
  type RunFigures,
  type Shown
} from './runview';

export const clockIcon = new LabIcon({ name: 'timeback-jupyter:clock', svgstr: clockSvg });

const TICK_MS = 1000;
// The status (delivery, unsent seconds, the panel's figures): often while the panel is open,
// less often behind the item alone (each answer costs the server a few queries).
const STATUS_REFRESH_MS = 5000;
const STATUS_BACKGROUND_MS = 15000;

/** Shows the panel next to its item; disposing what it returns closes it. */
export type PanelOpener = (panel: Widget, anchor: Widget) => Widget;

/** The status bar's popup, above its item. */
const popupAbove: PanelOpener = (panel, anchor) =>
  showPopup({ body: panel, anchor, align: 'left' });

export class StatusItem extends Widget {
  constructor(options: {
    /** GET status, with the run `runId` at the same instant when given. */
    fetchStatus: (runId: string | null) => Promise<Outcome<ServerStatus>>;
    now?: () => number;
    maxExtrapolationMs: number;
    /** Where the panel opens (a toolbar at the top of the page opens it below). */
    openPanel?: PanelOpener;
    /** Opens "What Timeback records"; the panel links to it when given. */
    showRecords?: () => void;
  }) {
    super();
    this._fetchStatus = options.fetchStatus;
    this._openPanel = options.openPanel ?? popupAbove;
    this._showRecords = options.showRecords ?? null;
    this._now = options.now ?? (() => Date.now());
    this._time = new ActiveTime(options.maxExtrapolationMs);
    this.addClass('tb-StatusItem');
    this.addClass('jp-mod-highlight');
    this.node.title = 'Timeback: click for details';
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    this._icon = clockIcon.element({
      tag: 'span',
      className: 'tb-StatusItem-icon',
      stylesheet: 'statusBar'
    });
    this._name = span('tb-StatusItem-name', '');
    this._clock = span('tb-StatusItem-time', '');
    this._state = span('tb-StatusItem-state', '');
    this.node.append(this._icon, this._name, this._clock, this._state);
    this.node.addEventListener('click', () => this.toggle());
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        this.toggle();
      }
    });
  }

  /** What the current notebook's presence loop knows; null hides the item. */
  get snapshot(): Snapshot | null {
    return this._snapshot;
  }

  set snapshot(snapshot: Snapshot | null) {
    const before = this._snapshot?.run?.id ?? null;
    this._snapshot = snapshot;
    this._render();
    const runId = snapshot?.run?.id ?? null;
    if (runId !== null && runId !== before) {
      void this.refreshStatus(); // another run shown: its figures now, not at the next poll
    }
  }

  /** Whether there is something to show (the status bar hides the item otherwise). */
  get relevant(): boolean {
    const s = this._snapshot;
    return s !== null && (s.run !== null || s.phase === 'starting' || s.error !== null);
  }

  toggle(): void {
    if (this._popup !== null && !this._popup.isDisposed) {
      this._popup.dispose();
      return;
    }
    this._panel = new RunPanel(this._showRecords);
    this._panel.disposed.connect(() => {
      this._panel = null;
      this._popup = null;
    });
    const view = this.shown;
    this._panel.render(
      this._snapshot,
      this._status,
      this._seconds(view),
      this._statusError?.error ?? null,
      view?.text ?? null
    );
    this._popup = this._openPanel(this._panel, this);
    void this.refreshStatus();
  }

  /**
   * Ask the server for its status with the shown run (on open, then every few seconds while
   * there is something to show). An answer older than one already shown is dropped: requests
   * may overtake each other, and figures must not go back.
   */
  async refreshStatus(): Promise<void> {
    const asked = ++this._asked;
    const outcome = await this._fetchStatus(this._snapshot?.run?.id ?? null);
    if (asked < this._answered) {
      return;
    }
    this._answered = asked;
    this._statusAt = this._now();
    if (outcome.ok) {
      this._status = outcome.value;
      this._statusError = null;
    } else {
      this._statusError = { error: outcome.error, reachable: outcome.status !== null };
    }
    this._render();
  }

  override dispose(): void {
    this._stopTimers();
    this._popup?.dispose();
    super.dispose();
  }

  /** What the item says now (see runview's `shown`). */
  get shown(): Shown | null {
    const s = this._snapshot;
    return s === null
      ? null
      : shown(s, this._status, this._statusAt, this._statusError, this._now());
  }

  private _seconds(view: Shown | null = this.shown): number {
    const s = this._snapshot;
    if (s === null || view === null) {
      return 0;
    }
    const online = view.word !== 'offline';
    return this._time.seconds(
      { ...s, run: view.run, receivedAt: view.receivedAt, online },
      this._now()
    );
  }

  private _render(): void {
    const s = this._snapshot;
    if (s === null) {
      this._stopTimers();
      return;
    }
    const view = shown(s, this._status, this._statusAt, this._statusError, this._now());
    const seconds = this._seconds(view);
    const quiet = view.word === 'offline' || view.word === 'not recording';
    this._name.textContent = s.run?.activity.name ?? 'Timeback';
    this._clock.textContent = s.run === null ? '' : formatDuration(seconds);
    this._state.textContent = view.problems.length > 0 && !quiet ? `${view.text} ⚠` : view.text;
    this.node.dataset.state = view.word;
    this.node.dataset.delivery = view.deliverySlow ? 'slow' : 'ok';
    this.node.title =
      view.problems.length > 0
        ? `Timeback: ${view.problems.join('; ')}`
        : 'Timeback: click for details';
    this.toggleClass('tb-mod-problem', view.problems.length > 0);
    this._panel?.render(s, this._status, seconds, this._statusError?.error ?? null, view.text);
    this._startTimers(view);
  }

  private _startTimers(view: Shown): void {
    const ticking = view.word === 'active';
    if (ticking && this._tick === null) {
      this._tick = window.setInterval(() => this._render(), TICK_MS);
    } else if (!ticking && this._tick !== null) {
      window.clearInterval(this._tick);
      this._tick = null;
    }
    const every = this._panel !== null ? STATUS_REFRESH_MS : STATUS_BACKGROUND_MS;
    if (this._refresh !== null && this._refreshEvery !== every) {
      window.clearInterval(this._refresh);
      this._refresh = null;
    }
    if (this._refresh === null) {
      this._refresh = window.setInterval(() => void this.refreshStatus(), every);
      this._refreshEvery = every;
    }
    // the server pauses an idle run at a known instant: show it then, asked or not
    if (this._pause !== null) {
      window.clearTimeout(this._pause);
      this._pause = null;
    }
    const after = view.run?.state === 'inactive' ? view.run.pauses_in : null;
    if (view.word === 'idle' && typeof after === 'number' && Number.isFinite(after)) {
      const due = view.receivedAt + after * 1000 - this._now();
      this._pause = window.setTimeout(() => this._render(), Math.max(0, due) + 50);
    }
  }

  private _stopTimers(): void {
    if (this._pause !== null) {
      window.clearTimeout(this._pause);
      this._pause = null;
    }
    if (this._tick !== null) {
      window.clearInterval(this._tick);
      this._tick = null;
    }
    if (this._refresh !== null) {
      window.clearInterval(this._refresh);
      this._refresh = null;
    }
  }

  private readonly _fetchStatus: (runId: string | null) => Promise<Outcome<ServerStatus>>;
  private readonly _now: () => number;
  private readonly _openPanel: PanelOpener;
  private readonly _showRecords: (() => void) | null;
  private readonly _time: ActiveTime;
  private readonly _icon: HTMLElement;
  private readonly _name: HTMLElement;
  private readonly _clock: HTMLElement;
  private readonly _state: HTMLElement;
  private _snapshot: Snapshot | null = null;
  private _status: ServerStatus | null = null;
  private _statusAt = 0;
  private _statusError: { error: string; reachable: boolean } | null = null;
  private _asked = 0;
  private _answered = 0;
  private _pause: number | null = null;
  private _popup: Widget | null = null;
  private _panel: RunPanel | null = null;
  private _tick: number | null = null;
  private _refresh: number | null = null;
  private _refreshEvery = 0;
}

/** The details panel; rebuilt in place on every render. */
export class RunPanel extends Widget {
  constructor(showRecords: (() => void) | null = null) {
    super();
    this.addClass('tb-RunPanel');
    this._showRecords = showRecords;
  }

  /**
   * Show the snapshot's run with the server's figures: those of `status` (its run and today,
   * taken at one instant) when it describes this run, else the run's last answer. Each time
   * row carries its seconds in `data-seconds`. `activeSeconds` (the item's live count) is not
   * shown here: the panel shows only what the server said. `state` is the item's state text.
   */
  render(
    s: Snapshot | null,
    status: ServerStatus | null,
    _activeSeconds: number,
    statusError: string | null = null,
    state: string | null = null
  ): void {
    const rows: [string, string, string, number?][] = [];
    const run = s?.run ?? null;
    const title = document.createElement('div');
    title.className = 'tb-RunPanel-title';
    title.textContent = `Timeback · ${run?.activity.name ?? 'no run yet'}`;
    if (run !== null) {
      const figures: RunInfo & RunFigures = sameRun(status, run.id) ?? run;
      rows.push(['run-id', 'Run', run.id]);
      rows.push(['attempt', 'Attempt', String(run.attempt)]);
      rows.push(['state', 'State', state ?? (s ? label(s, Date.now()) : '')]);
      rows.push([
        'active',
        'Active time',
        formatDuration(figures.active_seconds),
        figures.active_seconds
      ]);
      rows.push([
        'inactive',
        'Inactive time',
        formatDuration(figures.inactive_seconds),
        figures.inactive_seconds
      ]);
      rows.push(['exercises', 'Exercises', describeExercises(run.exercises)]);
      if (run.completion) {
        rows.push(['xp', 'XP', describeXp(run.completion)]);
      }
    }
    const today = status?.today;
    const todayActive = today?.active_seconds;
    const todayInactive = today?.inactive_seconds;
    rows.push([
      'today',
      'Today',
      typeof todayActive === 'number' ? formatDuration(todayActive) : '—',
      todayActive
    ]);
    rows.push([
      'today-inactive',
      'Today inactive',
      typeof todayInactive === 'number' ? formatDuration(todayInactive) : '—',
      todayInactive
    ]);
    rows.push(['outbox', 'Outbox', describeOutbox(status)]);
    const table = document.createElement('table');
    for (const [key, name, value, seconds] of rows) {
      const tr = document.createElement('tr');
      tr.dataset.timeback = key;
      if (typeof seconds === 'number') {
        tr.dataset.seconds = String(seconds);
      }
      const th = document.createElement('th');
      th.textContent = name;
      const td = document.createElement('td');
      td.textContent = value;
      tr.append(th, td);
      table.append(tr);
    }
    if (typeof status?.as_of === 'number') {
      table.dataset.asOf = String(status.as_of);
    }
    const children: HTMLElement[] = [title, table];
    for (const note of panelNotes(s?.error, status, statusError)) {
      const div = document.createElement('div');
      div.className = `tb-RunPanel-${note.kind}`;
      div.dataset.timeback = note.kind;
      div.textContent = note.text;
      children.push(div);
    }
    if (this._showRecords !== null) {
      children.push(recordsLink(this._showRecords));
    }
    this.node.replaceChildren(...children);
  }

  private readonly _showRecords: (() => void) | null;
}

function recordsLink(show: () => void): HTMLElement {
  const link = document.createElement('button');
  link.className = 'tb-RunPanel-records';
  link.dataset.timeback = 'records';
  link.textContent = RECORDS_TITLE;
  link.addEventListener('click', () => show());
  return link;
}

/** The status answer's run when it is `runId` (and could be described). */
function sameRun(status: ServerStatus | null, runId: string): (RunInfo & RunFigures) | null {
  const run = status?.run;
  return run !== undefined && !('error' in run) && run.id === runId ? run : null;
}

function describeOutbox(status: ServerStatus | null): string {
  if (status === null) {
    return 'unknown';
  }
  const outbox = status.outbox;
  if (outbox === undefined || outbox.error) {
    return outbox?.error ? `store error: ${outbox.error}` : 'not running';
  }
  const pending = (outbox.pending ?? 0) + (outbox.inflight ?? 0);
  const parts = [`${pending} pending`, `${outbox.dead ?? 0} failed`];
  const delivery = status.delivery;
  if (delivery && delivery.state !== 'ok') {
    parts.push(delivery.last_error ? `${delivery.state}: ${delivery.last_error}` : delivery.state);
  }
  return parts.join(' · ');
}

function span(className: string, text: string): HTMLElement {
  const el = document.createElement('span');
  el.className = className;
  el.textContent = text;
  return el;
}
