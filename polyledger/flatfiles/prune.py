"""Staged days deleted once no unit needs them.

A staged day is a copy of the universe's bars of one day: once every ticker unit of the
periods holding it is settled, it only takes disk (as much again as the dataset). The file
goes first, then the ledger forgets its path; the day unit stays `done` (it was read, its
ETag and rows are recorded). A stop between the two leaves a done day whose file is gone:
the next prune forgets it too. A ticker unit that needs a pruned day again (`retry`, a
stale month, a ticker planned since) has the day queued again by `prepare`, which reads
it from the bucket again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from polyledger.datasets.flat_days import ROUTES
from polyledger.ledger import Ledger
from polyledger.storage import BarStore

log = logging.getLogger("polyledger.run")


@dataclass(frozen=True)
class Pruned:
    deleted: int  # staged day files deleted (or found gone) and forgotten
    kept: int  # could not be deleted: left, and still recorded


def prune_staged(ledger: Ledger, store: BarStore, targets: Sequence[str]) -> Pruned:
    """Delete the staged days no unit of `targets` (minute, day) needs any more."""
    deleted: list[int] = []
    kept = 0
    for target in targets:
        for row in ledger.unneeded_staged(target, ROUTES[target]):
            if store.remove(row.file_path) or store.surely_gone(row.file_path):
                deleted.append(row.id)
            else:
                kept += 1
                log.warning("could not delete the staged day %s (kept, still recorded)", row.file_path)
    return Pruned(ledger.forget_staged(deleted) if deleted else 0, kept)
