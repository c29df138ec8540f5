import { describe, expect, it } from 'vitest';

import {
  destination,
  NOTICE_MESSAGE,
  noticeDue,
  ownPage,
  RECORDS,
  RECORDS_VERSION
} from '../src/records';

const text = (id: string): string =>
  (RECORDS.find(section => section.id === id)?.paragraphs ?? []).join(' ');

describe('what Timeback records', () => {
  it('says what is recorded, when, where it goes, who sees it and how to see it', () => {
    expect(RECORDS.map(section => section.id)).toEqual([
      'what',
      'never',
      'when',
      'where',
      'who',
      'own'
    ]);
    expect(text('what')).toMatch(/windows of 15 seconds/);
    expect(text('what')).toMatch(/active/);
    expect(text('what')).toMatch(/inactive/);
    expect(text('what')).toMatch(/exercises/);
    expect(text('never')).toMatch(/code, your outputs, your files and your keystrokes/);
    expect(text('when')).toMatch(/Every 15 seconds while the notebook is open/);
    expect(text('when')).toMatch(/pauses/);
    expect(text('when')).toMatch(/completion/);
    expect(text('where')).toMatch(/this Jupyter server’s own store/);
    expect(text('where')).toMatch(/Timeback/);
    expect(text('where')).toMatch(/JupyterHub .* relay/);
    expect(text('who')).toMatch(/You, your teachers .* and Timeback/);
    expect(text('own')).toMatch(/jupyter timeback report/);
    expect(text('own')).toMatch(/relay/);
  });

  it('fits the notice in a notification (JupyterLab cuts at 140 characters)', () => {
    expect(NOTICE_MESSAGE.length).toBeLessThanOrEqual(140);
  });

  it("names where this server sends, from its status's sink", () => {
    expect(destination(null)).toBeNull();
    expect(destination({})).toBeNull();
    expect(destination({ sink: 'local' })).toMatch(/sends nothing to Timeback/);
    expect(
      destination({ sink: 'timeback', environment: 'staging', app: { name: 'Notebook Academy' } })
    ).toBe('This server sends to Timeback (staging) under the app “Notebook Academy”.');
    expect(destination({ sink: 'relay' })).toMatch(/relay on this JupyterHub/);
    expect(destination({ sink: 'other' })).toMatch(/“other” sink/);
  });

  it("links the student's own relay page on the hub's origin only", () => {
    const hub = 'https://hub.example';
    expect(ownPage({ relay_page: '/services/timeback-relay/students/ada' }, hub)?.href).toBe(
      'https://hub.example/services/timeback-relay/students/ada'
    );
    expect(ownPage({ relay_page: '/jh/services/tb/students/a%20b' }, hub)?.href).toBe(
      'https://hub.example/jh/services/tb/students/a%20b'
    );
    expect(ownPage(null, hub)).toBeNull();
    expect(ownPage({ sink: 'relay' }, hub)).toBeNull();
    expect(ownPage({ relay_page: null }, hub)).toBeNull();
    expect(ownPage({ relay_page: 'https://evil.example/x' }, hub)).toBeNull();
    expect(ownPage({ relay_page: '//evil.example/x' }, hub)).toBeNull();
    expect(ownPage({ relay_page: '/\\evil.example/x' }, hub)).toBeNull();
  });

  it('is due until the current version was seen', () => {
    expect(noticeDue(undefined)).toBe(true);
    expect(noticeDue(0)).toBe(true);
    expect(noticeDue('1')).toBe(true);
    expect(noticeDue(Number.NaN)).toBe(true);
    expect(noticeDue(RECORDS_VERSION - 1)).toBe(true);
    expect(noticeDue(RECORDS_VERSION)).toBe(false);
    expect(noticeDue(RECORDS_VERSION + 1)).toBe(false);
  });
});
