"""Replaced day files found: the bucket's ETags (one LIST per month folder) against those
read. A changed one makes the ticker units built from that day stale (`audit` reports
them, `retry --stale` queues them and the day again)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from polyledger.datasets.flat_days import ROUTES
from polyledger.flatfiles.source import FlatFilesSource
from polyledger.ledger import Ledger


@dataclass(frozen=True)
class EtagCheck:
    checked: int  # day files read and listed again
    changed: int  # whose object has another ETag (or is gone) now


def check_etags(ledger: Ledger, source: FlatFilesSource, targets: Sequence[str] = tuple(ROUTES)) -> EtagCheck:
    """Record the ETag each read day file has in the bucket now."""
    seen: dict[int, str] = {}
    for target in targets:
        records = ledger.flat_file_records(ROUTES[target])
        listed: dict[str, str] = {}
        for folder in sorted({row.object_key.rsplit("/", 1)[0] + "/" for row in records}):
            listed.update(source.list_etags(folder))
        seen.update({row.unit_id: listed.get(row.object_key, "") for row in records})
    changed = ledger.note_seen_etags(seen) if seen else 0
    return EtagCheck(len(seen), changed)
