"""A flat-file run that stops dead at a point the test names (tests/test_flatfiles_kill.py):

    python flat_victim.py DATASET COUNT MARKER polyledger-run-arguments...

Once COUNT files of DATASET are written (in place, their units not yet settled), every
writer of DATASET stops there: the first writes MARKER and all wait forever, for the test
to SIGKILL the process at exactly that point."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from polyledger.cli import main
from polyledger.storage.base import BarStore

dataset, count, marker = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
written = 0
lock = threading.Lock()
original = BarStore.write_unit


def gated(self, name, *args, **kwargs):  # type: ignore[no-untyped-def]
    global written
    stored = original(self, name, *args, **kwargs)
    if name == dataset:
        with lock:
            written += 1
            stop = written >= count
            if stop and not marker.exists():
                marker.write_text(str(written))
        if stop:
            threading.Event().wait()  # held here until the test kills the process
    return stored


BarStore.write_unit = gated  # type: ignore[method-assign]
sys.exit(main(sys.argv[4:]))
