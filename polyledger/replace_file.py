"""A user's file replaced whole (a universe, a report): written under a temporary name
beside it, then renamed over it, so a command stopped half-way (Ctrl-C, a full disk)
leaves the previous file as it was, never a truncated one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

from polyledger.errors import StorageError


def replace_file(path: Path, write: Callable[[Path], object]) -> None:
    """`write(temporary)`, then the temporary renamed to `path` (atomic on one file system,
    Windows included: `os.replace`); the temporary never outlives a failure. StorageError
    (one line) when the disk refuses."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        write(temporary)
        os.replace(temporary, path)
    except OSError as exc:
        raise StorageError(f"cannot write {path} (left as it was): {exc.strerror or exc}") from None
    finally:
        temporary.unlink(missing_ok=True)
