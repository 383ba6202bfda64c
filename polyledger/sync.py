"""`polyledger sync`, the nightly command: what the ledger remembers of `universe` and
`plan` (`ledger.sync_memory`), repeated through the last completed trading session.

1. every remembered universe a plan reads is built again with its filters, as of that
   session (new listings and delistings, point in time);
2. every remembered plan is planned again through that session (a delisted ticker's
   window ends, so it gets no new period); bar units holding a session of the last 40
   days, before that one, read before the session after it ended, are read again (late
   corrections, whatever nights were skipped: `queue_rereads`); splits and dividends
   announced, corrected or withdrawn since their units were fetched queue those units
   again (`sync_refs`); a listing of them that fails is said in one line and the night
   goes on without it;
3. one run, with the options the last `run` used unless overridden;
4. the audit, whose code is the sync's (`exit_code`), or 1 if a listing failed.

All of it under the ledger's sync lock (`sync_lock`): a second sync exits with
EXIT_LOCKED and says who holds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from polyledger import datasets, signals
from polyledger.checks.audit import audit
from polyledger.datasets.flat_days import ROUTES
from polyledger.datasets.reference import plan_reference
from polyledger.errors import FetchError, InputError, one_line, some_of
from polyledger.fetch.runner import Run, RunOptions, RunReport, check_data_folder
from polyledger.ledger import Ledger
from polyledger.ledger.resets import Reread
from polyledger.ledger.sync_memory import RememberedPlan, RememberedUniverse
from polyledger.output.progress import RunDisplay, print_summary
from polyledger.output.render import print_audit
from polyledger.periods import ET
from polyledger.plan import contradiction_text, plan, plan_days
from polyledger.storage import BarStore
from polyledger.sync_lock import SyncLock
from polyledger.sync_refs import REFRESHED, covered, refresh
from polyledger.trading_days import is_trading_day, trading_days
from polyledger.universe import read_members, read_universe
from polyledger.universe_build import build_universe

EXIT_LOCKED = 4  # another sync holds the lock: nothing was done, try later
RUN_KEY = "sync.run"  # settings: the options of the last `run`, as JSON
# minute bars cover the extended session, to 20:00 US/Eastern; the API publishes a
# session's last bars shortly after: a session counts as completed an hour later
SESSION_END = dt.time(20, 0)
PUBLICATION_DELAY = dt.timedelta(hours=1)
# how far back sync looks for sessions a unit was read too soon after (`queue_rereads`):
# over a month of nights skipped, in one UPDATE of at most ~28 sessions' tests
REREAD_LOOKBACK = dt.timedelta(days=40)
# what a universe's build fetches (its own run, before the plans)
UNIVERSE_DATASETS = ("details", "ticker_events")
# what `run` remembers for `sync`; the rest (--dataset, --max-units, --log-file) is per run
REMEMBERED = (
    "workers",
    "rate",
    "base_url",
    "data",
    "lease_seconds",
    "max_attempts",
    "give_up_after",
    "timeout",
)


def last_completed_session(now: dt.datetime, delay: dt.timedelta = PUBLICATION_DELAY) -> dt.date:
    """The latest NYSE trading day whose extended session ended at least `delay` before
    `now` (an aware datetime, any zone)."""
    local = now.astimezone(ET)
    day = local.date()
    if local < dt.datetime.combine(day, SESSION_END, tzinfo=ET) + delay:
        day -= dt.timedelta(days=1)
    while not is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def previous_session(session: dt.date) -> dt.date:
    """The NYSE trading day before `session`."""
    day = session - dt.timedelta(days=1)
    while not is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def reread_deadlines(
    session: dt.date, lookback: dt.timedelta = REREAD_LOOKBACK
) -> dict[dt.date, dt.datetime]:
    """Each session S from `lookback` before `session` through the one before it, with the
    end of the session after S: a unit holding S fetched before then was never read a
    full session after S, so it may lack S's late corrections."""
    days = trading_days(session - lookback, previous_session(session))
    following = [*days[1:], session] if days else []  # consecutive: the last one's next is tonight's
    ends = [dt.datetime.combine(after, SESSION_END, tzinfo=ET) for after in following]
    return dict(zip(days, ends, strict=True))


def queue_rereads(ledger: Ledger, dataset: str, session: dt.date) -> Reread:
    """Queue again the settled units of `dataset` read too soon after one of their sessions
    (`reread_deadlines`). The API corrects a session's bars after the fact; asking only for
    the session before tonight's missed every session whose next night's sync was skipped.
    A unit read again tonight is past every one of these deadlines (they are at most
    tonight's session's end): it is re-read at most once for each of its sessions."""
    return ledger.reset_read_too_soon(dataset, reread_deadlines(session))


def reread_text(sessions: tuple[dt.date, ...]) -> str:
    """The sessions re-read, for sync's line (which separates its parts by commas)."""
    if len(sessions) <= 2:
        return " and ".join(day.isoformat() for day in sessions)
    return f"{len(sessions)} sessions from {sessions[0]} to {sessions[-1]}"


def remember_run(ledger: Ledger, **options: object) -> None:
    """What `run` records for `sync` (a folder as an absolute path: cron starts elsewhere)."""
    data = str(options.get("data", ""))
    if data and "://" not in data:
        options["data"] = str(Path(data).resolve())
    ledger.set_setting(RUN_KEY, json.dumps({k: options[k] for k in REMEMBERED if k in options}))


@dataclass
class SyncSettings:
    """What the command line gives `sync`; None: the remembered value, else the default."""

    api_key: str
    now: dt.datetime
    base_url: str | None = None
    data: str | None = None
    workers: int | None = None
    rate: float | None = None


def _run_options(ledger: Ledger, settings: SyncSettings) -> tuple[RunOptions, str | None, str | None]:
    """The run's options, its base URL and data folder: the command line's, else the last
    `run`'s, else the defaults; adjusted as the ledger already is."""
    remembered = json.loads(ledger.setting(RUN_KEY) or "{}")
    given = {"workers": settings.workers, "rate": settings.rate}
    chosen = {k: v for k, v in remembered.items() if k in REMEMBERED}
    chosen.update({k: v for k, v in given.items() if v is not None})
    options = RunOptions(adjusted=(ledger.setting("adjusted") or "true") == "true")
    for name in ("workers", "rate", "lease_seconds", "max_attempts", "give_up_after"):
        if name in chosen:
            setattr(options, name, type(getattr(options, name))(chosen[name]))
    if "timeout" in chosen:
        options.timeout = tuple(chosen["timeout"])  # type: ignore[assignment]
    return options, settings.base_url or chosen.get("base_url"), settings.data or chosen.get("data")


def _sources(plans: list[RememberedPlan], builds: list[RememberedUniverse]) -> list[RememberedUniverse]:
    """The remembered universe builds some plan reads (its CSV or the Parquet copy)."""
    read = {p.universe for p in plans if p.universe}
    return [b for b in builds if b.out in read or str(Path(b.out).with_suffix(".parquet")) in read]


@contextlib.contextmanager
def _stoppable(job: Run | None) -> Iterator[None]:
    """Ctrl-C or SIGTERM: a job stops gracefully (a second signal quits at once); between
    jobs the sync quits at once. The lock is released either way (`SyncLock.__exit__`)."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    handler = interrupt if job is None else signals.graceful_stop(job.request_stop, job.stop.is_set)
    with signals.handling(handler):  # type: ignore[arg-type]
        yield


def _some(tickers: list[str], shown: int = 10) -> str:
    return ", ".join(tickers[:shown]) + (" ..." if len(tickers) > shown else "")


def _unchecked_text(ledger: Ledger, dataset: str, exc: FetchError) -> str:
    """What a failed refresh leaves unknown, for the plan's line."""
    tickers = covered(ledger, dataset)
    return (
        f"{dataset} announced or withdrawn since fetched not checked ({one_line(exc)}): "
        f"adjusted prices of {len(tickers)} tickers ({_some(tickers)}) may be on an old basis, "
        "unseen by audit; the next sync checks again (exit 1)"
    )


class Sync:
    """One sync of the ledger at `location`; `execute()` returns the exit code."""

    def __init__(
        self,
        location: str,
        settings: SyncSettings,
        console: Console,
        base_url: str,
        check_base_url: Callable[[str], str] = lambda url: url,
    ) -> None:
        self.location = location
        self.settings = settings
        self.console = console
        self.default_base_url = base_url  # when neither given nor remembered
        self.check_base_url = check_base_url

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def execute(self) -> int:
        with Ledger(self.location, create=False) as ledger:
            plans = ledger.remembered_plans()
            if not plans:
                raise InputError(
                    "this ledger remembers no plan: run `polyledger plan` first (sync repeats every plan)"
                )
            options, base_url, data = _run_options(ledger, self.settings)
            url = self.check_base_url(base_url or self.default_base_url)
            store = BarStore(data or "data")
            store.ensure_writable()
            # the folder checked before anything is planned: a refused sync changes nothing
            check_data_folder(ledger, store, options)
            session = last_completed_session(self.settings.now)
            with _stoppable(None), SyncLock(ledger) as lock:
                if lock.took_over:
                    self.say(lock.took_over)
                self.say(f"sync through {session}, the last completed session (US/Eastern), into {store}")
                return self._phases(ledger, store, url, options, plans, session)

    def _phases(
        self,
        ledger: Ledger,
        store: BarStore,
        url: str,
        options: RunOptions,
        plans: list[RememberedPlan],
        session: dt.date,
    ) -> int:
        for build in _sources(plans, ledger.remembered_universes()):
            code = self._universe(ledger, store, url, options, build, session)
            if code is not None:
                return code
        # the datasets sync plans, only: a forgotten one's pending units wait for a `run`
        synced = tuple(dict.fromkeys(p.dataset for p in plans if p.dataset in datasets.names()))
        options = dataclasses.replace(options, datasets=synced)
        job = Run(ledger, store, api_key=self.settings.api_key, base_url=url, options=options)
        # a refresh that failed (said in its line) costs the night's exit code, not its bars
        unchecked: list[str] = []
        for remembered in plans:
            failed = self._plan(ledger, store, job, remembered, session)
            if failed:
                unchecked.append(failed)
        report = self._run(job)
        checked = audit(ledger)  # of what sync fetches: a forgotten dataset's state is not its
        # with the universe's datasets, and the day files a synced dataset's flat route reads
        kept = set(synced) | set(UNIVERSE_DATASETS) | {ROUTES[d] for d in synced if d in ROUTES}
        checked = dataclasses.replace(checked, datasets=[d for d in checked.datasets if d.dataset in kept])
        print_audit(self.console, checked)
        if report.outcome == "interrupted":
            return 130
        if report.outcome != "finished":
            return 1  # the run stopped itself (bad key, disk full, an API that stayed down)
        if unchecked:
            # said again last: a log's tail shows the audit's "COMPLETE" just above the exit 1
            self.say(
                f"exit 1: the {' and '.join(unchecked)} announced since were not checked "
                "(see the plan line above)"
            )
            return 1  # the audit cannot see what a listing not read would have made stale
        return checked.exit_code

    def _universe(
        self,
        ledger: Ledger,
        store: BarStore,
        url: str,
        options: RunOptions,
        build: RememberedUniverse,
        session: dt.date,
    ) -> int | None:
        """Build a remembered universe again as of `session`; an exit code if it was not."""
        # the night's options (lease, attempts, timeouts, give-up: a flaky network's settings
        # hold for the universe's requests too), its own datasets
        details = dataclasses.replace(options, datasets=UNIVERSE_DATASETS, flatfiles=None, window=None)
        job = Run(ledger, store, api_key=self.settings.api_key, base_url=url, options=details)
        with RunDisplay(self.console, job.client) as display, _stoppable(job):
            report = build_universe(
                job,
                types=list(build.types),
                exchanges=list(build.exchanges),
                cap_max=build.cap_max,
                as_of=session,
                out=Path(build.out),
                on_tick=display.tick,
            )
        if report.outcome != "finished":
            self.say(f"universe {build.out} not rebuilt: {report.outcome}; nothing planned or run")
            return 130 if report.outcome == "interrupted" else 1
        self.say(f"universe {build.out} as of {session}: {report.funnel_text()}")
        for label, lines in report.event_lines():
            if lines:  # `polyledger universe` prints each one
                plural = "s" if len(lines) > 1 else ""
                self.say(f"universe {build.out}: {len(lines)} {label}{plural}, e.g. {lines[0]}")
        return None

    def _plan(
        self, ledger: Ledger, store: BarStore, job: Run, remembered: RememberedPlan, session: dt.date
    ) -> str | None:
        """Plan one remembered dataset through `session`, said in one line; the dataset's
        name if its refresh failed (the rest of the night goes on)."""
        name, source = remembered.dataset, remembered.universe
        try:
            spec = datasets.get(name)
        except InputError:
            self.say(f"{name}: not a dataset this polyledger knows; skipped")
            return None
        if not spec.needs_range:
            tickers = read_universe(Path(source))
            added = plan_reference(ledger, tickers, name, session)
            line = f"planned {name}: {added} new tickers"
            failed = None
            if name in REFRESHED:
                try:
                    queued = refresh(ledger, store, job.client, name, session)
                except FetchError as exc:  # the listing, after its retries; a fatal error stops all
                    failed = name
                    line += "; " + _unchecked_text(ledger, name, exc)
                else:
                    line += f"; {len(queued.changed)} queued again for records announced since fetched" + (
                        f" ({_some(queued.changed)})" if queued.changed else ""
                    )
                    if queued.unreadable:
                        line += (
                            f"; {len(queued.unreadable)} whose file could not be read queued again to be "
                            f"fetched whole ({_some(queued.unreadable)})"
                        )
            self.say(line)
            return failed
        first = remembered.first_day
        if first is None or first > session:
            return None
        # recorded before planning: a sync stopped midway leaves audit judging every day it
        # may have planned, and this plan's change of listings is owed over them too
        ledger.extend_planned(name, source, session)
        if spec.needs_universe:
            result = plan(ledger, read_members(Path(source)), name, first, session, source=source)
        else:
            result = plan_days(ledger, name, first, session)
        reread = Reread(0, ())
        if name not in datasets.FLAT_FILE_DATASETS:  # built from day files, never fetched from the API
            # after planning: a clipped unit just widened is pending, read whole anyway; what
            # is left is a unit no longer widened (a month's last day, a day unit, a delisting)
            reread = queue_rereads(ledger, name, session)
        self.say(
            f"planned {name} {first} to {session}: {result.added} new units, {result.widened} widened"
            # record_listings queues units of every bar dataset, not only this one's
            + (
                f", {result.relisted} units of its symbols queued again in any bar dataset (listings of "
                f"{some_of(result.changed)} changed)"
                if result.relisted
                else ""
            )
            + (f", {result.backfilled} more after {session} (listings changed)" if result.backfilled else "")
            + "".join(
                f", {other.added} {other.dataset} units planned, {other.widened} widened (listings changed)"
                for other in result.elsewhere
            )
            + (f"; {contradiction_text(result.contradicted)}" if result.contradicted else "")
            # held by another run while planning: widened by the next sync, not by this one
            + (f", {result.busy} being fetched by another run (widened next time)" if result.busy else "")
            + (
                f", {reread.units} queued again to re-read {reread_text(reread.sessions)}"
                if reread.units
                else ""
            )
        )
        return None

    def _run(self, job: Run) -> RunReport:
        with RunDisplay(self.console, job.client) as display, _stoppable(job):
            report = job.execute(on_tick=display.tick)
        print_summary(self.console, report)
        return report
