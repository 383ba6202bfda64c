"""Shared fixtures: a stand-in Polygon server on 127.0.0.1, and an isolated work folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import API_KEY, LISTINGS

from polyledger.testing import StandInServer, SyntheticMarket


def pytest_sessionstart(session: pytest.Session) -> None:
    """Print the random order's seed even under -q (pytest-randomly's header is hidden
    there), so a failing order can be repeated with --randomly-seed=N."""
    seed = getattr(session.config.option, "randomly_seed", None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if isinstance(seed, int) and reporter is not None:
        reporter.write_line(f"random test order: --randomly-seed={seed}")


@pytest.fixture(scope="session")
def market() -> SyntheticMarket:
    return SyntheticMarket(LISTINGS, seed=11)


@pytest.fixture
def server(market: SyntheticMarket) -> Iterator[StandInServer]:
    with StandInServer(market, api_keys=(API_KEY,)) as running:
        yield running


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated folder as the current directory, with the key in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POLYGON_API_KEY", API_KEY)
    monkeypatch.delenv("MASSIVE_API_KEY", raising=False)
    monkeypatch.delenv("POLYGON_BASE_URL", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def demo_download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in demo's folder (ledger.db, data/, universe.csv), made once per session:
    a realistic small download with every state, failures, splits and dividends."""
    from rich.console import Console

    from polyledger.demo import run_demo

    folder = tmp_path_factory.mktemp("demo")
    run_demo(folder, workers=4, console=Console(quiet=True))
    return folder


@pytest.fixture(scope="session")
def raw_demo_download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in demo fetched raw (`run --unadjusted`): what adjusting on read, the
    bar builders and docs/walkthrough.py read."""
    from rich.console import Console

    from polyledger.demo import run_demo

    folder = tmp_path_factory.mktemp("raw-demo")
    run_demo(folder, workers=4, console=Console(quiet=True), adjusted=False)
    return folder
