"""docs/walkthrough.py runs, cell by cell, against the raw demo's ledger: every snippet a
reader sees is executed (its own asserts included), and the coverage picture is drawn."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

WALKTHROUGH = Path(__file__).resolve().parent.parent / "docs" / "walkthrough.py"


def cells() -> list[str]:
    return [
        cell
        for cell in re.split(r"^# %%.*$", WALKTHROUGH.read_text(encoding="utf-8"), flags=re.M)
        if cell.strip()
    ]


def test_every_cell_of_the_walkthrough_runs_on_the_demos_ledger(raw_demo_download, monkeypatch, tmp_path):
    monkeypatch.setenv("POLYLEDGER_WALKTHROUGH", str(raw_demo_download))
    monkeypatch.chdir(tmp_path)
    (raw_demo_download / "coverage.png").unlink(missing_ok=True)
    namespace: dict = {"__name__": "walkthrough"}
    code = [cell for cell in cells() if any(not line.startswith("#") for line in cell.strip().splitlines())]
    assert len(code) >= 7  # open, daily, as_of, minute and dividends, dollar bars, coverage, close
    for number, cell in enumerate(code):
        try:
            exec(compile(cell, f"{WALKTHROUGH.name}:cell{number}", "exec"), namespace)
        except Exception as error:  # name the cell that failed
            pytest.fail(f"cell {number} of docs/walkthrough.py failed: {error!r}\n{cell}")
    assert not list(tmp_path.iterdir())  # it read the demo given, and built none of its own
    per_day = namespace["per_day"]
    assert per_day["ticker"].to_list() == ["AAPL", "PLUG", "SIRI"]
    assert per_day.filter((pl.col("bars_a_day") - 20).abs() > 3).height == 0  # "about 20 a day"
    assert (raw_demo_download / "coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
