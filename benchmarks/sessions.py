"""The accuracy benchmark's sessions: what a student really does, to the millisecond (tabs,
their visibility and focus, inputs, cells, kernel deaths), scripted, and the exact active time
the product's definition gives them (the ground truth), computed from that perfect knowledge."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

IDLE_AFTER = 120.0
RUNNING_CELL_LIMIT = 300.0


@dataclass
class Tab:
    id: str
    notebook: str
    opened: float
    states: list[tuple[float, bool, bool]] = field(default_factory=list)  # (t, visible, focused)
    inputs: list[float] = field(default_factory=list)
    closed: float | None = None
    vanished: bool = False  # gone without a leave report (lid closed, browser crashed)

    def state(self, t: float) -> tuple[bool, bool]:
        if t < self.opened or (self.closed is not None and t >= self.closed):
            return False, False
        visible = focused = False
        for at, v, f in self.states:
            if at > t:
                break
            visible, focused = v, f
        return visible, focused


@dataclass(frozen=True)
class Cell:
    notebook: str
    start: float
    end: float
    dies: bool = False  # its kernel dies at ``end`` (killed, out of memory): no idle is sent


@dataclass
class Session:
    name: str
    tabs: dict[str, Tab] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)
    end: float = 0.0
    in_target: bool = True  # part of the target, or a known bound shown apart


class Script:
    """Builds a Session by walking a cursor through time."""

    def __init__(self, name: str, seed: int, *, in_target: bool = True) -> None:
        self.session = Session(name, in_target=in_target)
        self.rng = random.Random(seed)
        self.t = 0.0

    def _set(self, tab: Tab, visible: bool, focused: bool) -> None:
        tab.states.append((self.t, visible, focused))

    def _unfocus_others(self, keep: str) -> None:
        for tab in self.session.tabs.values():
            if tab.id != keep and tab.closed is None:
                visible, focused = tab.state(self.t)
                if focused:
                    self._set(tab, visible, False)

    def open(self, tab_id: str, notebook: str) -> Script:
        self._unfocus_others(tab_id)
        tab = Tab(tab_id, notebook, self.t)
        self.session.tabs[tab_id] = tab
        self._set(tab, True, True)
        return self

    def focus(self, tab_id: str) -> Script:
        """Click into another tab or window: the others stay visible, lose focus."""
        self._unfocus_others(tab_id)
        self._set(self.session.tabs[tab_id], True, True)
        return self

    def hide(self, tab_id: str) -> Script:
        self._set(self.session.tabs[tab_id], False, False)
        return self

    def show(self, tab_id: str) -> Script:
        return self.focus(tab_id)

    def close(self, tab_id: str) -> Script:
        self.session.tabs[tab_id].closed = self.t
        return self

    def vanish(self, tab_id: str) -> Script:
        """The browser goes away without a word: no leave report reaches the server."""
        self.session.tabs[tab_id].vanished = True
        return self.close(tab_id)

    def _focused(self) -> Tab:
        for tab in self.session.tabs.values():
            if tab.state(self.t) == (True, True):
                return tab
        raise ValueError(f"{self.session.name}: nobody is focused at {self.t}")

    def work(
        self,
        seconds: float,
        *,
        input_every: tuple[float, float] = (1.0, 15.0),
        cell_every: tuple[float, float] = (15.0, 90.0),
        cell_length: tuple[float, float] = (0.1, 6.0),
    ) -> Script:
        """Type and run cells in the focused tab's notebook for ``seconds``."""
        tab = self._focused()
        end = self.t + seconds
        t = self.t + self.rng.uniform(*input_every)
        while t < end:
            tab.inputs.append(t)
            t += self.rng.uniform(*input_every)
        t = self.t + self.rng.uniform(*cell_every)
        while t < end:
            length = min(self.rng.uniform(*cell_length), end - t)
            self.session.cells.append(Cell(tab.notebook, t, t + length))
            tab.inputs.append(t)  # shift+enter is an input too
            t += length + self.rng.uniform(*cell_every)
        tab.inputs.sort()
        self.t = end
        return self

    def run_cell(self, seconds: float, *, dies: bool = False, stopped: bool = False) -> Script:
        """Start a long cell in the focused notebook and watch it, hands off, until it ends,
        its kernel ``dies``, or the student clicks stop (``stopped``: an input)."""
        tab = self._focused()
        tab.inputs.append(self.t)
        self.session.cells.append(Cell(tab.notebook, self.t, self.t + seconds, dies))
        self.t += seconds
        if stopped:
            tab.inputs.append(self.t)
        return self

    def wait(self, seconds: float) -> Script:
        self.t += seconds
        return self

    def done(self) -> Session:
        self.session.end = self.t
        return self.session


# ---- ground truth ----------------------------------------------------------------------------


def truth(
    session: Session, idle_after: float = IDLE_AFTER, cell_limit: float = RUNNING_CELL_LIMIT
) -> dict[str, float]:
    """Exact active seconds per notebook, from the script, by sweeping its breakpoints."""
    notebooks = {tab.notebook for tab in session.tabs.values()}
    touches: dict[str, list[float]] = {nb: [] for nb in notebooks}
    for tab in session.tabs.values():
        touches[tab.notebook].append(tab.opened)
        touches[tab.notebook].extend(tab.inputs)
    for cell in session.cells:
        touches[cell.notebook].append(cell.start)
    for nb in touches:
        touches[nb].sort()
    cells = {nb: [c for c in session.cells if c.notebook == nb] for nb in notebooks}

    def running(nb: str, t: float) -> bool:
        return any(c.start <= t < c.end for c in cells[nb])

    def last(times: list[float], t: float) -> float | None:
        return max((x for x in times if x <= t), default=None)

    # A cell's end is a signal only while the notebook's time still counts (its idle or its
    # running cell's limit): settled in time order, since each end can extend the next.
    signals = {nb: list(touches[nb]) for nb in notebooks}
    for nb in notebooks:
        for cell in sorted(cells[nb], key=lambda c: c.end):
            if cell.dies:
                continue
            sig, touch = last(signals[nb], cell.end), last(touches[nb], cell.end)
            recent = sig is not None and cell.end < sig + idle_after
            busy = touch is not None and cell.end < touch + cell_limit  # it ran until now
            if recent or busy:
                signals[nb].append(cell.end)
        signals[nb].sort()

    points = {0.0, session.end}
    for tab in session.tabs.values():
        points.add(tab.opened)
        points.update(t for t, _, _ in tab.states)
        if tab.closed is not None:
            points.add(tab.closed)
    for nb in notebooks:
        points.update(signals[nb])
        points.update(x + idle_after for x in signals[nb])
        points.update(x + cell_limit for x in touches[nb])
    for cell in session.cells:
        points.update((cell.start, cell.end))
    ordered = sorted(p for p in points if 0.0 <= p <= session.end)
    out = dict.fromkeys(notebooks, 0.0)
    for a, b in itertools.pairwise(ordered):
        if b <= a:
            continue
        mid = (a + b) / 2
        candidates = []
        for nb in notebooks:
            seen = any(
                tab.notebook == nb and tab.state(mid) == (True, True)
                for tab in session.tabs.values()
            )
            sig, touch = last(signals[nb], mid), last(touches[nb], mid)
            recent = (sig is not None and mid < sig + idle_after) or (
                running(nb, mid) and touch is not None and mid < touch + cell_limit
            )
            if seen and recent:
                candidates.append((sig or 0.0, nb))
        if candidates:
            out[max(candidates)[1]] += b - a
    return out
