"""The ``timeback`` section of a notebook's metadata: its schemas, reading and writing.

``metadata.timeback`` is ``{schema_version, activity, run}``: the author declares the activity,
timeback-jupyter writes the run so the student resumes days later. Each version has a JSON Schema
(``schemas/v<N>.json``, draft 2020-12), which the lab extension's TypeScript types are generated
from (``scripts/gen_metadata_types.py``). Every reader calls :func:`read` (older versions are
upgraded, a newer one refused) and every writer :func:`merge` (keys we do not know are kept, a
newer version is never written over). Nothing here knows about Jupyter.
"""

from .section import check, merge, problems, read
from .versions import (
    CURRENT_VERSION,
    OLDEST_VERSION,
    MetadataError,
    NewerVersionError,
    schema,
    upgrade,
    version_of,
)

__all__ = [
    "CURRENT_VERSION",
    "OLDEST_VERSION",
    "MetadataError",
    "NewerVersionError",
    "check",
    "merge",
    "problems",
    "read",
    "schema",
    "upgrade",
    "version_of",
]
