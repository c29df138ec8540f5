/**
 * timeback-jupyter in JupyterLab 4 and Notebook 7: presence for every open notebook, the run
 * written into the notebook's metadata, a status bar item (or, without a status bar, the same
 * item in the notebook's toolbar), "What Timeback records" in the Help menu and a one-time
 * notice.
 *
 * Requires only INotebookTracker so it also loads in Notebook 7 (no ILabShell there, and no
 * status bar: the notebook toolbar shows the run).
 */

import {
  ILabShell,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { IToolbarWidgetRegistry, Notification } from '@jupyterlab/apputils';
import { INotebookTracker, type NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { type PartialJSONObject, UUID } from '@lumino/coreutils';
import { Signal } from '@lumino/signaling';

import { RestServer } from './api';
import { CURRENT_SCHEMA_VERSION, isCurrentSection, mergeSection } from './metadata';
import {
  DEFAULT_INTERVAL,
  PresenceLoop,
  type Clock,
  type Snapshot,
  type TimebackMetadata
} from './presence';
import { addRecordsCommand } from './help';
import { NotebookToolbarItems, TOOLBAR_ITEM } from './notebook-toolbar';
import { RecordsNotice, type NoticeView } from './notice';
import { RECORDS_COMMAND } from './records';
import { declaresActivity as declaresSection } from './runview';
import { presenceSocketUrl, SocketServer } from './socket';
import { StatusItem } from './status';

const PLUGIN_ID = 'timeback-jupyter:plugin';
const INPUT_EVENTS = ['keydown', 'pointerdown', 'wheel', 'touchstart'] as const;

const clock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => window.setTimeout(fn, ms),
  clearTimeout: handle => window.clearTimeout(handle as number)
};

function declaresActivity(panel: NotebookPanel): boolean {
  // a section that is no object asks for a run too: starting it names the problem
  return declaresSection(panel.model?.getMetadata('timeback'));
}

/**
 * Merge the server's `metadata.timeback` into the notebook model's when that changes it, and
 * save, so a later open (on any server, of this file or a copy) resumes the run or starts the
 * next attempt. This happens when a run starts, resumes or completes; saving then is what
 * autosave would do within minutes anyway, and the run id must not wait for it (a crash or a
 * closed tab would lose it, and the next open would start a new run). Keys others put in the
 * section stay; a section of a newer timeback-jupyter is left alone.
 */
async function writeMetadata(panel: NotebookPanel, metadata: TimebackMetadata): Promise<void> {
  const model = panel.model;
  if (model === null || panel.isDisposed) {
    return;
  }
  if (!isCurrentSection(metadata)) {
    console.warn(
      `timeback: the server sent metadata.timeback schema_version ${metadata.schema_version}; ` +
        `this page writes ${CURRENT_SCHEMA_VERSION}: reload the page`
    );
    return;
  }
  const outcome = mergeSection(model.getMetadata('timeback'), metadata);
  if (outcome.kind === 'newer') {
    console.warn(`timeback: ${panel.context.path}: ${outcome.message}`);
    return;
  }
  if (outcome.kind === 'same') {
    return;
  }
  model.sharedModel.setMetadata('timeback', outcome.section as PartialJSONObject);
  if (panel.context.isReady && !panel.context.model.readOnly) {
    try {
      await panel.context.save();
    } catch (err) {
      console.warn('timeback: could not save the run into the notebook', err);
    }
  }
}

const noticeView: NoticeView = {
  show: (message, action) =>
    void Notification.info(message, {
      autoClose: false,
      actions: [{ label: action.label, callback: action.callback, displayType: 'link' }]
    })
};

function activate(
  app: JupyterFrontEnd,
  notebooks: INotebookTracker,
  labShell: ILabShell | null,
  statusBar: IStatusBar | null,
  settingRegistry: ISettingRegistry | null,
  toolbarRegistry: IToolbarWidgetRegistry | null
): void {
  const settings = ServerConnection.makeSettings();
  const rest = new RestServer(settings);
  const loops = new Map<NotebookPanel, PresenceLoop>();
  // One socket for the whole tab: every notebook's presence goes over it, REST when it is down.
  const server = new SocketServer({
    url: presenceSocketUrl(settings),
    rest,
    WebSocket: settings.WebSocket,
    clock,
    onRefresh: path =>
      loops.forEach(loop => {
        if (loop.path === path) {
          loop.refresh();
        }
      })
  });
  const source = `tab-${UUID.uuid4()}`;
  const activeChanged = new Signal<object, void>({});

  const isCurrent = (panel: NotebookPanel): boolean =>
    (labShell ? labShell.currentWidget : notebooks.currentWidget) === panel;

  const fetchStatus = (runId: string | null = null) => rest.status(undefined, runId);
  addRecordsCommand(app, () => fetchStatus());
  const showRecords = (): void => void app.commands.execute(RECORDS_COMMAND);
  const notice = new RecordsNotice({
    settings: settingRegistry ? settingRegistry.load(PLUGIN_ID) : Promise.resolve(null),
    view: noticeView,
    showRecords
  });
  const toolbarItems = new NotebookToolbarItems({
    enabled: statusBar === null,
    makeItem: openPanel =>
      new StatusItem({
        fetchStatus,
        maxExtrapolationMs: 3 * DEFAULT_INTERVAL,
        openPanel,
        showRecords
      }),
    snapshotOf: panel => loops.get(panel)?.snapshot ?? null
  });
  toolbarRegistry?.addFactory<NotebookPanel>('Notebook', TOOLBAR_ITEM, panel =>
    toolbarItems.create(panel)
  );

  let item: StatusItem | null = null;
  if (statusBar !== null) {
    item = new StatusItem({
      fetchStatus,
      maxExtrapolationMs: 3 * DEFAULT_INTERVAL,
      showRecords
    });
    const shown = item;
    statusBar.registerStatusItem(PLUGIN_ID, {
      item: shown,
      align: 'left',
      rank: 5,
      isActive: () => shown.relevant && currentPanel() !== null,
      activeStateChanged: activeChanged
    });
  }

  function currentPanel(): NotebookPanel | null {
    const widget = labShell ? labShell.currentWidget : notebooks.currentWidget;
    return widget !== null && loops.has(widget as NotebookPanel) ? (widget as NotebookPanel) : null;
  }

  function showCurrent(): void {
    if (item === null) {
      return;
    }
    const panel = currentPanel();
    item.snapshot = panel ? (loops.get(panel)?.snapshot ?? null) : null;
    activeChanged.emit(undefined);
  }

  function onChange(panel: NotebookPanel, snapshot: Snapshot): void {
    toolbarItems.show(panel, snapshot);
    if (item !== null && currentPanel() === panel) {
      item.snapshot = snapshot;
      activeChanged.emit(undefined);
    }
  }

  async function watch(panel: NotebookPanel): Promise<void> {
    await panel.context.ready;
    await panel.sessionContext.ready;
    if (panel.isDisposed || loops.has(panel)) {
      return;
    }
    const loop = new PresenceLoop({
      path: panel.context.path,
      source,
      server,
      clock,
      page: {
        visible: () => document.visibilityState === 'visible' && panel.isVisible,
        focused: () =>
          document.visibilityState === 'visible' && document.hasFocus() && isCurrent(panel)
      },
      onChange: snapshot => onChange(panel, snapshot),
      onMetadata: metadata => void writeMetadata(panel, metadata)
    });
    loops.set(panel, loop);
    const onInput = (): void => loop.input();
    for (const type of INPUT_EVENTS) {
      panel.node.addEventListener(type, onInput, { passive: true, capture: true });
    }
    // scroll does not bubble: listen in the capture phase to see the notebook's own scrolling
    panel.node.addEventListener('scroll', onInput, { passive: true, capture: true });
    panel.context.pathChanged.connect((_, path) => {
      loop.path = path;
    });
    panel.disposed.connect(() => {
      loop.dispose();
      loops.delete(panel);
      showCurrent();
    });
    const declared = declaresActivity(panel);
    loop.begin(declared);
    toolbarItems.show(panel, loop.snapshot);
    showCurrent();
    if (declared) {
      void notice.opened();
    }
  }

  const everyLoop = (fn: (loop: PresenceLoop) => void) => () => loops.forEach(loop => fn(loop));
  document.addEventListener(
    'visibilitychange',
    everyLoop(loop => loop.changed())
  );
  window.addEventListener(
    'focus',
    everyLoop(loop => loop.changed())
  );
  window.addEventListener(
    'blur',
    everyLoop(loop => loop.changed())
  );
  window.addEventListener(
    'pagehide',
    everyLoop(loop => loop.leave())
  );
  window.addEventListener('pageshow', event => {
    if (event.persisted) {
      loops.forEach(loop => loop.back());
    }
  });
  const currentChanged = (): void => {
    loops.forEach(loop => loop.changed());
    showCurrent();
  };
  if (labShell) {
    labShell.currentChanged.connect(currentChanged);
  } else {
    notebooks.currentChanged.connect(currentChanged);
  }

  notebooks.widgetAdded.connect((_, panel) => void watch(panel));
  notebooks.forEach(panel => void watch(panel));
  void app.restored.then(showCurrent);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Timeback: presence, run metadata, the run in the status bar or notebook toolbar, ' +
    '"What Timeback records" and its notice.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILabShell, IStatusBar, ISettingRegistry, IToolbarWidgetRegistry],
  activate
};

export default plugin;
