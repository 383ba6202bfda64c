"""polyledger's version, read from the installed package's metadata (pyproject.toml is its
one source). A leaf module: anything may import it without importing upward."""

from __future__ import annotations

from functools import cache


@cache
def version() -> str:
    """The installed version, or "0" when polyledger runs from a folder never installed."""
    from importlib import metadata  # ~60 ms to import: only when asked, never at start-up

    try:
        return metadata.version("polyledger")
    except metadata.PackageNotFoundError:
        return "0"
