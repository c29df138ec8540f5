/**
 * The "What Timeback records" command: a dialog with `records.ts`'s text and where this server
 * sends. The schema's `jupyter.lab.menus` puts it in the Help menu of JupyterLab and Notebook 7;
 * the run panel and the one-time notice call it too. Plain DOM with textContent only.
 */

import type { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import type { ServerStatus } from './api';
import type { Outcome } from './presence';
import {
  destination,
  type Destination,
  OWN_PAGE_TEXT,
  ownPage,
  RECORDS,
  RECORDS_COMMAND,
  RECORDS_TITLE
} from './records';

export function addRecordsCommand(
  app: JupyterFrontEnd,
  fetchStatus: () => Promise<Outcome<ServerStatus>>
): void {
  app.commands.addCommand(RECORDS_COMMAND, {
    label: RECORDS_TITLE,
    caption: 'What Timeback records about you, when, where it goes and who can see it',
    execute: () => showRecords(fetchStatus)
  });
}

export async function showRecords(
  fetchStatus: () => Promise<Outcome<ServerStatus>>
): Promise<void> {
  const body = new Widget();
  body.addClass('tb-Records');
  body.node.append(...recordsNodes());
  // The dialog opens at once; where this server sends is added when its status answers.
  void fetchStatus().then(outcome => {
    const status = outcome.ok ? (outcome.value as Destination) : null;
    const line = destination(status);
    if (line !== null && !body.isDisposed) {
      const p = document.createElement('p');
      p.className = 'tb-Records-destination';
      p.dataset.timeback = 'destination';
      p.textContent = line;
      body.node.querySelector('[data-timeback="where"]')?.append(p);
    }
    const page = ownPage(status, window.location.origin);
    if (page !== null && !body.isDisposed) {
      const p = document.createElement('p');
      const a = document.createElement('a');
      a.href = page.href;
      a.target = '_blank';
      a.rel = 'noopener';
      a.dataset.timeback = 'own-page';
      a.textContent = OWN_PAGE_TEXT;
      p.append(a);
      body.node.querySelector('[data-timeback="own"]')?.append(p);
    }
  });
  await showDialog({
    title: RECORDS_TITLE,
    body,
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
}

function recordsNodes(): HTMLElement[] {
  return RECORDS.map(section => {
    const div = document.createElement('section');
    div.dataset.timeback = section.id;
    const h = document.createElement('h3');
    h.textContent = section.heading;
    div.append(h);
    for (const text of section.paragraphs) {
      const p = document.createElement('p');
      p.textContent = text;
      div.append(p);
    }
    return div;
  });
}
