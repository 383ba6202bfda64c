"""The dataset registry: every dataset polyledger downloads, one spec each
(`spec.DatasetSpec`), in the order commands list them.

A new dataset is one module here (its spec, request builder and layout), a decoder in
`polygon/` if its pages are a new shape, its stand-in endpoint and its tests; see
docs/architecture.md.
"""

from __future__ import annotations

from polyledger.datasets import (
    day,
    details,
    dividends,
    flat_days,
    grouped_daily,
    minute,
    splits,
    ticker_events,
)
from polyledger.datasets.spec import MARKET, DatasetSpec

__all__ = ["MARKET", "DatasetSpec", "check_dataset", "check_key", "get", "names"]

_REGISTRY: dict[str, DatasetSpec] = {
    module.SPEC.name: module.SPEC
    for module in (minute, day, splits, dividends, details, ticker_events, grouped_daily)
}
# the flat-file route's day units (`run --source flatfiles`), never fetched from the API
_REGISTRY.update({spec.name: spec for spec in (flat_days.MINUTE_SPEC, flat_days.DAY_SPEC)})
FLAT_FILE_DATASETS = (flat_days.MINUTE_FILES, flat_days.DAY_FILES)


def names(*, bars: bool | None = None, grain: str | None = None) -> tuple[str, ...]:
    """Dataset names in registry order, optionally only bar (or non-bar) datasets, or one grain."""
    return tuple(
        name
        for name, spec in _REGISTRY.items()
        if (bars is None or spec.bars == bars) and (grain is None or spec.grain == grain)
    )


def get(name: str) -> DatasetSpec:
    """The dataset's spec, or an InputError listing the datasets there are."""
    spec = _REGISTRY.get(name)
    if spec is None:
        from polyledger.errors import InputError

        raise InputError(f"unknown dataset {name!r}: choose one of {', '.join(_REGISTRY)}")
    return spec


def check_dataset(name: str) -> str:
    """The name unchanged, or an InputError listing the datasets there are."""
    get(name)
    return name


def check_key(spec: DatasetSpec, key: str) -> str:
    """A unit's key as its dataset wants it: a valid ticker, or the market for date-keyed
    units (a hand-edited ledger must not steer a path or a URL)."""
    if spec.keyed_by == "date":
        if key != MARKET:
            from polyledger.errors import InputError

            raise InputError(f"{spec.name} units are keyed by the market {MARKET!r}, not {key!r}")
        return key
    from polyledger.symbols import validate_ticker

    return validate_ticker(key)
