"""The HTML report: self-contained, true to the ledger, escaped, and readable charts."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from support import API_KEY, LISTINGS, UNKNOWN, run_cli, write_universe

from polyledger.checks.audit import audit
from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import AttemptRecord, Ledger, StoredFile
from polyledger.output.report import (
    MAX_TICKERS,
    Cell,
    coverage_grids,
    dataset_summaries,
    period_states,
    write_report,
)
from polyledger.plan import plan
from polyledger.storage import BarStore
from polyledger.testing import StandInServer, SyntheticMarket

D = dt.date
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NASTY = "<script>alert('x')</script> & <img src=http://evil.example/x.png onerror=alert(1)>"


class FakeClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory) -> Path:
    """A real download from the stand-in server: done, empty (a ticker the API does not know),
    failed as not_entitled (months before the plan's history), and pending units planned later."""
    directory = tmp_path_factory.mktemp("report")
    tickers = [listing.ticker for listing in LISTINGS[:5]]
    market = SyntheticMarket(LISTINGS[:5], seed=5)
    with (
        StandInServer(market, api_keys=(API_KEY,), history_start=D(2023, 4, 1)) as server,
        Ledger(directory / "ledger.db") as ledger,
    ):
        plan(ledger, [*tickers, UNKNOWN], "minute", D(2023, 1, 1), D(2024, 2, 29))
        plan(ledger, tickers, "day", D(2022, 1, 1), D(2024, 2, 29))
        options = RunOptions(workers=4, rate=5000.0)
        report = Run(
            ledger, BarStore(directory / "data"), api_key=API_KEY, base_url=server.url, options=options
        )
        report.execute()
        plan(ledger, ["LATER"], "minute", D(2023, 6, 1), D(2024, 2, 29))  # never fetched: pending
        flags = [
            {
                "dataset": "minute",
                "ticker": "AAPL",
                "session_date": f"2023-05-{day:02d}",
                "check_name": "gap",
                "detail": f"{day} minutes missing",
                "value": float(day),
            }
            for day in range(1, 26)
        ] + [
            {
                "dataset": "minute",
                "ticker": "SIRI",
                "check_name": "price_jump",
                "detail": "x10",
                "value": 10.0,
            }
        ]
        ledger.replace_quality_flags(["minute"], flags)
    return directory / "ledger.db"


class Tags(HTMLParser):
    """Every tag the browser sees, with its attributes (escaped text is text, not a tag)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def external_references(page: str) -> list[str]:
    """What a browser would fetch or run: src/href/srcset not inline, scripts, stylesheets."""
    found = []
    for tag, attrs in Tags(page).tags:
        if tag in ("script", "link", "iframe", "object", "embed"):
            found.append(tag)
        for name in ("src", "href", "srcset", "poster", "data"):
            value = (attrs.get(name) or "").strip()
            if value and not value.startswith(("data:", "#")):
                found.append(f"{tag} {name}={value}")
    return found


def embedded_pngs(page: str) -> list[bytes]:
    return [
        base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]


def assert_readable_png(data: bytes) -> np.ndarray:
    assert data.startswith(PNG_MAGIC)
    pixels = mpimg.imread(io.BytesIO(data), format="png")
    height, width = pixels.shape[:2]
    assert 200 <= width <= 4000 and 100 <= height <= 6000, (width, height)
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05  # not blank
    colors = np.unique((rgb.reshape(-1, 3) * 255).round().astype(np.uint8), axis=0)
    assert len(colors) > 20
    return pixels


def test_report_is_self_contained_and_true_to_the_ledger(downloaded, tmp_path):
    with Ledger(downloaded) as ledger:
        files = write_report(ledger, tmp_path / "out" / "report.html", title="My <download>")
        counts = ledger.query(
            "SELECT dataset, count(*) AS units, sum(state IN ('done', 'empty_confirmed')) AS settled, "
            "sum(state = 'failed') AS failed, coalesce(sum(rows), 0) AS bars FROM units GROUP BY dataset"
        )
        classes = {
            r.error_class
            for r in ledger.query("SELECT DISTINCT error_class FROM units WHERE state = 'failed'")
        }
        verdict = audit(ledger).complete
    assert files.html == tmp_path / "out" / "report.html"
    assert files.coverage_png == tmp_path / "out" / "report-coverage.png"
    page = files.html.read_text(encoding="utf-8")

    # nothing the browser would fetch: no external src/href, no scripts, no stylesheets or fonts
    assert external_references(page) == []
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page
    images = embedded_pngs(page)
    assert len(images) >= 3  # coverage, bars over time, failure classes
    for data in images:
        assert data.startswith(PNG_MAGIC)
    assert files.coverage_png.read_bytes() in images  # the page shows the very same heatmap

    assert "<title>My &lt;download&gt;</title>" in page
    assert str(downloaded.resolve()) in page
    assert classes == {"not_entitled"} and "<code>not_entitled</code>" in page
    assert {r.dataset for r in counts} == {"minute", "day"}
    for row in counts:  # per dataset: settled / planned, failed units and bars, as the ledger has them
        assert f"{row.settled:,} / {row.units:,}" in page
        assert f"<td class=num>{row.failed:,}</td>" in page
        assert f"<td class=num>{row.bars:,}</td>" in page
        assert row.failed > 0 and row.bars > 0
    assert verdict is False and "INCOMPLETE" in page and "COMPLETE:" not in page.replace("INCOMPLETE:", "")
    assert "minute bars stored" in page or "bars stored over time" in page

    # quality flags: counts per check and the first 20
    assert "<code>gap</code></td><td class=num>25</td>" in page
    assert "<code>price_jump</code></td><td class=num>1</td>" in page
    assert "The first 20 of 26 flags" in page
    assert page.count("minutes missing") == 20
    assert "no quality check run yet" not in page


def test_coverage_heatmap_png_is_a_real_picture(downloaded, tmp_path):
    with Ledger(downloaded) as ledger:
        files = write_report(ledger, tmp_path / "r.html")
        counts = period_states(ledger)
        grids = coverage_grids(ledger, dataset_summaries(ledger, counts), counts)
    data = files.coverage_png.read_bytes()
    assert 5_000 < len(data) < 3_000_000
    pixels = assert_readable_png(data)
    # failed cells are hatched red, pending ones grey, no-bars-at-all ones dotted dark: all in the picture
    rgb = (pixels[..., :3] * 255).round().astype(int)
    reddish = (rgb[..., 0] > 180) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)
    grey = (np.abs(rgb - 200) <= 2).all(axis=-1)
    dark_dots = (np.abs(rgb - [55, 71, 79]) <= 12).all(axis=-1)
    pale_blue = (np.abs(rgb - [179, 229, 252]) <= 3).all(axis=-1)
    assert reddish.sum() > 100 and grey.sum() > 100 and dark_dots.sum() > 20 and pale_blue.sum() > 100

    minute, day = grids
    assert minute.row_labels == sorted([*(listing.ticker for listing in LISTINGS[:5]), UNKNOWN, "LATER"])
    assert minute.column_labels == ["2023", "2024"] and not minute.note
    assert minute.cells["LATER", "2023"] == (7, 0, 0, 0)  # planned after the run: all pending
    aapl = minute.cells["AAPL", "2023"]
    assert (aapl.units, aapl.failed, aapl.settled) == (12, 3, 9)  # Jan-Mar before the plan's history
    assert not aapl.no_bars_at_all
    unknown = minute.cells[UNKNOWN, "2023"]  # the API has nothing for it: settled, every unit empty
    assert unknown.settled == unknown.empty == 9 and unknown.no_bars_at_all
    assert day.column_labels == ["2022", "2023", "2024"]
    assert day.cells["AAPL", "2022"] == (1, 0, 1, 0)
    # one month settled empty, eleven still to fetch: not "no bars at all" yet
    assert not Cell(units=12, settled=1, failed=0, empty=1).no_bars_at_all
    assert Cell(units=12, settled=12, failed=0, empty=12).no_bars_at_all


def test_many_tickers_switch_to_years_by_months(tmp_path):
    tickers = [f"T{i:03d}" for i in range(MAX_TICKERS + 10)]
    with Ledger(tmp_path / "ledger.db", clock=FakeClock()) as ledger:
        plan(ledger, tickers, "minute", D(2022, 11, 1), D(2024, 2, 29))
        plan(ledger, tickers, "day", D(2022, 1, 1), D(2024, 2, 29))
        for unit in ledger.claim("w", 60, limit=300):
            ledger.settle_empty(unit, True, AttemptRecord(requests=1))
        for unit in ledger.claim("w", 60, limit=40):
            ledger.settle_failed(unit, AttemptRecord(error_class="not_found", error="HTTP 404"))
        files = write_report(ledger, tmp_path / "report.html")
        counts = period_states(ledger)
        grids = coverage_grids(ledger, dataset_summaries(ledger, counts), counts)
    page = files.html.read_text(encoding="utf-8")
    assert "70 tickers are too many to show one by one" in page
    assert "per year and month for the whole universe" in page
    minute, day = grids
    assert minute.row_labels == ["2022", "2023", "2024"]
    assert minute.column_labels[0] == "Jan" and len(minute.column_labels) == 12
    assert ("2022", "Jan") not in minute.cells  # nothing planned there
    assert sum(cell.units for cell in minute.cells.values()) == 70 * 16
    assert sum(cell.settled for cell in minute.cells.values()) == 300
    assert sum(cell.empty for cell in minute.cells.values()) == 300  # settled empty, above
    assert sum(cell.failed for cell in minute.cells.values()) == 40
    assert day.row_labels == ["all tickers"] and day.column_labels == ["2022", "2023", "2024"]
    assert "<code>not_found</code>" in page and "300 / 1,120" in page
    assert_readable_png(files.coverage_png.read_bytes())


def test_text_from_the_ledger_is_escaped(tmp_path):
    path = tmp_path / "ledger.db"
    with Ledger(path, clock=FakeClock()) as ledger:
        plan(ledger, ["AAPL", "MSFT"], "minute", D(2024, 1, 1), D(2024, 3, 31))
        first, second, third = ledger.claim("w", 60, limit=3)
        ledger.settle_failed(first, AttemptRecord(error_class="bad_request", error="placeholder"))
        ledger.settle_done(second, StoredFile("minute/AAPL/x.parquet", 10, "abc", 100), True, AttemptRecord())
        ledger.settle_empty(third, True, AttemptRecord())
        ledger.replace_splits("AAPL", [("2026-06-01", 1.0, 4.0)])  # after the fetch: the done unit is stale
        ledger.replace_quality_flags(
            ["minute"],
            [{"dataset": "minute", "ticker": "AAPL", "check_name": "<b>check</b>", "detail": NASTY}],
        )
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE units SET last_error = ?, error_class = ? WHERE id = ?", (NASTY, "<i>odd</i>", first.id)
        )
    with Ledger(path) as ledger:
        page = write_report(ledger, tmp_path / "report.html").html.read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=http" not in page and "<b>check</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;img src=http://evil.example" in page
    assert "&lt;i&gt;odd&lt;/i&gt;" in page and "&lt;b&gt;check&lt;/b&gt;" in page
    assert external_references(page) == []  # the <img> in the error message is text, not a tag
    assert [tag for tag, _ in Tags(page).tags].count("img") == len(embedded_pngs(page))
    # the stale adjusted unit is counted, and makes the verdict incomplete
    assert "Stale adjusted units" in page and "1 minute adjusted units" in page
    assert "retry --stale" in page and "1 stale adjusted units" in page


def test_empty_ledger_says_so(tmp_path):
    with Ledger(tmp_path / "empty.db") as ledger:
        files = write_report(ledger, tmp_path / "empty.html")
    page = files.html.read_text(encoding="utf-8")
    assert "no units yet" in page and "polyledger plan" in page
    assert "COMPLETE:" not in page and "INCOMPLETE" not in page
    data = files.coverage_png.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert mpimg.imread(io.BytesIO(data), format="png").shape[0] > 50


def test_no_quality_check_yet(tmp_path):
    with Ledger(tmp_path / "ledger.db", clock=FakeClock()) as ledger:
        plan(ledger, ["AAPL"], "day", D(2023, 1, 1), D(2024, 12, 31))
        for unit in ledger.claim("w", 60, limit=2):
            ledger.settle_empty(unit, False, AttemptRecord())
        page = write_report(ledger, tmp_path / "report.html").html.read_text(encoding="utf-8")
        assert audit(ledger).complete
    assert "no quality check run yet" in page
    assert "COMPLETE: every unit is settled" in page and "INCOMPLETE" not in page
    assert "No failed units." in page and "No bars stored yet." in page
    assert "Stale adjusted units" not in page


def test_days_the_plan_record_spans_but_no_unit_covers_make_the_page_incomplete(tmp_path):
    """As `audit`: a plan of January then one of March records January to March; February
    in no unit is no COMPLETE page."""
    with Ledger(tmp_path / "ledger.db", clock=FakeClock()) as ledger:
        for start, end in ((D(2024, 1, 1), D(2024, 1, 31)), (D(2024, 3, 1), D(2024, 3, 31))):
            plan(ledger, ["AAPL"], "minute", start, end)
            ledger.remember_plan("minute", "/u.csv", start, end)
        for unit in ledger.claim("w", 60, limit=2):
            ledger.settle_empty(unit, False, AttemptRecord())
        page = write_report(ledger, tmp_path / "report.html").html.read_text(encoding="utf-8")
        assert not audit(ledger).complete
    assert "INCOMPLETE: 20 trading days inside the planned range in no unit" in page
    assert "COMPLETE: every unit is settled" not in page


def settle_all_done(ledger: Ledger) -> None:
    """Every pending unit `done` with a (nominal) file: for ledger-only checks."""
    for unit in ledger.claim("w", 60, limit=1000):
        stored = StoredFile(f"minute/{unit.ticker}/{unit.period_start}.parquet", 100, "x", 1)
        ledger.settle_done(unit, stored, True, AttemptRecord(requests=1, bars=100))


def test_the_report_heatmap_does_not_paint_a_year_with_unplanned_months_fully_settled(work):
    """commands.md (report): "a coverage heatmap (tickers x years ...) with failed and
    unfetched cells marked". Plan January-March then October-December of one universe:
    audit reports April-September as `unplanned` (exit 1), yet the heatmap's AAPL/2024
    cell is 100% settled, the same as a whole year: the cell's share is settled units
    over *planned* units (polyledger/output/report/queries.py:137-147, `_cells`;
    charts.py:66), so months no unit holds are invisible on the page researchers look
    at (only a total of days is printed elsewhere)."""
    from polyledger.output.report.queries import coverage_grids, dataset_summaries, period_states

    write_universe(work / "u.csv", ["AAPL"])
    for start, end in (("2024-01-01", "2024-03-31"), ("2024-10-01", "2024-12-31")):
        assert run_cli("plan", "--universe", "u.csv", "--from", start, "--to", end).code == 0
    with Ledger(work / "ledger.db") as opened:
        settle_all_done(opened)
        assert audit(opened).exit_code == 1  # April-September: unplanned
        counts = period_states(opened)
        (grid,) = coverage_grids(opened, dataset_summaries(opened, counts), counts)
    cell = grid.cells["AAPL", "2024"]
    assert (cell.settled, cell.units) == (6, 12), f"AAPL 2024 painted {cell.settled}/{cell.units} settled"
