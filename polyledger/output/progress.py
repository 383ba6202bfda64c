"""What a run shows while it works: a live rich display on a terminal, plain lines otherwise.

Only ASCII is printed, so a Windows cp1252 console can show all of it.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from polyledger.fetch.runner import RunReport, RunStats
from polyledger.polygon.client import PolygonClient


def _rate(stats: RunStats, requests: int) -> float:
    elapsed = max(time.monotonic() - stats.started, 1e-9)
    return requests / elapsed


def _classes(counts: dict[str, int], top: int = 4) -> str:
    if not counts:
        return "none"
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{name}={count}" for name, count in ranked)


def _errors(stats: RunStats) -> str:
    return _classes(dict(stats.errors))


def duration(seconds: float) -> str:
    """12:34:56, or 2d 04:06:40 past a day (a full history runs for days on a small plan)."""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {clock}" if days else clock


def status_line(stats: RunStats, requests: int, retried: dict[str, int]) -> str:
    elapsed = time.monotonic() - stats.started
    settled = stats.settled
    eta = ""
    if settled and stats.total_units > settled:
        remaining = elapsed / settled * (stats.total_units - settled)
        eta = f", ETA {duration(remaining)}"
    return (
        f"units {settled}/{stats.total_units} (done {stats.outcomes['done']}, "
        f"empty {stats.outcomes['empty_confirmed']}, failed {stats.outcomes['failed']}), "
        f"bars {stats.bars:,}, {_rate(stats, requests):.1f} req/s, failed by class: {_errors(stats)}, "
        f"request errors: {_classes(retried)}{eta}"
    )


class RunDisplay:
    """Context manager giving an `on_tick(stats)` callback for `Run.execute`."""

    def __init__(self, console: Console, client: PolygonClient, plain_every: float = 10.0) -> None:
        self.console = console
        self.client = client
        self.plain_every = plain_every
        self._last_plain = 0.0
        self._told_stopping = False
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> RunDisplay:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]units"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[detail]}"),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("run", total=None, detail="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def tick(self, stats: RunStats) -> None:
        if self.client.stop.is_set() and not self._told_stopping:
            self._told_stopping = True
            self.console.print(
                # a Ctrl-C, a SIGTERM or the run's own stop (a refused key, an API down): no "again"
                "stopping: finishing units in flight (Ctrl-C to quit at once)",
                highlight=False,
                markup=False,
            )
        requests = self.client.requests_sent
        retried = dict(self.client.errors_by_class)
        if self._progress is not None and self._task is not None:
            detail = (
                f"bars {stats.bars:,} | {_rate(stats, requests):.1f} req/s | "
                f"failed {stats.outcomes['failed']} ({_errors(stats)}) | request errors {_classes(retried)}"
            )
            self._progress.update(self._task, total=stats.total_units, completed=stats.settled, detail=detail)
            return
        now = time.monotonic()
        if now - self._last_plain >= self.plain_every:
            self._last_plain = now
            self.console.print(status_line(stats, requests, retried), highlight=False, markup=False)


def print_summary(console: Console, report: RunReport) -> None:
    stats = report.stats
    elapsed = time.monotonic() - stats.started
    console.print(
        f"run {report.run_id} {report.outcome} in {elapsed:.1f}s: "
        f"{stats.outcomes['done']} done, {stats.outcomes['empty_confirmed']} empty_confirmed, "
        f"{stats.outcomes['failed']} failed, {stats.outcomes['released']} given back; "
        f"{stats.bars:,} bars, {report.requests_sent} requests, {report.throttled} throttled (429)",
        highlight=False,
        markup=False,
    )
    if stats.errors:
        console.print(f"failed units by class: {_errors(stats)}", highlight=False, markup=False)
    if report.request_errors:
        console.print(
            f"request errors (retried or final): {_classes(report.request_errors, top=10)}",
            highlight=False,
            markup=False,
        )
    if report.message:
        console.print(f"stopped: {report.message}", highlight=False, markup=False)
    if report.unsettled:
        console.print(f"not complete yet: {unsettled_text(report.unsettled)}", highlight=False, markup=False)


def unsettled_text(unsettled: dict[str, int]) -> str:
    """What a run left unsettled, with what to do about each kind."""
    left = ", ".join(f"{count:,} {state}" for state, count in sorted(unsettled.items()))
    steps = ["see `polyledger audit`"]
    if unsettled.get("failed"):
        # plain retry requeues transient classes only: not_entitled, not_found need their name
        steps.append(
            "`polyledger retry` requeues failed units of transient classes, `--class NAME` the others"
        )
    if unsettled.get("pending") or unsettled.get("running"):
        steps.append("`polyledger run` again fetches the pending ones")
    return f"{left} ({'; '.join(steps)})"
