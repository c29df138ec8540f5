import type { ISettingRegistry } from '@jupyterlab/settingregistry';
import { describe, expect, it, vi } from 'vitest';

import { NOTICE_SETTING, RecordsNotice } from '../src/notice';
import { NOTICE_MESSAGE, RECORDS_TITLE, RECORDS_VERSION } from '../src/records';

/** The extension's user settings, as the setting registry keeps them (on the server). */
class FakeSettings {
  constructor(
    public values: Record<string, unknown> = {},
    public failWrites = false
  ) {}

  get(key: string): { composite: unknown } {
    return { composite: this.values[key] ?? 0 };
  }

  async set(key: string, value: unknown): Promise<void> {
    if (this.failWrites) {
      throw new Error('read-only settings directory');
    }
    this.values[key] = value;
  }
}

function notice(settings: FakeSettings | null | Error) {
  const shown: { message: string; label: string; callback: () => void }[] = [];
  let opened = 0;
  const loaded =
    settings instanceof Error
      ? Promise.reject(settings)
      : Promise.resolve(settings as unknown as ISettingRegistry.ISettings | null);
  const n = new RecordsNotice({
    settings: loaded,
    view: { show: (message, action) => shown.push({ message, ...action }) },
    showRecords: () => {
      opened += 1;
    }
  });
  return { n, shown, opened: () => opened };
}

describe('the one-time notice', () => {
  it('shows once, links to the records, and remembers the version seen', async () => {
    const settings = new FakeSettings();
    const { n, shown, opened } = notice(settings);
    await n.opened();
    expect(shown.map(s => [s.message, s.label])).toEqual([[NOTICE_MESSAGE, RECORDS_TITLE]]);
    expect(settings.values[NOTICE_SETTING]).toBe(RECORDS_VERSION);
    shown[0]?.callback();
    expect(opened()).toBe(1);
    await n.opened();
    expect(shown).toHaveLength(1);
  });

  it('is not shown again to a student who saw it (another page, browser or interface)', async () => {
    const settings = new FakeSettings({ [NOTICE_SETTING]: RECORDS_VERSION });
    const { n, shown } = notice(settings);
    await n.opened();
    expect(shown).toHaveLength(0);
  });

  it('is shown again when what is recorded changed (an older version was seen)', async () => {
    const settings = new FakeSettings({ [NOTICE_SETTING]: RECORDS_VERSION - 1 });
    const { n, shown } = notice(settings);
    await n.opened();
    expect(shown).toHaveLength(1);
  });

  it('shows one notice for notebooks opened together', async () => {
    const { n, shown } = notice(new FakeSettings());
    await Promise.all([n.opened(), n.opened(), n.opened()]);
    expect(shown).toHaveLength(1);
  });

  it('still shows once per page without settings, or when they fail', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    for (const settings of [null, new Error('no schema'), new FakeSettings({}, true)]) {
      const { n, shown } = notice(settings);
      await n.opened();
      await n.opened();
      expect(shown).toHaveLength(1);
    }
    expect(warn.mock.calls.map(call => String(call[0]))).toEqual([
      'timeback: cannot read the extension settings',
      'timeback: cannot remember that the notice was shown'
    ]);
    warn.mockRestore();
  });
});
