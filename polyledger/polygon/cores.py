"""Slots for a page's CPU work, one per core: however many workers a run has, only as many
pages as there are cores are inflated, decoded, shaped and encoded at once, and only those
are held decoded (in memory several times their compressed size).

`PolygonClient.get` takes a slot to inflate and decode a body, and gives back any slot its
thread holds before each request. A worker fetching a range (`fetch.units.process_units`)
*keeps* it after the decode, through the shaping of the page's units and the encoding of
their files (`_Progress._settle` takes one for that when it has none), and gives it back,
with the page, before the files' I/O and the ledger's settle (keeping it through the
fsyncs halved the cores busy): a worker waiting for a core, for the rate limit or for the
network holds its page gzip, never decoded (16 workers held up to 16 decoded pages
before: some 30 MB more at the peak, bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator


class CoreSlots:
    def __init__(self, count: int) -> None:
        self._slots = threading.BoundedSemaphore(count)
        # held: this thread has a slot now; keeping: depth of keeping() in this thread
        self._thread = threading.local()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """A slot for the block: the one this thread holds already, or one taken now. Inside
        `keeping()` it outlives a block that ends normally, until `release_kept()`; a block
        that raises gives it back at once (a retry must not wait for its delay holding a
        core), whoever took it."""
        thread = self._thread
        if not getattr(thread, "held", False):
            self._slots.acquire()
            thread.held = True
        try:
            yield
        except BaseException:
            self.release_kept()
            raise
        if not getattr(thread, "keeping", 0):
            self.release_kept()

    @contextlib.contextmanager
    def keeping(self) -> Iterator[None]:
        """Slots taken in this thread inside the block are kept past their `slot()` block;
        whatever is kept is given back when the block ends, however it ends."""
        thread = self._thread
        thread.keeping = getattr(thread, "keeping", 0) + 1
        try:
            yield
        finally:
            thread.keeping -= 1
            if thread.keeping == 0:
                self.release_kept()

    def release_kept(self) -> None:
        """Give back the slot this thread holds, if any: before its page's files are stored,
        and before every request (`PolygonClient.get`): no one waits for the rate limit or
        the network holding a core."""
        thread = self._thread
        if getattr(thread, "held", False):
            thread.held = False
            self._slots.release()


# the process's slots: one per core (two at least: one page decoding while one is encoded)
PAGE_WORK = CoreSlots(max(2, os.cpu_count() or 1))
