/**
 * The status bar item (activity, live active time, state) and the panel it opens on click (run
 * id, attempt, exercises, today's time, outbox health). Server errors show here, never as
 * dialogs. Plain DOM with textContent only: nothing from the server is parsed as HTML.
 */

import { showPopup } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import clockSvg from '../style/clock.svg';

import type { Outcome } from './presence';
import type { Snapshot } from './presence';
import type { ServerStatus } from './api';
import { RECORDS_TITLE } from './records';
import { ActiveTime, describeExercises, describeXp, formatDuration, label } from './runview';

export const clockIcon = new LabIcon({ name: 'timeback-jupyter:clock', svgstr: clockSvg });

const TICK_MS = 1000;
const STATUS_REFRESH_MS = 5000;

/** Shows the panel next to its item; disposing what it returns closes it. */
export type PanelOpener = (panel: Widget, anchor: Widget) => Widget;

/** The status bar's popup, above its item. */
const popupAbove: PanelOpener = (panel, anchor) =>
  showPopup({ body: panel, anchor, align: 'left' });

export class StatusItem extends Widget {
  constructor(options: {
    fetchStatus: () => Promise<Outcome<ServerStatus>>;
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
    this._snapshot = snapshot;
    this._render();
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
    this._panel.render(this._snapshot, this._status, this._seconds());
    this._popup = this._openPanel(this._panel, this);
    void this.refreshStatus();
  }

  /** Ask the server for outbox health and problems (on open, then while the panel is open). */
  async refreshStatus(): Promise<void> {
    const outcome = await this._fetchStatus();
    this._status = outcome.ok ? outcome.value : null;
    this._statusError = outcome.ok ? null : outcome.error;
    this._render();
  }

  override dispose(): void {
    this._stopTimers();
    this._popup?.dispose();
    super.dispose();
  }

  private _seconds(): number {
    return this._snapshot === null ? 0 : this._time.seconds(this._snapshot, this._now());
  }

  private _render(): void {
    const s = this._snapshot;
    if (s === null) {
      this._stopTimers();
      return;
    }
    const word = label(s);
    const problem = s.error ?? this._status?.problem ?? this._statusError;
    this._name.textContent = s.run?.activity.name ?? 'Timeback';
    this._clock.textContent = s.run === null ? '' : formatDuration(this._seconds());
    this._state.textContent = problem && word !== 'offline' ? `${word} ⚠` : word;
    this.node.dataset.state = word;
    this.node.title = problem ? `Timeback: ${problem}` : 'Timeback: click for details';
    this.toggleClass('tb-mod-problem', Boolean(problem));
    this._panel?.render(s, this._status, this._seconds(), this._statusError);
    this._startTimers(word === 'active');
  }

  private _startTimers(ticking: boolean): void {
    if (ticking && this._tick === null) {
      this._tick = window.setInterval(() => this._render(), TICK_MS);
    } else if (!ticking && this._tick !== null) {
      window.clearInterval(this._tick);
      this._tick = null;
    }
    const open = this._panel !== null;
    if (open && this._refresh === null) {
      this._refresh = window.setInterval(() => void this.refreshStatus(), STATUS_REFRESH_MS);
    } else if (!open && this._refresh !== null) {
      window.clearInterval(this._refresh);
      this._refresh = null;
    }
  }

  private _stopTimers(): void {
    if (this._tick !== null) {
      window.clearInterval(this._tick);
      this._tick = null;
    }
    if (this._refresh !== null) {
      window.clearInterval(this._refresh);
      this._refresh = null;
    }
  }

  private readonly _fetchStatus: () => Promise<Outcome<ServerStatus>>;
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
  private _statusError: string | null = null;
  private _popup: Widget | null = null;
  private _panel: RunPanel | null = null;
  private _tick: number | null = null;
  private _refresh: number | null = null;
}

/** The details panel; rebuilt in place on every render. */
export class RunPanel extends Widget {
  constructor(showRecords: (() => void) | null = null) {
    super();
    this.addClass('tb-RunPanel');
    this._showRecords = showRecords;
  }

  render(
    s: Snapshot | null,
    status: ServerStatus | null,
    activeSeconds: number,
    statusError: string | null = null
  ): void {
    const rows: [string, string, string][] = [];
    const run = s?.run ?? null;
    const title = document.createElement('div');
    title.className = 'tb-RunPanel-title';
    title.textContent = `Timeback · ${run?.activity.name ?? 'no run yet'}`;
    if (run !== null) {
      rows.push(['run-id', 'Run', run.id]);
      rows.push(['attempt', 'Attempt', String(run.attempt)]);
      rows.push(['state', 'State', s ? label(s) : '']);
      rows.push(['active', 'Active time', formatDuration(activeSeconds)]);
      rows.push(['exercises', 'Exercises', describeExercises(run.exercises)]);
      if (run.completion) {
        rows.push(['xp', 'XP', describeXp(run.completion)]);
      }
    }
    const today = status?.today?.active_seconds;
    rows.push(['today', 'Today', today === undefined ? '—' : formatDuration(today)]);
    rows.push(['outbox', 'Outbox', describeOutbox(status)]);
    const table = document.createElement('table');
    for (const [key, name, value] of rows) {
      const tr = document.createElement('tr');
      tr.dataset.timeback = key;
      const th = document.createElement('th');
      th.textContent = name;
      const td = document.createElement('td');
      td.textContent = value;
      tr.append(th, td);
      table.append(tr);
    }
    const errors = [s?.error, status?.problem, statusError].filter(
      (e): e is string => typeof e === 'string' && e.length > 0
    );
    const children: HTMLElement[] = [title, table];
    for (const error of new Set(errors)) {
      const div = document.createElement('div');
      div.className = 'tb-RunPanel-error';
      div.dataset.timeback = 'error';
      div.textContent = error;
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
