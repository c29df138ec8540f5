"""Notebook metadata through jupyter_server's own contents manager.

``metadata.timeback`` is ``{schema_version, activity, run}`` (see :mod:`..notebook_metadata`).
The browser extension writes it into the live document (so it saves with the student's work);
the server writes the file only when no browser extension looks after the notebook. Both merge
into the section on disk, keeping keys they do not know, and neither writes over a newer version.

A run start costs one read and at most one write of the notebook: the write uses what the
start read when the file has not changed since (a stat, not a read, says so). Where the contents
manager keeps plain files (jupyter_server's own, with no save hooks), the server reads and
writes the file's text and changes only the ``timeback`` section (:mod:`.notebook_json`),
keeping the notebook's trust; other contents managers get the notebook model saved back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from jupyter_core.utils import ensure_async

from .. import notebook_metadata
from ..model import Activity, InvalidInput
from .errors import NotebookError
from .notebook_json import with_section

log = logging.getLogger("timeback_jupyter.notebooks")

# Notebooks read by a start and kept for its write: a bound, not a history (most starts write
# within metadata_write_delay, and a write whose read was dropped reads again). A notebook read
# as text is kept as its text only (a parsed 10 MB notebook takes several times that).
REMEMBERED = 16
REMEMBERED_BYTES = 64 * 2**20


class NotebookMetadataError(ValueError):
    pass


class NotebookMissing(NotebookError):
    """No notebook at the path: a run is only ever started for a notebook that exists."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.status = 404


def _plain_files(contents_manager: Any) -> bool:
    """The contents manager keeps notebooks as plain JSON files that the server may edit as
    text: one of jupyter_server's own file managers (not a subclass: jupytext's pairs
    formats), with no save hook (a hook expects a notebook model)."""
    try:
        from jupyter_server.services.contents.filemanager import (
            AsyncFileContentsManager,
            FileContentsManager,
        )
        from jupyter_server.services.contents.largefilemanager import (
            AsyncLargeFileManager,
            LargeFileManager,
        )
    except ImportError:  # pragma: no cover - jupyter_server always has them
        return False
    plain = (FileContentsManager, AsyncFileContentsManager, LargeFileManager, AsyncLargeFileManager)
    hooks = (
        getattr(contents_manager, "pre_save_hook", None),
        getattr(contents_manager, "post_save_hook", None),
        *getattr(contents_manager, "_pre_save_hooks", ()),
        *getattr(contents_manager, "_post_save_hooks", ()),
    )
    return type(contents_manager) in plain and not any(hooks)


@dataclass
class _Read:
    """A notebook as one read found it: its JSON (and text, when read as text) and the stamp
    (last_modified, size) that tells whether the file changed since."""

    notebook: dict[str, Any]
    text: str | None
    stamp: tuple[str, Any]

    @property
    def section(self) -> Any:
        return (self.notebook.get("metadata") or {}).get("timeback")


def _weight(read: _Read) -> int:
    if read.text is not None:
        return len(read.text)
    size = read.stamp[1]
    return size if isinstance(size, int) else 0


def _stamp(model: dict[str, Any]) -> tuple[str, Any]:
    return (str(model.get("last_modified") or ""), model.get("size"))


def _not_found(err: Exception) -> bool:
    return getattr(err, "status_code", None) == 404 or isinstance(err, FileNotFoundError)


class ContentsNotebooks:
    """The service's notebook files (:class:`.service.NotebookFiles`): Jupyter's contents
    manager, so notebooks live wherever the server keeps them (disk, a database, S3...)."""

    def __init__(self, contents_manager: Any) -> None:
        self._cm = contents_manager
        self._read_by_path: OrderedDict[str, _Read] = OrderedDict()

    @property
    def in_place(self) -> bool:
        return _plain_files(self._cm)

    async def _load(self, path: str) -> _Read:
        """One read of the notebook's content; NotebookMissing if there is none at ``path``."""
        as_text = self.in_place
        try:
            if as_text:
                model = await ensure_async(
                    self._cm.get(path, content=True, type="file", format="text")
                )
            else:
                model = await ensure_async(self._cm.get(path, content=True, type="notebook"))
        except Exception as err:
            if _not_found(err):
                raise NotebookMissing(f"{path}: no such notebook") from None
            raise NotebookMetadataError(f"{path}: cannot be read as a notebook ({err})") from None
        if not as_text:
            return _Read(model.get("content") or {}, None, _stamp(model))
        text = model.get("content")
        try:
            notebook = await asyncio.to_thread(json.loads, text)
        except (TypeError, ValueError, RecursionError) as err:
            raise NotebookMetadataError(
                f"{path}: cannot be read as a notebook (not JSON: {err})"
            ) from None
        if not isinstance(notebook, dict) or not isinstance(notebook.get("metadata", {}), dict):
            raise NotebookMetadataError(f"{path}: cannot be read as a notebook (no metadata)")
        return _Read(notebook, text, _stamp(model))

    def _remember(self, path: str, read: _Read) -> None:
        if read.text is not None:
            read = _Read({}, read.text, read.stamp)  # parsed again for the write, off the loop
        self._read_by_path.pop(path, None)
        self._read_by_path[path] = read
        while len(self._read_by_path) > REMEMBERED or (
            sum(map(_weight, self._read_by_path.values())) > REMEMBERED_BYTES
            and len(self._read_by_path) > 1
        ):
            self._read_by_path.popitem(last=False)

    def forget(self, path: str) -> None:
        """The notebook at ``path`` moved or went: what was read of it is no longer its."""
        self._read_by_path.pop(path, None)

    async def _current(self, path: str) -> _Read:
        """The notebook as it is now: the last read if the file has not changed since."""
        kept = self._read_by_path.pop(path, None)
        if kept is not None and kept.stamp[0]:
            try:
                model = await ensure_async(self._cm.get(path, content=False))
            except Exception as err:
                if _not_found(err):
                    raise NotebookMissing(f"{path}: no such notebook") from None
                model = {}
            if _stamp(model) == kept.stamp:
                if kept.text is not None:
                    notebook = await asyncio.to_thread(json.loads, kept.text)
                    return _Read(notebook, kept.text, kept.stamp)
                return kept
        return await self._load(path)

    async def read(self, path: str) -> dict[str, Any] | None:
        """``metadata.timeback`` of the notebook at ``path`` in the current schema version (an
        older one upgraded, the file untouched); None when it declares nothing."""
        try:
            found = await self._load(path)
            section = notebook_metadata.read(found.section, path)
        except NotebookMetadataError as err:
            raise NotebookError(str(err)) from None
        except notebook_metadata.MetadataError as err:
            raise NotebookError(str(err)) from None
        self._remember(path, found)
        return section

    async def write(self, path: str, section: dict[str, Any]) -> bool:
        """Merge ``section`` into the notebook file's ``metadata.timeback``; False if already
        there. Raises :class:`NotebookMetadataError` (and writes nothing) over a newer schema
        version, :class:`NotebookMissing` if the notebook is gone."""
        found = await self._current(path)
        existing = found.section
        try:
            merged = notebook_metadata.merge(existing, section, path)
        except notebook_metadata.NewerVersionError as err:
            raise NotebookMetadataError(str(err)) from None
        if merged == existing:
            return False
        if found.text is not None:
            text = await asyncio.to_thread(with_section, found.text, found.notebook, merged)
            if text is not None:
                await self._save_text(path, found.notebook, text, merged)
                return True
            found = await self._load_model(path)  # a layout we do not edit: the model
        content = found.notebook
        content.setdefault("metadata", {})["timeback"] = merged
        await ensure_async(
            self._cm.save({"type": "notebook", "format": "json", "content": content}, path)
        )
        return True

    async def _load_model(self, path: str) -> _Read:
        model = await ensure_async(self._cm.get(path, content=True, type="notebook"))
        return _Read(model.get("content") or {}, None, _stamp(model))

    async def _save_text(
        self, path: str, before: dict[str, Any], text: str, section: dict[str, Any]
    ) -> None:
        """Save the edited text as the file; a notebook trusted before stays trusted (saving
        the model would have signed it again)."""
        notary = getattr(self._cm, "notary", None)
        trusted = False
        if notary is not None:
            import nbformat

            try:
                trusted = notary.check_signature(nbformat.from_dict(before))
            except Exception:  # an unreadable signature store: as if untrusted
                trusted = False
        await ensure_async(self._cm.save({"type": "file", "format": "text", "content": text}, path))
        if trusted:
            import nbformat

            after = dict(before, metadata={**before.get("metadata", {}), "timeback": section})
            notary.sign(nbformat.from_dict(after))

    def activity(self, section: dict[str, Any], path: str) -> Activity:
        try:
            return activity_from_metadata(section, path)
        except NotebookMetadataError as err:
            raise NotebookError(str(err)) from None

    async def last_modified(self, path: str) -> str:
        """When the file last changed, as the contents manager says; "" if it cannot say."""
        try:
            model = await ensure_async(self._cm.get(path, content=False, type="notebook"))
        except Exception:
            return ""
        return str(model.get("last_modified") or "")


def activity_from_metadata(section: dict[str, Any], path: str) -> Activity:
    try:
        return Activity.from_dict(section.get("activity"), "metadata.timeback.activity")
    except InvalidInput as err:
        raise NotebookMetadataError(f"{path}: {err}") from None
