import { ServerConnection } from '@jupyterlab/services';
import { describe, expect, it } from 'vitest';

import { RestServer } from '../src/api';

/** A RestServer whose requests reach `answer` instead of a Jupyter server. */
function serverAnswering(answer: (request: Request) => Response): {
  server: RestServer;
  requests: Request[];
} {
  const requests: Request[] = [];
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://localhost:8888/',
    fetch: (input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init);
      requests.push(request);
      return Promise.resolve(answer(request));
    }
  });
  return { server: new RestServer(settings), requests };
}

const json = (body: unknown, status: number, statusText = ''): Response =>
  new Response(JSON.stringify(body), {
    status,
    statusText,
    headers: { 'Content-Type': 'application/json' }
  });

describe('errors in Jupyter’s shape', () => {
  it('reads the server’s reason from the message of a {message, reason} body', async () => {
    const { server, requests } = serverAnswering(() =>
      json({ message: 'lesson.ipynb declares no timeback activity: give one', reason: null }, 404)
    );
    expect(await server.startRun('lesson.ipynb')).toEqual({
      ok: false,
      status: 404,
      error: 'lesson.ipynb declares no timeback activity: give one'
    });
    expect(new URL(requests[0]?.url ?? '').pathname).toBe('/timeback/api/runs');
  });

  it('says the status when the body has no message (a proxy’s page, an empty body)', async () => {
    const { server } = serverAnswering(
      () => new Response('<html>bad gateway</html>', { status: 502, statusText: 'Bad Gateway' })
    );
    expect(await server.getRun('r1')).toEqual({
      ok: false,
      status: 502,
      error: 'timeback: 502 Bad Gateway'
    });
    const old = serverAnswering(() => json({ error: 'an old shape', status: 503 }, 503));
    expect(await old.server.getRun('r1')).toEqual({
      ok: false,
      status: 503,
      error: 'timeback: 503 error'
    });
  });

  it('answers the body of a success as is', async () => {
    const { server } = serverAnswering(() => json({ run: null }, 200));
    expect(await server.getRun('r1')).toEqual({ ok: true, value: { run: null } });
  });
});

describe('status', () => {
  it('asks for today since the local midnight and the run at the same instant', async () => {
    const { server, requests } = serverAnswering(() => json({ recording: true }, 200));
    await server.status(86_400_000, 'run 1');
    const url = new URL(requests[0]?.url ?? '');
    expect(url.pathname).toBe('/timeback/api/status');
    expect(url.searchParams.get('today_start')).toBe('86400');
    expect(url.searchParams.get('run')).toBe('run 1');
    await server.status(86_400_000);
    expect(new URL(requests[1]?.url ?? '').searchParams.has('run')).toBe(false);
  });
});
