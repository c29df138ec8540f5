"""The one error the store raises, and SQLite's errors told as sentences a person can act on."""

from __future__ import annotations

import sqlite3


class StoreError(RuntimeError):
    """The store cannot do what was asked; the message says why and names the file."""


def explain(err: sqlite3.Error, path: str) -> str:
    """A sentence a student or admin can act on, from SQLite's error code."""
    name = getattr(err, "sqlite_errorname", "") or ""
    text = str(err)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return f"{path}: database is locked by another process (gave up waiting)"
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return f"{path}: database is read-only (check the file and directory permissions)"
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return f"{path}: disk full, cannot write the database"
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in text:
        return f"{path}: not a timeback store / database disk image is malformed"
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return (
            f"{path}: cannot open the database file (is the directory writable and does it exist?)"
        )
    return f"{path}: {text}"
