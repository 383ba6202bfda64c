"""The data location as a backend: `BarStore(location)` picks it from the location, and
the storage package stays below the API client and universe files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import python_env

from polyledger.storage import BarStore, LocalStore, ObjectStore, open_store

PACKAGE = Path(__file__).resolve().parent.parent / "polyledger"


@pytest.mark.parametrize(
    ("location", "backend"),
    [
        ("data", LocalStore),
        (Path("data"), LocalStore),
        ("file:///tmp/data", LocalStore),
        ("s3://bucket/prefix", ObjectStore),
        ("memory://somewhere", ObjectStore),
    ],
)
def test_the_location_picks_the_backend(location, backend):
    assert type(BarStore(location)) is backend
    assert type(open_store(location)) is backend


def test_storage_imports_neither_the_api_client_nor_universe_files():
    code = (
        "import sys, polyledger.storage, polyledger.bars; "
        "print(sorted(m for m in sys.modules if m.startswith(('polyledger.polygon', 'polyledger.universe'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=python_env(), capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_no_module_outside_storage_asks_which_backend_it_has():
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if "storage" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(word in line for word in (".remote", "LocalStore", "ObjectStore"))
    ]
    assert offenders == []
