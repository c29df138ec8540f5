/**
 * Presence over one WebSocket per browser tab, shared by every notebook's PresenceLoop.
 *
 * Why: every REST call pays Jupyter's whole per-request cost (auth, tornado, logging, metrics);
 * at hundreds of open notebooks reporting every 5 s that alone is more CPU than the server can
 * spare. A message on an open, authenticated socket costs a fraction of it, and wherever Jupyter
 * works its kernels' WebSockets do, so this one does too.
 *
 * Rules:
 * - a report goes over the socket while it is open, its answer matched by id; no answer within
 *   `replyTimeout` is a failed report (the loop retries as after any failure), and the socket,
 *   evidently stuck, is closed;
 * - while the socket is not open (connecting, closed, refused) a report goes over REST, and the
 *   socket is (re)opened on demand, no sooner than `minBackoff` after a failure, then twice as
 *   long each time up to `maxBackoff` (no timer: a tab with no notebook open stays quiet);
 * - a report in flight when the socket closes is sent again over REST;
 * - leaving goes over the socket when open (send is synchronous, fine on pagehide), else as the
 *   REST fallback's keepalive request; the server also leaves for a socket that closes;
 * - the server may say `{"refresh": path}` unasked (the notebook's run started, ended or
 *   completed from the kernel, say): `onRefresh` gets the path, so a notebook that is not in
 *   front, and so not reporting, asks at once.
 *
 * Pure like presence.ts: the socket class and the clock are injected, so the unit tests drive
 * it with a fake socket and fake timers.
 */

import {
  backoff,
  type Clock,
  type Outcome,
  type PresenceAnswer,
  type PresenceReport,
  type RunInfo,
  type Server,
  type StartAnswer
} from './presence';

/** What this module uses of a browser WebSocket. */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type SocketClass = new (url: string) => SocketLike;

export interface SocketServerOptions {
  /** ws(s):// URL of /timeback/api/presence/socket, with the token when the page needs it. */
  url: string;
  /** Starts, run lookups, and presence whenever the socket is not open. */
  rest: Server;
  WebSocket: SocketClass;
  clock: Clock;
  replyTimeout?: number;
  minBackoff?: number;
  maxBackoff?: number;
  /** The server asks the tab to report this notebook now. */
  onRefresh?: (path: string) => void;
}

export const DEFAULT_REPLY_TIMEOUT = 10000;
export const DEFAULT_MIN_BACKOFF = 5000;
export const DEFAULT_SOCKET_MAX_BACKOFF = 60000;

// WebSocket.OPEN, spelled out: the constant is not there outside a browser.
const OPEN = 1;

/** The parts of ServerConnection.ISettings that make the socket's URL. */
export interface SocketSettings {
  wsUrl: string;
  token: string;
  appendToken: boolean;
}

/**
 * The presence socket's URL. The token goes into the query only when the page needs it (the
 * socket's host differs from the page's, or PageConfig says so), as @jupyterlab/services does
 * for kernel sockets; otherwise the login cookie authenticates the socket like any request.
 */
export function presenceSocketUrl(settings: SocketSettings): string {
  const base = settings.wsUrl.endsWith('/') ? settings.wsUrl : `${settings.wsUrl}/`;
  const url = `${base}timeback/api/presence/socket`;
  return settings.appendToken && settings.token !== ''
    ? `${url}?token=${encodeURIComponent(settings.token)}`
    : url;
}

interface Pending {
  report: PresenceReport;
  timer: unknown;
  resolve: (outcome: Outcome<PresenceAnswer>) => void;
}

export class SocketServer implements Server {
  constructor(options: SocketServerOptions) {
    this._url = options.url;
    this._rest = options.rest;
    this._Socket = options.WebSocket;
    this._clock = options.clock;
    this._replyTimeout = options.replyTimeout ?? DEFAULT_REPLY_TIMEOUT;
    this._minBackoff = options.minBackoff ?? DEFAULT_MIN_BACKOFF;
    this._maxBackoff = options.maxBackoff ?? DEFAULT_SOCKET_MAX_BACKOFF;
    this._onRefresh = options.onRefresh;
  }

  /** Whether reports go over the socket now. */
  get open(): boolean {
    return this._socket !== null && this._socket.readyState === OPEN;
  }

  startRun(path: string): Promise<Outcome<StartAnswer>> {
    return this._rest.startRun(path);
  }

  getRun(id: string): Promise<Outcome<{ run: RunInfo }>> {
    return this._rest.getRun(id);
  }

  presence(report: PresenceReport): Promise<Outcome<PresenceAnswer>> {
    const socket = this._socket;
    if (socket === null || socket.readyState !== OPEN) {
      this._connect();
      return this._rest.presence(report);
    }
    const id = this._nextId++;
    return new Promise(resolve => {
      const timer = this._clock.setTimeout(() => this._timedOut(id), this._replyTimeout);
      this._pending.set(id, { report, timer, resolve });
      socket.send(JSON.stringify({ id, ...report }));
    });
  }

  leave(report: PresenceReport): void {
    const socket = this._socket;
    if (socket !== null && socket.readyState === OPEN) {
      // nobody waits for the answer: the page may be gone by then
      socket.send(JSON.stringify({ id: this._nextId++, ...report }));
      return;
    }
    this._rest.leave(report);
  }

  // ---- internals ------------------------------------------------------------------------

  private _connect(): void {
    if (this._socket !== null || this._clock.now() < this._retryAt) {
      return;
    }
    let socket: SocketLike;
    try {
      socket = new this._Socket(this._url);
    } catch {
      this._failed(); // a malformed URL or a page that forbids sockets: REST it is
      return;
    }
    this._socket = socket;
    socket.onmessage = event => this._answer(event.data);
    socket.onclose = () => this._closed(socket);
    // an error is always followed by close, which does the work
    socket.onerror = () => undefined;
  }

  private _answer(data: unknown): void {
    let message: unknown;
    try {
      message = typeof data === 'string' ? JSON.parse(data) : null;
    } catch {
      return;
    }
    if (message === null || typeof message !== 'object') {
      return;
    }
    const answer = message as {
      id?: unknown;
      run?: unknown;
      message?: unknown;
      status?: unknown;
      refresh?: unknown;
    };
    if (answer.id === undefined && typeof answer.refresh === 'string') {
      this._onRefresh?.(answer.refresh);
      return;
    }
    const pending = typeof answer.id === 'number' ? this._pending.get(answer.id) : undefined;
    if (pending === undefined) {
      return; // a leave's answer, one that came too late, or an error about no message of ours
    }
    this._pending.delete(answer.id as number);
    this._clock.clearTimeout(pending.timer);
    this._failures = 0; // the socket works: the next failure waits the shortest time again
    if (answer.message !== undefined) {
      // an error: a REST error body's fields ({message, reason}) with its status
      pending.resolve({
        ok: false,
        status: typeof answer.status === 'number' ? answer.status : null,
        error: typeof answer.message === 'string' ? answer.message : 'timeback: error'
      });
      return;
    }
    pending.resolve({ ok: true, value: { run: (answer.run ?? null) as PresenceAnswer['run'] } });
  }

  private _timedOut(id: number): void {
    const pending = this._pending.get(id);
    if (pending === undefined) {
      return;
    }
    this._pending.delete(id);
    pending.resolve({
      ok: false,
      status: null,
      error: `no answer from the Jupyter server within ${Math.round(this._replyTimeout / 1000)} s`
    });
    // a socket that does not answer is no better than none: use REST until a new one opens
    this._socket?.close();
  }

  private _closed(socket: SocketLike): void {
    if (this._socket !== socket) {
      return;
    }
    this._socket = null;
    this._failed();
    const inFlight = [...this._pending.values()];
    this._pending.clear();
    for (const pending of inFlight) {
      this._clock.clearTimeout(pending.timer);
      void this._rest.presence(pending.report).then(pending.resolve);
    }
  }

  private _failed(): void {
    this._failures += 1;
    const wait = backoff(this._failures, this._minBackoff, this._maxBackoff);
    this._retryAt = this._clock.now() + wait;
  }

  private readonly _url: string;
  private readonly _rest: Server;
  private readonly _Socket: SocketClass;
  private readonly _clock: Clock;
  private readonly _replyTimeout: number;
  private readonly _minBackoff: number;
  private readonly _maxBackoff: number;
  private readonly _onRefresh?: (path: string) => void;
  private _socket: SocketLike | null = null;
  private _pending = new Map<number, Pending>();
  private _nextId = 1;
  private _failures = 0;
  private _retryAt = 0;
}
