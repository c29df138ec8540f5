/**
 * The run's state and time in the notebook's own toolbar, for Notebook 7, which has no status
 * bar. It is the status bar's item (`StatusItem`: same text, same panel), one per notebook,
 * placed through JupyterLab's toolbar registry as Notebook 7's own toolbar items are (the
 * "Open in..." switcher): the schema's `jupyter.lab.toolbars` names it, so it can be moved or
 * removed in the notebook panel's toolbar settings.
 *
 * Where a status bar exists (JupyterLab) the status bar shows the current notebook's run, so the
 * toolbar slot stays empty: one clock per window, not one per open notebook as well.
 */

import type { NotebookPanel } from '@jupyterlab/notebook';
import type { Message } from '@lumino/messaging';
import { PanelLayout, Widget } from '@lumino/widgets';

import type { Snapshot } from './presence';
import { StatusItem, type PanelOpener } from './status';

export const TOOLBAR_ITEM = 'timeback';
const MARGIN = 8;

export class NotebookToolbarItems {
  constructor(options: {
    /** false where a status bar shows the run already: the toolbar slot stays empty. */
    enabled: boolean;
    makeItem: (openPanel: PanelOpener) => StatusItem;
    snapshotOf: (panel: NotebookPanel) => Snapshot | null;
  }) {
    this._enabled = options.enabled;
    this._makeItem = options.makeItem;
    this._snapshotOf = options.snapshotOf;
  }

  /** The toolbar registry's factory: called for each notebook panel (and on toolbar changes). */
  create(panel: NotebookPanel): Widget {
    if (!this._enabled) {
      const empty = new Widget();
      empty.hide();
      return empty;
    }
    const item = this._makeItem(openBelow);
    item.addClass('tb-ToolbarItem');
    this._items.set(panel, item);
    item.disposed.connect(() => {
      if (this._items.get(panel) === item) {
        this._items.delete(panel);
      }
    });
    this.show(panel, this._snapshotOf(panel));
    return item;
  }

  /** The notebook's presence loop knows something new. */
  show(panel: NotebookPanel, snapshot: Snapshot | null): void {
    const item = this._items.get(panel);
    if (item === undefined || item.isDisposed) {
      return;
    }
    item.snapshot = snapshot;
    item.setHidden(!item.relevant);
  }

  private readonly _enabled: boolean;
  private readonly _makeItem: (openPanel: PanelOpener) => StatusItem;
  private readonly _snapshotOf: (panel: NotebookPanel) => Snapshot | null;
  private readonly _items = new Map<NotebookPanel, StatusItem>();
}

/** The panel below its item: a toolbar sits at the top of the page, a status bar at the bottom. */
const openBelow: PanelOpener = (panel, anchor) => {
  const dropDown = new DropDown(panel, anchor);
  Widget.attach(dropDown, document.body);
  dropDown.update();
  return dropDown;
};

/**
 * The status bar's popup turned downwards. It closes on a click elsewhere or on Escape, heard
 * on the document: the focus stays where the student had it (the item, or a cell).
 */
class DropDown extends Widget {
  constructor(body: Widget, anchor: Widget) {
    super();
    this.addClass('jp-ThemedContainer');
    this._body = body;
    this._anchor = anchor;
    body.addClass('tb-DropDown');
    const layout = (this.layout = new PanelLayout());
    layout.addWidget(body);
    anchor.addClass('jp-mod-clicked');
  }

  handleEvent(event: Event): void {
    if (event.type === 'click') {
      const target = event.target as Node | null;
      if (target && !this._body.node.contains(target) && !this._anchor.node.contains(target)) {
        this.dispose();
      }
    } else if (event.type === 'keydown' && (event as KeyboardEvent).key === 'Escape') {
      event.stopPropagation();
      event.preventDefault();
      this.dispose();
    } else if (event.type === 'resize') {
      this.update();
    }
  }

  override dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._anchor.removeClass('jp-mod-clicked');
    super.dispose();
  }

  protected override onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    document.addEventListener('click', this, false);
    document.addEventListener('keydown', this, false);
    window.addEventListener('resize', this, false);
  }

  protected override onBeforeDetach(msg: Message): void {
    document.removeEventListener('click', this, false);
    document.removeEventListener('keydown', this, false);
    window.removeEventListener('resize', this, false);
    super.onBeforeDetach(msg);
  }

  /**
   * Under the anchor, inside the window. Placed by hand: HoverBox measures against
   * document.body, which Notebook 7 lays out shorter than the window.
   */
  protected override onUpdateRequest(msg: Message): void {
    const anchor = this._anchor.node.getBoundingClientRect();
    const style = this._body.node.style;
    const top = Math.ceil(anchor.bottom);
    style.top = `${top}px`;
    style.maxHeight = `${Math.max(window.innerHeight - top - MARGIN, 0)}px`;
    style.left = '0px';
    const width = this._body.node.getBoundingClientRect().width;
    const left = Math.min(anchor.left, window.innerWidth - width - MARGIN);
    style.left = `${Math.max(Math.floor(left), 0)}px`;
    super.onUpdateRequest(msg);
  }

  private readonly _body: Widget;
  private readonly _anchor: Widget;
}
