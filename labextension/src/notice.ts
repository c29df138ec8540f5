/**
 * The one-time notice: the first time a student opens a notebook that declares an activity, a
 * notification says that it records, with a link to "What Timeback records".
 *
 * Remembered in the extension's user settings (`recordsNoticeSeen`, the version of the notice
 * seen). JupyterLab keeps user settings on the Jupyter server, in the student's own settings
 * directory, so it holds for the student across browsers, devices and both interfaces (Lab and
 * Notebook 7 share them), needs no route of ours, and a student can reset it in the settings
 * editor. If the settings cannot be read or written, the notice shows once per page.
 */

import type { ISettingRegistry } from '@jupyterlab/settingregistry';

import { NOTICE_MESSAGE, noticeDue, RECORDS_TITLE, RECORDS_VERSION } from './records';

export const NOTICE_SETTING = 'recordsNoticeSeen';

/** How the notice is shown (JupyterLab's notifications; fakes in the unit tests). */
export interface NoticeView {
  show(message: string, action: { label: string; callback: () => void }): void;
}

export class RecordsNotice {
  constructor(options: {
    /** The extension's settings, once loaded; null without a setting registry. */
    settings: Promise<ISettingRegistry.ISettings | null>;
    view: NoticeView;
    showRecords: () => void;
  }) {
    this._settings = options.settings.catch(err => {
      console.warn('timeback: cannot read the extension settings', err);
      return null;
    });
    this._view = options.view;
    this._showRecords = options.showRecords;
  }

  /** A notebook that declares an activity was opened: tell the student, once. */
  async opened(): Promise<void> {
    if (this._shown) {
      return;
    }
    const settings = await this._settings;
    if (this._shown || (settings !== null && !noticeDue(settings.get(NOTICE_SETTING).composite))) {
      return;
    }
    this._shown = true; // before the write: two notebooks opened together show one notice
    this._view.show(NOTICE_MESSAGE, { label: RECORDS_TITLE, callback: this._showRecords });
    if (settings !== null) {
      try {
        await settings.set(NOTICE_SETTING, RECORDS_VERSION);
      } catch (err) {
        console.warn('timeback: cannot remember that the notice was shown', err);
      }
    }
  }

  private readonly _settings: Promise<ISettingRegistry.ISettings | null>;
  private readonly _view: NoticeView;
  private readonly _showRecords: () => void;
  private _shown = false;
}
