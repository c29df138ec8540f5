import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { Clock, PresenceReport } from '../src/presence';
import { presenceSocketUrl, SocketServer, type SocketLike } from '../src/socket';
import { FakeServer, makeRun, metadataOf } from './fakes';

const URL = 'ws://localhost:8888/timeback/api/presence/socket';
const T0 = Date.UTC(2026, 0, 27, 10, 0, 0);

const clock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: handle => clearTimeout(handle as ReturnType<typeof setTimeout>)
};

/** A browser WebSocket as the server would drive it: the test opens, answers and closes it. */
class FakeSocket implements SocketLike {
  static made: FakeSocket[] = [];
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  closed = false;
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;

  constructor(readonly url: string) {
    FakeSocket.made.push(this);
  }

  send(data: string): void {
    if (this.readyState !== 1) {
      throw new Error('send on a socket that is not open');
    }
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(): void {
    this.closed = true;
    this.drop();
  }

  // ---- what the server (or the network) does ----

  accept(): void {
    this.readyState = 1;
    this.onopen?.({} as Event);
  }

  reply(message: unknown): void {
    this.onmessage?.({ data: JSON.stringify(message) } as MessageEvent);
  }

  drop(): void {
    if (this.readyState === 3) {
      return;
    }
    this.readyState = 3;
    this.onclose?.({} as CloseEvent);
  }
}

const latest = (): FakeSocket => {
  const socket = FakeSocket.made.at(-1);
  if (socket === undefined) {
    throw new Error('no socket was made');
  }
  return socket;
};

function report(overrides: Partial<PresenceReport> = {}): PresenceReport {
  return {
    path: 'lesson.ipynb',
    source: 'tab-1',
    visible: true,
    focused: true,
    idle_ms: 0,
    ...overrides
  };
}

let rest: FakeServer;
let server: SocketServer;
const settle = () => vi.advanceTimersByTimeAsync(0);

/** A server with its socket open (made by a first report, which went over REST). */
async function opened(): Promise<FakeSocket> {
  await server.presence(report());
  latest().accept();
  rest.reports = [];
  return latest();
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(T0);
  FakeSocket.made = [];
  rest = new FakeServer();
  rest.run = makeRun();
  server = new SocketServer({
    url: URL,
    rest,
    WebSocket: FakeSocket,
    clock,
    replyTimeout: 10000,
    minBackoff: 5000,
    maxBackoff: 60000
  });
});

afterEach(() => {
  vi.useRealTimers();
});

describe('the socket URL', () => {
  it('adds the token only when the page needs it, as kernel sockets do', () => {
    const settings = { wsUrl: 'ws://hub.example/user/ada/', token: 'a b', appendToken: true };
    expect(presenceSocketUrl(settings)).toBe(
      'ws://hub.example/user/ada/timeback/api/presence/socket?token=a%20b'
    );
    expect(presenceSocketUrl({ ...settings, appendToken: false })).toBe(
      'ws://hub.example/user/ada/timeback/api/presence/socket'
    );
    expect(presenceSocketUrl({ ...settings, wsUrl: 'ws://h:1', token: '' })).toBe(
      'ws://h:1/timeback/api/presence/socket'
    );
  });
});

describe('reports over the socket', () => {
  it('sends each report with an id and matches the answers by id, in any order', async () => {
    const socket = await opened();
    const first = server.presence(report({ idle_ms: 1 }));
    const second = server.presence(report({ idle_ms: 2 }));
    expect(socket.sent).toEqual([
      { id: 1, ...report({ idle_ms: 1 }) },
      { id: 2, ...report({ idle_ms: 2 }) }
    ]);
    const run = { ...makeRun({ active_seconds: 7 }), metadata: metadataOf(makeRun()) };
    socket.reply({
      id: 2,
      status: 400,
      message: 'idle_ms: must be a non-negative number',
      reason: null
    });
    socket.reply({ id: 99, run: null }); // nobody's: ignored
    socket.reply({ id: null, status: 400, message: 'message is not valid JSON', reason: null });
    socket.reply({ id: 1, run });
    expect(await first).toEqual({ ok: true, value: { run } });
    expect(await second).toEqual({
      ok: false,
      status: 400,
      error: 'idle_ms: must be a non-negative number'
    });
    expect(rest.reports).toEqual([]);
    expect(FakeSocket.made).toHaveLength(1);
  });

  it('a refresh the server sends unasked goes to onRefresh with its path, nothing else does', async () => {
    const refreshed: string[] = [];
    server = new SocketServer({
      url: URL,
      rest,
      WebSocket: FakeSocket,
      clock,
      onRefresh: p => refreshed.push(p)
    });
    const socket = await opened();
    const pending = server.presence(report());
    socket.reply({ refresh: 'lesson.ipynb' });
    socket.reply({ refresh: 42 }); // malformed: ignored
    socket.reply({ id: 1, refresh: 'other.ipynb', run: null }); // an answer, not a refresh
    expect(refreshed).toEqual(['lesson.ipynb']);
    expect(await pending).toEqual({ ok: true, value: { run: null } });
  });

  it('a notebook without a run gets null, as over REST', async () => {
    const socket = await opened();
    const answer = server.presence(report());
    socket.reply({ id: 1, run: null });
    expect(await answer).toEqual({ ok: true, value: { run: null } });
  });

  it('no answer within the timeout is a failed report, and the stuck socket is dropped', async () => {
    const socket = await opened();
    let outcome: unknown = null;
    void server.presence(report()).then(o => (outcome = o));
    await vi.advanceTimersByTimeAsync(9999);
    expect(outcome).toBeNull();
    await vi.advanceTimersByTimeAsync(1);
    expect(outcome).toEqual({
      ok: false,
      status: null,
      error: 'no answer from the Jupyter server within 10 s'
    });
    expect(socket.closed).toBe(true);
    socket.reply({ id: 1, run: null }); // too late: ignored
    // the next report goes over REST
    expect((await server.presence(report())).ok).toBe(true);
    expect(rest.reports).toHaveLength(1);
  });

  it('a report in flight when the socket closes is sent again over REST', async () => {
    const socket = await opened();
    const answer = server.presence(report({ idle_ms: 5 }));
    socket.drop();
    const outcome = await answer;
    expect(outcome.ok).toBe(true);
    expect(rest.reports).toEqual([report({ idle_ms: 5 })]);
  });
});

describe('while the socket is not open', () => {
  it('reports go over REST while it connects, then over the socket', async () => {
    const outcome = await server.presence(report());
    expect(outcome.ok).toBe(true);
    expect(rest.reports).toHaveLength(1);
    const socket = latest();
    expect(socket.url).toBe(URL);
    expect(server.open).toBe(false);
    await server.presence(report()); // still connecting: REST, and no second socket
    expect(rest.reports).toHaveLength(2);
    expect(FakeSocket.made).toHaveLength(1);
    socket.accept();
    expect(server.open).toBe(true);
    void server.presence(report());
    expect(socket.sent).toHaveLength(1);
    expect(rest.reports).toHaveLength(2);
  });

  it('reconnects on demand, waiting 5 s after a failure, doubling up to 60 s', async () => {
    await server.presence(report());
    latest().drop(); // refused (a 403, an old server without the route, a proxy)
    const attempts: number[] = [0];
    for (let t = 0; t <= 200_000; t += 1000) {
      vi.setSystemTime(T0 + t);
      const before = FakeSocket.made.length;
      await server.presence(report());
      if (FakeSocket.made.length > before) {
        attempts.push(t);
        latest().drop();
      }
    }
    expect(attempts).toEqual([0, 5000, 15000, 35000, 75000, 135000, 195000]);
    expect(rest.reports.length).toBeGreaterThan(200); // every report still reached the server
  });

  it('a socket that works again resets the wait', async () => {
    await server.presence(report());
    latest().drop();
    vi.setSystemTime(T0 + 5000);
    await server.presence(report());
    const socket = latest();
    socket.accept();
    const answer = server.presence(report());
    socket.reply({ id: 1, run: null });
    await answer;
    vi.setSystemTime(T0 + 600_000);
    socket.drop();
    const made = FakeSocket.made.length;
    vi.setSystemTime(T0 + 604_999);
    await server.presence(report());
    expect(FakeSocket.made).toHaveLength(made);
    vi.setSystemTime(T0 + 605_000);
    await server.presence(report());
    expect(FakeSocket.made).toHaveLength(made + 1);
  });

  it('a socket that cannot even be made leaves reports on REST', async () => {
    class Forbidden extends FakeSocket {
      constructor(url: string) {
        super(url);
        throw new Error('SecurityError');
      }
    }
    server = new SocketServer({ url: URL, rest, WebSocket: Forbidden, clock });
    expect((await server.presence(report())).ok).toBe(true);
    expect((await server.presence(report())).ok).toBe(true);
    expect(rest.reports).toHaveLength(2);
    expect(FakeSocket.made).toHaveLength(1); // tried once, then waits before trying again
  });
});

describe('the rest of the Server interface', () => {
  it('starts and run lookups go over REST', async () => {
    await server.startRun('lesson.ipynb');
    await server.getRun(makeRun().id);
    expect(rest.starts).toEqual(['lesson.ipynb']);
    expect(rest.gets).toEqual([makeRun().id]);
    expect(FakeSocket.made).toHaveLength(0);
  });

  it('leaving goes over the open socket, else as the keepalive request', async () => {
    const leaving = report({ visible: false, focused: false, leaving: true });
    server.leave(leaving); // no socket yet
    expect(rest.leaves).toEqual([leaving]);
    const socket = await opened();
    server.leave(leaving);
    expect(socket.sent).toEqual([{ id: 1, ...leaving }]);
    expect(rest.leaves).toHaveLength(1);
    socket.reply({ id: 1, run: null }); // its answer has nobody waiting: ignored
    socket.drop();
    server.leave(leaving);
    expect(rest.leaves).toHaveLength(2);
    await settle();
  });
});
