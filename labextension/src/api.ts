/**
 * The server extension's REST API, through ServerConnection (it adds the token or XSRF header).
 * No notebook content is ever sent: only the path, the tab id and presence flags.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type {
  Outcome,
  PresenceAnswer,
  PresenceReport,
  RunInfo,
  Server,
  StartAnswer
} from './presence';
import { localMidnight, type RunFigures } from './runview';

/**
 * The parts of GET /timeback/api/status the status bar and the panel show. The run (asked for
 * by id) and today's time are taken at one instant on the server (`as_of`), from the same
 * parts, so the panel never shows a Today below the time of a run begun today.
 */
export interface ServerStatus {
  recording: boolean;
  problem: string | null;
  sink: string;
  /** The server's clock (POSIX seconds) when it made this answer. */
  as_of?: number;
  outbox?: { pending?: number; inflight?: number; sent?: number; dead?: number; error?: string };
  /** The store: why it fails (error) or where it should not be (warning: a network file system). */
  store?: { error?: string | null; warning?: string | null };
  delivery?: {
    state: string;
    last_error: string | null;
    pending: number | null;
    dead_letters: number | null;
    /** Events wait longer than the server's threshold, or delivery is retrying. */
    slow?: boolean;
    oldest_pending_age?: number | null;
  };
  /** Seconds of activity today, when the server reports it. */
  today?: { active_seconds: number; inactive_seconds?: number; error?: string };
  /** The run asked for (`run=`), as GET runs/<id> shows it, with its unsent seconds. */
  run?: (RunInfo & RunFigures) | { error: string };
}

export class RestServer implements Server {
  constructor(settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {
    this._settings = settings;
  }

  startRun(path: string): Promise<Outcome<StartAnswer>> {
    return this._call('POST', ['runs'], { path, client: 'jupyterlab' });
  }

  presence(report: PresenceReport): Promise<Outcome<PresenceAnswer>> {
    return this._call('POST', ['presence'], report);
  }

  getRun(id: string): Promise<Outcome<{ run: RunInfo }>> {
    return this._call('GET', ['runs', encodeURIComponent(id)]);
  }

  /**
   * Server health, and the student's time since `todayStart` (ms, their local midnight) and
   * the run `runId` at the same instant.
   */
  status(
    todayStart: number = localMidnight(),
    runId: string | null = null
  ): Promise<Outcome<ServerStatus>> {
    let query = `?today_start=${Math.floor(todayStart / 1000)}`;
    if (runId !== null) {
      query += `&run=${encodeURIComponent(runId)}`;
    }
    return this._call('GET', ['status'], undefined, query);
  }

  leave(report: PresenceReport): void {
    // keepalive lets the request outlive the page; makeRequest builds and sends it before
    // returning, with the same auth headers as every other call.
    ServerConnection.makeRequest(
      this._url(['presence']),
      { method: 'POST', body: JSON.stringify(report), keepalive: true },
      this._settings
    ).catch(() => undefined);
  }

  private _url(parts: string[]): string {
    return URLExt.join(this._settings.baseUrl, 'timeback', 'api', ...parts);
  }

  private async _call<T>(
    method: string,
    parts: string[],
    body?: unknown,
    query = ''
  ): Promise<Outcome<T>> {
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(
        this._url(parts) + query,
        { method, body: body === undefined ? undefined : JSON.stringify(body) },
        this._settings
      );
    } catch {
      return { ok: false, status: null, error: 'the Jupyter server cannot be reached' };
    }
    let data: unknown = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      return { ok: false, status: response.status, error: errorOf(data, response) };
    }
    return { ok: true, value: data as T };
  }

  private readonly _settings: ServerConnection.ISettings;
}

/** The server's reason, from a body in Jupyter's error shape `{message, reason}`. */
function errorOf(data: unknown, response: Response): string {
  if (data !== null && typeof data === 'object') {
    const message = (data as { message?: unknown }).message;
    if (typeof message === 'string' && message) {
      return message;
    }
  }
  return `timeback: ${response.status} ${response.statusText || 'error'}`.trim();
}
