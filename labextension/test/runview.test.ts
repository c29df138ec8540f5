import { describe, expect, it } from 'vitest';

import type { RunInfo, Snapshot } from '../src/presence';
import type { ServerStatus } from '../src/api';
import {
  ActiveTime,
  declaresActivity,
  describeExercises,
  describeXp,
  formatDuration,
  label,
  localMidnight,
  panelNotes,
  sameJson,
  shown,
  type RunFigures
} from '../src/runview';
import { makeRun } from './fakes';

function snap(overrides: Partial<Snapshot> = {}): Snapshot {
  return {
    phase: 'tracking',
    run: makeRun(),
    metadata: null,
    online: true,
    error: null,
    receivedAt: 0,
    ...overrides
  };
}

describe('label', () => {
  it('maps the run to one word', () => {
    expect(label(snap())).toBe('active');
    expect(label(snap({ run: makeRun({ state: 'inactive' }) }))).toBe('idle');
    expect(label(snap({ run: makeRun({ state: 'paused' }) }))).toBe('paused');
    expect(label(snap({ run: makeRun({ status: 'ended', state: 'ended' }) }))).toBe('ended');
    expect(label(snap({ run: null, phase: 'starting' }))).toBe('starting');
    expect(label(snap({ run: null, phase: 'stopped', error: 'no activity' }))).toBe(
      'not recording'
    );
  });

  it('completed wins over offline, offline over everything else', () => {
    const done = makeRun({ status: 'completed', state: 'completed' });
    expect(label(snap({ run: done, online: false }))).toBe('completed');
    expect(label(snap({ online: false }))).toBe('offline');
    expect(label(snap({ run: null, online: false }))).toBe('offline');
  });
});

describe('formatDuration', () => {
  it('shows m:ss under an hour and h:mm:ss above', () => {
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(5.9)).toBe('0:05');
    expect(formatDuration(754)).toBe('12:34');
    expect(formatDuration(3723)).toBe('1:02:03');
    expect(formatDuration(-3)).toBe('0:00');
    expect(formatDuration(Number.NaN)).toBe('0:00');
  });
});

describe('ActiveTime', () => {
  it('counts on from the server figure while active, capped', () => {
    const time = new ActiveTime(15000);
    const s = snap({ run: makeRun({ active_seconds: 60 }), receivedAt: 1000 });
    expect(time.seconds(s, 1000)).toBe(60);
    expect(time.seconds(s, 4000)).toBe(63);
    expect(time.seconds(s, 100_000)).toBe(75); // answers stopped: no invented time
  });

  it('does not count on while idle, paused or offline', () => {
    for (const s of [
      snap({ run: makeRun({ active_seconds: 60, state: 'inactive' }) }),
      snap({ run: makeRun({ active_seconds: 60, state: 'paused' }) }),
      snap({ run: makeRun({ active_seconds: 60 }), online: false })
    ]) {
      expect(new ActiveTime(15000).seconds(s, 10_000)).toBe(60);
    }
  });

  it('never goes back while counting, is exact at rest, starts over for another run', () => {
    const time = new ActiveTime(15000);
    expect(time.seconds(snap({ run: makeRun({ active_seconds: 10 }) }), 4000)).toBe(14);
    // the server's next figure is below our guess: hold, do not tick backwards
    const later = snap({ run: makeRun({ active_seconds: 13 }), receivedAt: 5000 });
    expect(time.seconds(later, 5000)).toBe(14);
    expect(time.seconds(later, 7000)).toBe(15);
    const done = makeRun({ active_seconds: 13.5, status: 'completed', state: 'completed' });
    expect(time.seconds(snap({ run: done, receivedAt: 8000 }), 9000)).toBe(13.5); // at rest: exact
    const other = makeRun({ id: 'another-run', active_seconds: 2 });
    expect(time.seconds(snap({ run: other, receivedAt: 7000 }), 7000)).toBe(2);
    expect(time.seconds(snap({ run: null }), 7000)).toBe(0);
  });
});

describe('describeExercises', () => {
  it('counts correct answers and lists them', () => {
    expect(describeExercises({})).toBe('none yet');
    expect(describeExercises({ q1: true, q2: false, q3: true })).toBe(
      '2 of 3 correct: q1 ✓, q2 ✗, q3 ✓'
    );
  });
});

describe('sameJson', () => {
  it('ignores key order, not values', () => {
    expect(sameJson({ a: 1, b: { c: [1, 2] } }, { b: { c: [1, 2] }, a: 1 })).toBe(true);
    expect(sameJson({ a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [2, 1] } })).toBe(false);
    expect(sameJson({ run: { status: 'active' } }, { run: { status: 'completed' } })).toBe(false);
    expect(sameJson(undefined, { a: 1 })).toBe(false);
    expect(sameJson(null, null)).toBe(true);
  });
});

describe('localMidnight', () => {
  it('is the start of the local day', () => {
    const evening = new Date(2026, 0, 27, 21, 45, 10);
    expect(localMidnight(evening)).toBe(new Date(2026, 0, 27).getTime());
    expect(localMidnight(new Date(2026, 0, 27))).toBe(new Date(2026, 0, 27).getTime());
  });
});

describe('describeXp', () => {
  it('shows the XP with every reason the policy gave', () => {
    const reasons = [
      '0 XP: 6/10 correct, below 80%',
      'claimed 9 XP, more than the policy allows: 0 XP'
    ];
    expect(describeXp({ xp_earned: 0, xp_outcome: { reasons } })).toBe(
      '0 XP: 6/10 correct, below 80%; claimed 9 XP, more than the policy allows: 0 XP'
    );
  });

  it('shows the XP alone for a completion recorded before reasons were kept', () => {
    expect(describeXp({ xp_earned: 6.25, xp_outcome: null })).toBe('6.3 XP');
    expect(describeXp({ xp_earned: Number.NaN })).toBe('0 XP');
  });
});

function status(overrides: Partial<ServerStatus> = {}): ServerStatus {
  return {
    recording: true,
    problem: null,
    sink: 'timeback',
    delivery: { state: 'ok', last_error: null, pending: 0, dead_letters: 0, slow: false },
    ...overrides
  };
}

describe('label: paused when the server paused', () => {
  it('an idle run shows paused from the instant the server announced, unasked', () => {
    const idle: RunInfo & RunFigures = { ...makeRun({ state: 'inactive' }), pauses_in: 600 };
    const s = snap({ run: idle, receivedAt: 1000 });
    expect(label(s, 1000)).toBe('idle');
    expect(label(s, 600_999)).toBe('idle');
    expect(label(s, 601_000)).toBe('paused'); // a hidden tab asks nothing, and still knows
    expect(label(s)).toBe('idle'); // without a time: the server's word as it was
    const running: RunInfo & RunFigures = { ...makeRun(), pauses_in: null };
    const active = snap({ run: running, receivedAt: 0 });
    expect(label(active, 10_000_000)).toBe('active');
  });
});

describe('shown: what the status bar says now', () => {
  const bad =
    "mathz.ipynb: metadata.timeback.activity.course.grade: must be an integer, got 'three'; " +
    "metadata.timeback.activity.course.subject: 'Mathz' is not one of Reading, Math; " +
    "metadata.timeback.activity.id: 'has spaces!' is not a slug";

  it('names every reason for not recording, with the fix, in its text', () => {
    const view = shown(snap({ run: null, phase: 'stopped', error: bad }), null, 0, null, 0);
    expect(view.word).toBe('not recording');
    expect(view.text).toBe(
      `not recording: ${bad} — fix: correct metadata.timeback in the notebook's metadata ` +
        '(JupyterLab: Property Inspector, Notebook metadata), save and reopen it; ' +
        '`jupyter timeback doctor mathz.ipynb` checks it'
    );
    const server = shown(
      snap(),
      status({ recording: false, problem: 'no student email: set c.Timeback.student_email' }),
      1,
      null,
      1
    );
    expect(server.word).toBe('not recording');
    expect(server.text).toContain('not recording: no student email: set c.Timeback.student_email');
  });

  it('says delivery is slow while events wait', () => {
    const slow = status({
      delivery: { state: 'ok', last_error: null, pending: 1, dead_letters: 0, slow: true }
    });
    const view = shown(snap(), slow, 1, null, 1);
    expect(view.text).toBe('active · delivery slow');
    expect(view.word).toBe('active');
  });

  it('offline: the seconds written but not sent as last known, never more than recorded', () => {
    const run = makeRun({ active_seconds: 40, inactive_seconds: 5 });
    const answer = status({ run: { ...run, unsent_seconds: 30.7 } });
    const offline = snap({ run, online: false, receivedAt: 0 });
    expect(shown(offline, answer, 1, null, 2).text).toBe('offline: 30 s not yet sent');
    const more = status({ run: { ...run, unsent_seconds: 52 } });
    expect(shown(offline, more, 1, null, 2).text).toBe('offline: 45 s not yet sent');
    expect(shown(offline, null, 0, null, 2).text).toBe('offline'); // nothing known
    // the status request failing to reach the server is offline too
    const unreachable = { error: 'the Jupyter server cannot be reached', reachable: false };
    const view = shown(snap({ run }), answer, 1, unreachable, 2);
    expect(view.word).toBe('offline');
    expect(view.text).toBe('offline: 30 s not yet sent');
  });

  it('takes the newer of the presence answer and the status answer', () => {
    const older = makeRun({ active_seconds: 10, state: 'inactive' });
    const newer = { ...makeRun({ active_seconds: 12, state: 'paused' }), unsent_seconds: 0 };
    const s = snap({ run: older, receivedAt: 1000 });
    expect(shown(s, status({ run: newer }), 2000, null, 2000).word).toBe('paused');
    expect(shown(s, status({ run: newer }), 500, null, 2000).word).toBe('idle');
    const other = { ...newer, id: 'another-run' };
    expect(shown(s, status({ run: other }), 2000, null, 2000).run?.id).toBe(older.id);
  });
});

describe('declaresActivity', () => {
  it('asks for a run when the section declares one or is no object at all', () => {
    expect(declaresActivity(undefined)).toBe(false);
    expect(declaresActivity(null)).toBe(false);
    expect(declaresActivity({ schema_version: 2 })).toBe(false);
    expect(declaresActivity({ activity: { id: 'a' } })).toBe(true);
    expect(declaresActivity('not-a-dict')).toBe(true);
    expect(declaresActivity([1])).toBe(true);
  });
});

describe('panelNotes', () => {
  const status = (over: Partial<ServerStatus> = {}): ServerStatus => ({
    recording: true,
    problem: null,
    sink: 'local',
    ...over
  });

  it('says each error once, the store warning after them', () => {
    const notes = panelNotes(
      'the store is locked',
      status({
        problem: 'the store is locked',
        store: { error: null, warning: 'the store is on nfs4: move it to a local disk' }
      }),
      'status: HTTP 500'
    );
    expect(notes).toEqual([
      { kind: 'error', text: 'the store is locked' },
      { kind: 'error', text: 'status: HTTP 500' },
      { kind: 'warning', text: 'the store is on nfs4: move it to a local disk' }
    ]);
  });

  it('is empty when all is well or the server said nothing of its store', () => {
    expect(panelNotes(null, status({ store: { error: null, warning: null } }), null)).toEqual([]);
    expect(panelNotes(undefined, status(), null)).toEqual([]);
    expect(panelNotes('', null, '')).toEqual([]);
  });
});
