"""Set up and run polyledger's everyday tasks, the same way on Linux, macOS and Windows.

    python tasks.py demo     # create .venv, install polyledger, run the built-in demo
    python tasks.py test     # create .venv, install polyledger with test extras, run the tests

Uses only the standard library, so it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def _setup(extras: str) -> None:
    """Create the venv and install the project, only when pyproject.toml changed."""
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and PYTHON.exists():
        return
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    target = f".[{extras}]" if extras else "."
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "-e", target], check=True, cwd=ROOT)
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    task, rest = argv[0], argv[1:]
    env = dict(os.environ, PYTHONUTF8="1")
    if task == "demo":
        _setup("")
        return subprocess.run([str(PYTHON), "-m", "polyledger", "demo", *rest], env=env).returncode
    _setup("test")
    return subprocess.run([str(PYTHON), "-m", "pytest", "-q", *rest], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
