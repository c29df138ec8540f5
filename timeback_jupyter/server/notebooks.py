"""Notebook metadata through jupyter_server's own contents manager.

``metadata.timeback`` is ``{schema_version, activity, run}`` (see :mod:`..notebook_metadata`).
The browser extension writes it into the live document (so it saves with the student's work);
the server writes the file only when no browser extension looks after the notebook. Both merge
into the section on disk, keeping keys they do not know, and neither writes over a newer version.
"""

from __future__ import annotations

import logging
from typing import Any

from jupyter_core.utils import ensure_async

from .. import notebook_metadata
from ..model import Activity, InvalidInput
from .errors import NotebookError

log = logging.getLogger("timeback_jupyter.notebooks")


class NotebookMetadataError(ValueError):
    pass


async def read_timeback_metadata(contents_manager: Any, path: str) -> dict[str, Any] | None:
    """``metadata.timeback`` of the notebook at ``path`` in the current schema version (an older
    one upgraded, the file untouched); None when it declares nothing."""
    try:
        model = await ensure_async(contents_manager.get(path, content=True, type="notebook"))
    except Exception as err:
        raise NotebookMetadataError(f"{path}: cannot be read as a notebook ({err})") from None
    content = model.get("content") or {}
    metadata = content.get("metadata") or {}
    try:
        return notebook_metadata.read(metadata.get("timeback"), path)
    except notebook_metadata.MetadataError as err:
        raise NotebookMetadataError(str(err)) from None


def activity_from_metadata(section: dict[str, Any], path: str) -> Activity:
    try:
        return Activity.from_dict(section.get("activity"), "metadata.timeback.activity")
    except InvalidInput as err:
        raise NotebookMetadataError(f"{path}: {err}") from None


async def write_timeback_metadata(
    contents_manager: Any, path: str, section: dict[str, Any]
) -> bool:
    """Merge ``section`` into the notebook file's ``metadata.timeback``; False if already there.

    Saving the model we just read keeps every cell as it is on disk: nothing on disk is lost.
    Only called for notebooks with no browser extension attached, right when the run starts.
    Raises :class:`NotebookMetadataError` (and writes nothing) over a newer schema version.
    """
    model = await ensure_async(contents_manager.get(path, content=True, type="notebook"))
    content = model["content"]
    existing = content.get("metadata", {}).get("timeback")
    try:
        merged = notebook_metadata.merge(existing, section, path)
    except notebook_metadata.NewerVersionError as err:
        raise NotebookMetadataError(str(err)) from None
    if merged == existing:
        return False
    content.setdefault("metadata", {})["timeback"] = merged
    await ensure_async(
        contents_manager.save({"type": "notebook", "format": "json", "content": content}, path)
    )
    return True


class ContentsNotebooks:
    """The service's notebook files (:class:`.service.NotebookFiles`): Jupyter's contents
    manager, so notebooks live wherever the server keeps them (disk, a database, S3...)."""

    def __init__(self, contents_manager: Any) -> None:
        self._cm = contents_manager

    async def read(self, path: str) -> dict[str, Any] | None:
        try:
            return await read_timeback_metadata(self._cm, path)
        except NotebookMetadataError as err:
            raise NotebookError(str(err)) from None

    async def write(self, path: str, section: dict[str, Any]) -> bool:
        return await write_timeback_metadata(self._cm, path, section)

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
