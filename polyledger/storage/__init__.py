"""The data location as a backend: one interface (`base.BarStore`), a local folder
(`local.LocalStore`: temporary + fsync + rename) and an object store
(`objectstore.ObjectStore`: temporary key + server-side copy), with the file layout they share
(`layout`). `BarStore(location)` or `open_store(location)` gives the right backend.

A new backend is one module here with a `BarStore` subclass, and a line in `backend_for`.
What goes into the files (the bar schema, a unit's bars) is `polyledger/bars.py`'s.
"""

from __future__ import annotations

from pathlib import Path

from polyledger.storage.base import ADJUSTED_KEY, MARKER, BarStore, DataHome, EncodedUnit, file_checksum
from polyledger.storage.layout import (
    PART_NAME,
    QUARANTINE,
    TEMP_MARK,
    TEMP_SUFFIX,
    is_file_url,
    is_url,
    unit_relative_path,
)
from polyledger.storage.local import LocalStore
from polyledger.storage.objectstore import ObjectStore

__all__ = [
    "EncodedUnit",
    "ADJUSTED_KEY",
    "MARKER",
    "PART_NAME",
    "QUARANTINE",
    "TEMP_MARK",
    "TEMP_SUFFIX",
    "BarStore",
    "DataHome",
    "LocalStore",
    "ObjectStore",
    "backend_for",
    "file_checksum",
    "is_url",
    "open_store",
    "unit_relative_path",
]


def backend_for(location: object) -> type[BarStore]:
    """The backend of a location: a URL (any fsspec protocol but `file://`) is an object
    store; anything else is a local folder."""
    if is_url(location) and not is_file_url(location):
        return ObjectStore
    return LocalStore


def open_store(location: Path | str) -> BarStore:
    """The data location's backend (the same as `BarStore(location)`)."""
    return backend_for(location)(location)  # type: ignore[arg-type]
