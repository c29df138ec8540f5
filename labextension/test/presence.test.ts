import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import {
  backoff,
  PresenceLoop,
  withRunStatus,
  type Clock,
  type Snapshot,
  type TimebackMetadata
} from '../src/presence';
import { failing, FakePage, FakeServer, makeRun, metadataOf, RUN_ID } from './fakes';

const INTERVAL = 5000;
const MAX_BACKOFF = 60000;
const T0 = Date.UTC(2026, 0, 27, 10, 0, 0);

const clock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: handle => clearTimeout(handle as ReturnType<typeof setTimeout>)
};

let server: FakeServer;
let page: FakePage;
let snapshots: Snapshot[];
let written: TimebackMetadata[];

function makeLoop(path = 'lesson.ipynb'): PresenceLoop {
  return new PresenceLoop({
    path,
    source: 'tab-1',
    server,
    page,
    clock,
    interval: INTERVAL,
    maxBackoff: MAX_BACKOFF,
    onChange: s => snapshots.push(s),
    onMetadata: m => written.push(m)
  });
}

/** Let pending promise callbacks run without moving the clock. */
const settle = () => vi.advanceTimersByTimeAsync(0);
const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(T0);
  server = new FakeServer();
  page = new FakePage();
  snapshots = [];
  written = [];
});

afterEach(() => {
  vi.useRealTimers();
});

describe('starting', () => {
  it('starts the declared run, reports at once and hands the metadata to write', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    expect(server.starts).toEqual(['lesson.ipynb']);
    expect(server.reports).toEqual([
      { path: 'lesson.ipynb', source: 'tab-1', visible: true, focused: true, idle_ms: 0 }
    ]);
    expect(loop.snapshot.phase).toBe('tracking');
    expect(loop.snapshot.run?.id).toBe(RUN_ID);
    expect(written[0]).toEqual(metadataOf(makeRun()));
  });

  it('a notebook without an activity only reports presence, and starts nothing', async () => {
    const loop = makeLoop('scratch.ipynb');
    loop.begin(false);
    await settle();
    expect(server.starts).toEqual([]);
    expect(server.reports).toHaveLength(1);
    expect(loop.snapshot.run).toBeNull();
    await advance(INTERVAL);
    expect(server.reports).toHaveLength(2);
    expect(server.gets).toEqual([]); // no run vanished: there was none
  });

  it('adopts a run the kernel started later (it arrives in a presence answer)', async () => {
    const loop = makeLoop('scratch.ipynb');
    loop.begin(false);
    await settle();
    server.run = makeRun({ path: 'scratch.ipynb' });
    await advance(INTERVAL);
    expect(loop.snapshot.run?.id).toBe(RUN_ID);
    expect(written).toHaveLength(1);
  });

  it('stops for good when the server refuses the notebook (404, 400)', async () => {
    server.startScript = [failing(404, 'lesson.ipynb declares no timeback activity')];
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    expect(loop.snapshot.phase).toBe('stopped');
    expect(loop.snapshot.error).toBe('lesson.ipynb declares no timeback activity');
    expect(loop.snapshot.online).toBe(true);
    await advance(10 * MAX_BACKOFF);
    expect(server.starts).toHaveLength(1);
    expect(server.reports).toEqual([]);
  });

  it('retries a start that failed for a passing reason, with backoff', async () => {
    server.startScript = [failing(503, 'timeback is not recording: store locked'), failing(503)];
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    expect(loop.snapshot.phase).toBe('starting');
    expect(loop.snapshot.error).toBe('timeback is not recording: store locked');
    await advance(INTERVAL - 1);
    expect(server.starts).toHaveLength(1);
    await advance(1);
    expect(server.starts).toHaveLength(2);
    await advance(2 * INTERVAL);
    expect(server.starts).toHaveLength(3);
    expect(loop.snapshot.phase).toBe('tracking');
    expect(loop.snapshot.error).toBeNull();
  });

  it('begins only once', async () => {
    const loop = makeLoop();
    loop.begin(true);
    loop.begin(true);
    await settle();
    expect(server.starts).toHaveLength(1);
  });
});

describe('reporting', () => {
  // Two ways out of the front: the tab hidden, or the notebook beside the one with the focus
  // (or its window left for another). Either way the server counts no time for it.
  const awayFromFront: [string, (inFront: boolean) => void, Record<string, boolean>][] = [
    ['hidden', inFront => (page.shown = inFront), { visible: false, focused: false }],
    ['not focused', inFront => (page.focus = inFront), { visible: true, focused: false }]
  ];

  it.each(awayFromFront)(
    'reports every interval in front; %s: once, then quiet until it is back',
    async (_, setInFront, away) => {
      const loop = makeLoop();
      loop.begin(true);
      await settle();
      await advance(3 * INTERVAL);
      expect(server.reports).toHaveLength(4);
      expect(loop.nextIn).toBe(INTERVAL);

      setInFront(false);
      loop.changed();
      await settle();
      expect(server.reports).toHaveLength(5);
      expect(server.reports[4]).toMatchObject(away);
      expect(loop.nextIn).toBeNull();
      await advance(10 * INTERVAL);
      expect(server.reports).toHaveLength(5);

      setInFront(true);
      loop.changed();
      await settle();
      expect(server.reports).toHaveLength(6);
      expect(server.reports[5]).toMatchObject({ visible: true, focused: true });
      await advance(INTERVAL);
      expect(server.reports).toHaveLength(7);
    }
  );

  it('a focus change is reported at once and restarts the interval', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    await advance(3000);
    page.focus = false;
    loop.changed();
    await settle();
    expect(server.reports.at(-1)).toMatchObject({ visible: true, focused: false });
    page.focus = true;
    loop.changed();
    await settle();
    expect(server.reports.at(-1)).toMatchObject({ visible: true, focused: true });
    expect(loop.nextIn).toBe(INTERVAL);
    await advance(INTERVAL - 1);
    expect(server.reports).toHaveLength(3);
    await advance(1);
    expect(server.reports).toHaveLength(4);
  });

  it('opened beside the notebook with the focus: reported once, then quiet', async () => {
    page.focus = false;
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    expect(server.reports).toEqual([
      { path: 'lesson.ipynb', source: 'tab-1', visible: true, focused: false, idle_ms: 0 }
    ]);
    expect(loop.nextIn).toBeNull();
    await advance(20 * INTERVAL);
    expect(server.reports).toHaveLength(1);
  });

  it('a change elsewhere (another notebook focused) that leaves this one as it was sends nothing', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    await advance(2000);
    loop.changed();
    await settle();
    expect(server.reports).toHaveLength(1);
    expect(loop.nextIn).toBe(INTERVAL - 2000); // the interval runs on undisturbed

    page.focus = false;
    loop.changed();
    await settle();
    expect(server.reports).toHaveLength(2);
    loop.changed();
    loop.changed();
    await settle();
    await advance(10 * INTERVAL);
    expect(server.reports).toHaveLength(2);
  });

  it('a refresh from the server makes a quiet notebook report at once', async () => {
    page.focus = false;
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    await advance(10 * INTERVAL);
    expect(server.reports).toHaveLength(1);
    // completed from the kernel meanwhile: the answer is null, the lookup says completed
    server.stored.set(RUN_ID, makeRun({ status: 'completed', state: 'completed', live: false }));
    server.presenceScript = ['forget'];
    loop.refresh();
    await settle();
    expect(server.reports).toHaveLength(2);
    expect(server.gets).toEqual([RUN_ID]);
    expect(loop.snapshot.run?.status).toBe('completed');
    expect(written.at(-1)?.run.status).toBe('completed');
    expect(loop.nextIn).toBeNull(); // and quiet again
  });

  it('coalesces changes made while a report is in flight into one more report', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.hold();
    page.focus = false;
    loop.changed();
    await settle();
    expect(server.reports).toHaveLength(2);
    page.focus = true;
    loop.changed();
    loop.changed();
    loop.changed();
    server.release();
    await settle();
    expect(server.reports).toHaveLength(3);
    expect(server.reports[2]).toMatchObject({ focused: true });
  });

  it('changes made while a report is in flight and undone before its answer send nothing more', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.hold();
    page.focus = false;
    loop.changed();
    await settle();
    page.focus = true;
    loop.changed();
    page.focus = false;
    loop.changed();
    server.release();
    await settle();
    expect(server.reports).toHaveLength(2);
    expect(server.reports[1]).toMatchObject({ focused: false });
    expect(loop.nextIn).toBeNull();
  });

  it('sends the time since the last input in the notebook as idle_ms', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    await advance(2000);
    loop.input();
    await advance(INTERVAL - 2000);
    expect(server.reports.at(-1)?.idle_ms).toBe(INTERVAL - 2000);
    loop.input(T0); // a late report of an old input cannot make the student idler
    await advance(INTERVAL);
    expect(server.reports.at(-1)?.idle_ms).toBe(2 * INTERVAL - 2000);
  });

  it('input after a pause longer than the interval is reported at once', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    await advance(INTERVAL);
    loop.input(); // 5 s since the start: not more than the interval, no extra report
    await settle();
    expect(server.reports).toHaveLength(2);
    await advance(INTERVAL + 1000);
    expect(server.reports).toHaveLength(3);
    loop.input(); // 6 s idle
    await settle();
    expect(server.reports).toHaveLength(4);
    expect(server.reports[3]?.idle_ms).toBe(0);
  });

  it('later reports name the new path after a rename', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    loop.path = 'renamed.ipynb';
    await advance(INTERVAL);
    expect(server.reports.at(-1)?.path).toBe('renamed.ipynb');
    expect(loop.path).toBe('renamed.ipynb');
  });

  it('hands over the metadata of every answer (the caller writes it when it differs)', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    await advance(INTERVAL);
    expect(written).toHaveLength(3); // the start, the first report, the next one
    server.run = makeRun({ id: 'f1f1f1f1-0000-4000-8000-000000000002', attempt: 2 });
    await advance(INTERVAL);
    expect(written.at(-1)?.run).toMatchObject({ attempt: 2 });
    expect(loop.snapshot.run?.attempt).toBe(2);
  });
});

describe('offline and server errors', () => {
  it('backs off 5, 10, 20, 40, 60, 60 s while offline, then recovers', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.down = true;
    await advance(INTERVAL);
    expect(loop.snapshot.online).toBe(false);
    expect(loop.snapshot.error).toBe('unreachable');
    const times: number[] = [];
    let seen = server.reports.length;
    for (let t = 0; t < 200_000; t += 1000) {
      await advance(1000);
      if (server.reports.length > seen) {
        seen = server.reports.length;
        times.push(t + 1000);
      }
    }
    const gaps = times.map((t, i) => t - (i === 0 ? 0 : times[i - 1]!));
    expect(gaps.slice(0, 5)).toEqual([5000, 10000, 20000, 40000, 60000]);

    server.down = false;
    await advance(MAX_BACKOFF);
    expect(loop.snapshot.online).toBe(true);
    expect(loop.snapshot.error).toBeNull();
    const before = server.reports.length;
    await advance(INTERVAL);
    expect(server.reports.length).toBe(before + 1);
  });

  it('changes while a retry is pending wait for it, and it samples the page anew', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.down = true;
    await advance(INTERVAL); // fails: retry in 5 s
    const count = server.reports.length;
    page.focus = false;
    loop.changed();
    await settle();
    expect(server.reports.length).toBe(count);
    await advance(INTERVAL);
    expect(server.reports.length).toBe(count + 1);
    expect(server.reports.at(-1)).toMatchObject({ focused: false });
  });

  it('hidden while offline: retried until the server hears it; showing it tries at once', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.down = true;
    page.shown = false;
    loop.changed();
    await settle();
    expect(loop.nextIn).toBe(INTERVAL); // the server has not heard that the tab is hidden
    await advance(INTERVAL + 2 * INTERVAL);
    expect(server.reports.filter(r => !r.visible)).toHaveLength(3);
    server.down = false;
    await advance(4 * INTERVAL);
    expect(loop.snapshot.online).toBe(true);
    expect(loop.nextIn).toBeNull(); // told: quiet while hidden
    const count = server.reports.length;
    await advance(5 * MAX_BACKOFF);
    expect(server.reports.length).toBe(count);
    page.shown = true;
    loop.changed();
    await settle();
    expect(server.reports.length).toBe(count + 1);
    expect(server.reports.at(-1)).toMatchObject({ visible: true });
  });

  it('hidden while a report fails: retried until the server hears it, then quiet', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.presenceScript = [failing(503, 'busy')];
    server.hold();
    await advance(INTERVAL); // a report in flight, about to fail...
    page.shown = false;
    loop.changed(); // ...when the tab is hidden
    server.release();
    await settle();
    expect(loop.snapshot.error).toBe('busy');
    expect(server.reports.at(-1)).toMatchObject({ visible: true });
    expect(loop.nextIn).toBe(INTERVAL); // the server still thinks the tab is in front
    await advance(INTERVAL);
    expect(server.reports.at(-1)).toMatchObject({ visible: false });
    expect(loop.nextIn).toBeNull();
    const count = server.reports.length;
    await advance(10 * INTERVAL);
    expect(server.reports.length).toBe(count);
  });

  it('a server error is shown but is not offline', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.presenceScript = [failing(503, 'the timeback store failed: disk full')];
    await advance(INTERVAL);
    expect(loop.snapshot.online).toBe(true);
    expect(loop.snapshot.error).toBe('the timeback store failed: disk full');
    expect(loop.nextIn).toBe(INTERVAL);
    await advance(INTERVAL);
    expect(loop.snapshot.error).toBeNull();
    expect(snapshots.some(s => s.error !== null)).toBe(true);
  });
});

describe('a run the server no longer holds', () => {
  it('completed from the kernel: shown as completed, saved as completed, not restarted', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.stored.set(RUN_ID, makeRun({ status: 'completed', state: 'completed', live: false }));
    server.presenceScript = ['forget'];
    await advance(INTERVAL);
    expect(server.gets).toEqual([RUN_ID]);
    expect(server.starts).toHaveLength(1);
    expect(loop.snapshot.run?.status).toBe('completed');
    expect(written.at(-1)?.run.status).toBe('completed');
    await advance(INTERVAL); // still nothing live: completed runs are not asked about again
    expect(server.gets).toHaveLength(1);
    expect(server.starts).toHaveLength(1);
  });

  it('ended from the kernel: shown as ended, saved as ended, not restarted', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.stored.set(RUN_ID, makeRun({ status: 'ended', state: 'ended', live: false }));
    server.presenceScript = ['forget'];
    await advance(INTERVAL);
    expect(loop.snapshot.run?.status).toBe('ended');
    expect(written.at(-1)?.run.status).toBe('ended');
    await advance(3 * INTERVAL);
    expect(server.gets).toHaveLength(1);
    expect(server.starts).toHaveLength(1);
    server.run = makeRun({ attempt: 2, id: 'f1f1f1f1-0000-4000-8000-000000000002' });
    await advance(INTERVAL); // the server starts one again (say, %timeback start): adopted
    expect(loop.snapshot.run?.attempt).toBe(2);
  });

  it('still active in the store of a crashed server: started (resumed) again', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.presenceScript = ['forget'];
    await advance(INTERVAL);
    expect(server.gets).toEqual([RUN_ID]);
    expect(server.starts).toHaveLength(2);
    expect(loop.snapshot.run?.live).toBe(true);
  });

  it('gone with a restarted server: started (resumed) again at once', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.presenceScript = ['forget'];
    server.stored.clear(); // the new server has never heard of it
    await advance(INTERVAL);
    expect(server.gets).toEqual([RUN_ID]);
    expect(server.starts).toHaveLength(2);
    expect(loop.snapshot.phase).toBe('tracking');
    expect(loop.snapshot.run?.live).toBe(true);
    expect(server.reports.at(-1)?.path).toBe('lesson.ipynb');
  });

  it('offline while asking: retried later, nothing restarted', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.presenceScript = ['forget'];
    const realGet = server.getRun.bind(server);
    server.getRun = id => {
      server.down = true;
      return realGet(id);
    };
    await advance(INTERVAL);
    expect(server.starts).toHaveLength(1);
    expect(loop.snapshot.online).toBe(false);
  });
});

describe('leaving', () => {
  it('pagehide sends one leaving report and stops; pageshow from the cache resumes', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    await advance(2000);
    loop.leave();
    expect(server.leaves).toEqual([
      {
        path: 'lesson.ipynb',
        source: 'tab-1',
        visible: false,
        focused: false,
        idle_ms: 2000,
        leaving: true
      }
    ]);
    expect(loop.snapshot.phase).toBe('left');
    const count = server.reports.length;
    await advance(10 * INTERVAL);
    expect(server.reports.length).toBe(count);
    loop.leave();
    expect(server.leaves).toHaveLength(1);

    loop.back();
    await settle();
    expect(loop.snapshot.phase).toBe('tracking');
    expect(server.reports.length).toBe(count + 1);
    expect(server.starts).toHaveLength(1);
  });

  it('an answer arriving after leaving changes nothing', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    server.hold();
    await advance(INTERVAL);
    loop.leave();
    server.release();
    await settle();
    expect(loop.snapshot.phase).toBe('left');
    expect(loop.nextIn).toBeNull();
  });

  it('dispose leaves once and ends everything', async () => {
    const loop = makeLoop();
    loop.begin(true);
    await settle();
    loop.dispose();
    loop.dispose();
    loop.changed();
    loop.back();
    await advance(10 * INTERVAL);
    expect(server.leaves).toHaveLength(1);
    expect(server.reports).toHaveLength(1);
    expect(loop.snapshot.phase).toBe('disposed');
  });
});

describe('helpers', () => {
  it('backoff doubles from the interval up to the cap', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 30].map(n => backoff(n, 5000, 60000))).toEqual([
      5000, 5000, 10000, 20000, 40000, 60000, 60000, 60000
    ]);
  });

  it('withRunStatus changes only the run status, on a copy', () => {
    const metadata = metadataOf(makeRun());
    const done = withRunStatus(metadata, 'completed');
    expect(done.run.status).toBe('completed');
    expect(done.run.id).toBe(RUN_ID);
    expect(done.activity).toBe(metadata.activity);
    expect(metadata.run.status).toBe('active');
  });
});
