"""Which live run each notebook has, and which run it last ended or completed while open.

A notebook is only a path string here; renames move the binding, and a run belongs to at
most one notebook.
"""

from __future__ import annotations

# Notebooks remembered as holding a run closed while they stayed open (as the server's
# MAX_BROWSER_PATHS). Forgetting the oldest one only lets kernel traffic start a new attempt
# there, as after its kernel shut down.
MAX_CLOSED = 10_000


class NotebookRuns:
    def __init__(self) -> None:
        self._run_at: dict[str, str] = {}  # notebook path -> live run id
        self._path_of: dict[str, str] = {}  # live run id -> notebook path
        # notebook path -> its run that was ended or completed while the notebook stayed open:
        # nothing restarts it behind the student's back, only an explicit start does
        self._closed_at: dict[str, str] = {}

    def run_at(self, path: str) -> str | None:
        return self._run_at.get(path)

    def path_of(self, run_id: str) -> str | None:
        return self._path_of.get(run_id)

    def closed_at(self, path: str) -> str | None:
        return self._closed_at.get(path)

    def bind(self, path: str, run_id: str) -> None:
        self._closed_at.pop(path, None)
        self._run_at[path] = run_id
        self._path_of[run_id] = path

    def reopen(self, path: str) -> None:
        self._closed_at.pop(path, None)

    def unbind(self, run_id: str) -> str | None:
        """The run stopped (ended, completed): its notebook remembers it as closed. Returns
        the notebook's path when the run was that notebook's live run."""
        path = self._path_of.pop(run_id, None)
        if path is not None and self._run_at.get(path) == run_id:
            del self._run_at[path]
            self._closed_at.pop(path, None)
            self._closed_at[path] = run_id  # the most recent last
            if len(self._closed_at) > MAX_CLOSED:
                del self._closed_at[next(iter(self._closed_at))]
            return path
        return None

    def rename(self, old_path: str, new_path: str) -> str | None:
        """Move the bindings of ``old_path``; the live run id that moved, if any."""
        run_id = self._run_at.pop(old_path, None)
        if run_id is not None:
            self._run_at[new_path] = run_id
            self._path_of[run_id] = new_path
        closed = self._closed_at.pop(old_path, None)
        if closed is not None:
            self._closed_at[new_path] = closed
        return run_id
