/**
 * "What Timeback records": the one text that tells a student what is recorded about them, when,
 * where it goes, who can see it and how to see their own record. The Help menu entry, the run
 * panel's link and the one-time notice all show this module's words, in JupyterLab and in
 * Notebook 7.
 *
 * The text lives here, in the extension, rather than on the server: it states what the product
 * does, not how one server is set up, so it is the same everywhere, and the student can read it
 * even when the server extension is down or refusing (that is when they may ask). The one fact
 * that depends on the server, where this server sends, is a separate line built from its status
 * (`destination`), and so is the link to the student's own page on the hub's relay (`ownPage`).
 * Pure (no JupyterLab import): unit-tested.
 */

export const RECORDS_TITLE = 'What Timeback records';
export const RECORDS_COMMAND = 'timeback:what-is-recorded';

/**
 * The notice's version: a student who saw an older one sees the notice again. Raise it when what
 * is recorded changes, not for rewording.
 */
export const RECORDS_VERSION = 1;

/** The one-time notice (JupyterLab's notifications cut messages at 140 characters). */
export const NOTICE_MESSAGE =
  'This notebook is a Timeback activity: your working time and exercise results are recorded.';

export interface RecordsSection {
  /** A stable key (tests and styling). */
  id: 'what' | 'never' | 'when' | 'where' | 'who' | 'own';
  heading: string;
  paragraphs: string[];
}

export const RECORDS: readonly RecordsSection[] = [
  {
    id: 'what',
    heading: 'What is recorded',
    paragraphs: [
      'Your time, in windows of 15 seconds: for each window, how many seconds you were active ' +
        '(the notebook in front and in use: running cells, typing, scrolling, clicking, or a ' +
        'cell you ran still running) and how many inactive (open, but not in use).',
      'Your run of the activity: which activity, which attempt, when it began and ended, the ' +
        'results of its exercises (how many were correct), its completion and the XP it earned.'
    ]
  },
  {
    id: 'never',
    heading: 'What is never recorded',
    paragraphs: [
      'Your code, your outputs, your files and your keystrokes. The page notes only when you ' +
        'last touched the notebook, to tell active from inactive; only counts of seconds and ' +
        'the results above are kept.'
    ]
  },
  {
    id: 'when',
    heading: 'When',
    paragraphs: [
      'Every 15 seconds while the notebook is open; after some minutes away from it (10 by ' +
        'default) the run pauses and nothing is recorded until you come back, nor once the ' +
        'notebook is closed. And once when you finish: a completion, from the notebook’s ' +
        'completion button or %timeback complete.'
    ]
  },
  {
    id: 'where',
    heading: 'Where it goes',
    paragraphs: [
      'First into this Jupyter server’s own store, so nothing is lost when the network is ' +
        'down; then to Timeback, your school’s learning platform, under the school’s app. ' +
        'On a JupyterHub it goes through the school’s Timeback relay, which sends it on.'
    ]
  },
  {
    id: 'who',
    heading: 'Who can see it',
    paragraphs: [
      'You, your teachers (through Timeback) and Timeback, where it is tied to your school ' +
        'account; and whoever runs this Jupyter server or the school’s JupyterHub.'
    ]
  },
  {
    id: 'own',
    heading: 'How to see your own record',
    paragraphs: [
      'In a terminal of this Jupyter: jupyter timeback report (time per activity, run and day, ' +
        'and your completions). In a notebook: %timeback status. On a JupyterHub, the school’s ' +
        'Timeback relay (in the hub’s Services menu) also shows what it received from you.'
    ]
  }
];

/** The part of GET /timeback/api/status that says where this server sends. */
export interface Destination {
  sink?: string;
  environment?: string;
  app?: { name?: string };
  /** On a hub: the student's own page on the relay, a path on the hub (server/status.py). */
  relay_page?: string | null;
}

export const OWN_PAGE_TEXT = 'Your own record on the school’s Timeback relay';

/**
 * The student's own page on the hub's relay, as a URL on `origin` (the hub's: the page and the
 * relay share it); null off a hub, or when the server names no page. Only a path on the same
 * origin is taken (`/services/...`): never a link elsewhere, whatever the status says.
 */
export function ownPage(status: Destination | null, origin: string): URL | null {
  const path = status?.relay_page;
  if (typeof path !== 'string' || !path.startsWith('/') || path.startsWith('//')) {
    return null;
  }
  const url = new URL(path, origin);
  return url.origin === new URL(origin).origin ? url : null;
}

/** Where this server sends, in a sentence; null when its status does not say. */
export function destination(status: Destination | null): string | null {
  if (status === null || typeof status.sink !== 'string') {
    return null;
  }
  const app = status.app?.name ? ` under the app “${status.app.name}”` : '';
  switch (status.sink) {
    case 'local':
      return 'This server keeps what it records in its own store and sends nothing to Timeback (it is set up for trying out).';
    case 'timeback': {
      const env = status.environment ? ` (${status.environment})` : '';
      return `This server sends to Timeback${env}${app}.`;
    }
    case 'relay':
      return `This server sends to the school’s Timeback relay on this JupyterHub${app}.`;
    default:
      return `This server sends through its “${status.sink}” sink${app}.`;
  }
}

/** Whether a student whose remembered notice version is `seen` should see the notice now. */
export function noticeDue(seen: unknown): boolean {
  return !(typeof seen === 'number' && Number.isFinite(seen) && seen >= RECORDS_VERSION);
}
