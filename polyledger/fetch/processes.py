"""One `run` in several worker processes (`run --processes N`): every core busy.

The parent starts N children (`python -m polyledger.fetch.child`, a fresh interpreter: the
same on Windows, macOS and Linux, nothing forked), each an ordinary in-process `Run` with
its share of the workers and of `--rate`, on the same ledger (claims are atomic across
processes already). The parent only watches: it sums what the children report into one
progress display and one summary, forwards a stop request, and notices a child that dies.

- Progress: each child sends its counters (cumulative, so a lost message costs nothing) as
  JSON lines on its stdout; the parent's totals are their sum.
- Stop: the first Ctrl-C / SIGTERM to the parent sends `stop` to every child (no new
  units; units in flight finish or go back to pending), a second sends `quit` (a second
  signal to each child). A child that stops itself (a bad key, a full disk) stops the
  others through the parent. A child whose parent vanished (its stdin closes) stops too.
- Leases and the runs table: each child is a run of its own with its own lease owner and
  heartbeat, named `<id>-<i>` after the parent's `<id>`; a child killed -9 is closed as
  `lost` by whoever takes its units back, exactly as a killed single-process run.
- The rate limit: each child's ceiling is `--rate / N`; the children share the key as any
  runs on one ledger do (`polygon/keyshare.py`: one grid of slots, one rate found by the
  first of them from all their 429s).
- Logs: children send their log records to the parent, which alone writes `--log-file`
  and the console.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from polyledger.errors import InputError, PolyledgerError
from polyledger.fetch.runner import RunOptions, RunReport, RunStats, units_to_do, unsettled_in_scope
from polyledger.ledger import Ledger, UnitState

log = logging.getLogger("polyledger.run")

CHILD_MODULE = "polyledger.fetch.child"
STOP, QUIT = "stop", "quit"


def flat_settings(config: Any) -> dict[str, Any]:
    """A `FlatFilesConfig` without its keys, for a child (`child_flat_config` rebuilds it)."""
    return {
        "endpoint": config.endpoint,
        "bucket": config.bucket,
        "batch": config.batch,
        "workdir": config.workdir,
    }


def child_flat_config(settings: dict[str, Any] | None) -> Any:
    """The parent's `FlatFilesConfig` again: its settings, the keys from the environment."""
    if settings is None:
        return None
    from dataclasses import replace

    from polyledger.flatfiles.source import FlatFilesConfig

    return replace(FlatFilesConfig.from_env(), **settings)


def processes_wanted(value: str, workers: int) -> int:
    """`--processes`: a number, or `auto` (one per core, never more than the workers)."""
    if value.strip().lower() == "auto":
        return max(1, min(os.cpu_count() or 1, workers))
    try:
        count = int(value)
    except ValueError:
        raise InputError(f"--processes must be a number or auto, not {value!r}") from None
    if count < 1:
        raise InputError("--processes must be at least 1")
    if count > workers:
        raise InputError(f"--processes {count} needs at least as many --workers (got {workers})")
    return count


def share(total: int, parts: int, index: int) -> int:
    """Part `index` of `total` split into `parts` as evenly as whole numbers allow."""
    return total // parts + (1 if index < total % parts else 0)


# --- what a child reports (shared with polyledger.fetch.child) ----------------------


def snapshot(
    stats: RunStats, *, requests_sent: int, throttled: int, request_errors: dict, stopping: bool
) -> dict:
    """A child's counters as a JSON-able message."""
    return {
        "type": "tick",
        "outcomes": {str(state): count for state, count in stats.outcomes.items()},
        "errors": dict(stats.errors),
        "bars": stats.bars,
        "requests": stats.requests,
        "requests_sent": requests_sent,
        "throttled": throttled,
        "request_errors": dict(request_errors),
        "stopping": stopping,
    }


@dataclass
class Child:
    """The parent's view of one child process."""

    index: int
    run_id: str
    process: subprocess.Popen
    last: dict = field(default_factory=dict)  # its latest counters
    ended: dict | None = None  # its final report, if it sent one
    error: dict | None = None  # an error before or instead of its run
    exit_code: int | None = None
    reader: threading.Thread = field(default_factory=threading.Thread)  # reads its reports

    def send(self, command: str) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        except (OSError, ValueError):  # it has exited already: nothing to tell
            pass

    def describe_loss(self) -> str:
        code = self.exit_code
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return (
            f"process {self.index} (run {self.run_id}, pid {self.process.pid}) ended without finishing "
            f"({how}); its units go back to pending when their leases expire"
        )


@dataclass
class ProcessesReport(RunReport):
    processes: list[str] = field(default_factory=list)  # the children's run ids
    lost: list[str] = field(default_factory=list)  # one line per child that died

    @property
    def ok(self) -> bool:
        return super().ok and not self.lost


class ProcessRun:
    """`polyledger run --processes N`: build it, then `execute()` (blocking), like `Run`."""

    def __init__(
        self,
        ledger: Ledger,
        ledger_location: str,
        data: str,
        *,
        base_url: str,
        options: RunOptions,
        processes: int,
        log_level: int = logging.INFO,
    ) -> None:
        if processes < 2 or options.workers < processes:
            raise ValueError("a multi-process run needs at least 2 processes and a worker each")
        self.ledger = ledger
        self.ledger_location = ledger_location
        self.data = data
        self.base_url = base_url
        self.options = options
        self.count = processes
        self.log_level = log_level
        self.run_id = uuid.uuid4().hex[:12]
        self.stop = threading.Event()
        self.stats = RunStats()
        self.children: list[Child] = []
        self._asked = False  # a signal (or the caller) asked to stop
        self._quitting = False
        self._inbox: queue.Queue[tuple[int, dict | None]] = queue.Queue()

    # what RunDisplay reads of a client: the sums over the children
    @property
    def requests_sent(self) -> int:
        return sum(child.last.get("requests_sent", 0) for child in self.children)

    @property
    def errors_by_class(self) -> dict[str, int]:
        total: Counter = Counter()
        for child in self.children:
            total.update(child.last.get("request_errors", {}))
        return dict(total)

    def request_stop(self) -> None:
        """Ask every child to stop gracefully; asked again, to quit at once."""
        if self.stop.is_set() and self._asked:
            self._quit()
            return
        self._asked = True
        self._stop_children()

    def _stop_children(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            for child in self.children:
                child.send(STOP)

    def _quit(self) -> None:
        self._quitting = True
        for child in self.children:
            child.send(QUIT)

    # --- lifecycle ---------------------------------------------------------------

    def execute(self, on_tick=None, tick_seconds: float = 0.5) -> ProcessesReport:  # type: ignore[no-untyped-def]
        self.stats.total_units = self._units_in_scope()
        for index in range(self.count):
            self.children.append(self._start(index))
        try:
            self._supervise(on_tick, tick_seconds)
        finally:
            for child in self.children:  # never leave one behind, whatever happened here
                if child.process.poll() is None:
                    child.process.kill()
                    child.process.wait()
        return self._report(on_tick)

    def _start(self, index: int) -> Child:
        opts = self.options
        run_id = f"{self.run_id}-{index + 1}"
        config = {
            "run_id": run_id,
            "ledger": self.ledger_location,
            "data": self.data,
            "base_url": self.base_url,
            "log_level": self.log_level,
            "options": {
                "workers": share(opts.workers, self.count, index),
                "rate": opts.rate / self.count,
                "adjusted": opts.adjusted,
                "lease_seconds": opts.lease_seconds,
                "datasets": list(opts.datasets) if opts.datasets else None,
                "max_units": share(opts.max_units, self.count, index) if opts.max_units else None,
                "max_attempts": opts.max_attempts,
                "give_up_after": opts.give_up_after,
                "timeout": list(opts.timeout),
                # where the flat files are, never the keys: a child reads those from the
                # environment it inherits, as it does the API key
                "flatfiles": None if opts.flatfiles is None else flat_settings(opts.flatfiles),
                "window": None if opts.window is None else [day.isoformat() for day in opts.window],
            },
        }
        process = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_env(),
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        child = Child(index + 1, run_id, process)
        # the configuration goes down the pipe, never on a command line (a ledger URL may
        # hold a password); the key comes from the environment the child inherits
        child.send(json.dumps(config))
        if self.stop.is_set():
            child.send(STOP)
        child.reader = threading.Thread(
            target=_read,
            args=(index, process.stdout, self._inbox),
            name=f"polyledger-child-{index + 1}",
            daemon=True,
        )
        child.reader.start()
        return child

    def _supervise(self, on_tick, tick_seconds: float) -> None:  # type: ignore[no-untyped-def]
        next_tick = time.monotonic()
        # until every child's pipe is read to its end (a reader ends when its child exits)
        while any(child.reader.is_alive() for child in self.children) or not self._inbox.empty():
            try:
                self._receive(tick_seconds)
                if on_tick and time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + tick_seconds
                    self._sum()
                    self.stats.recount(self._units_in_scope, self.options.max_units)
                    on_tick(self.stats)
            except KeyboardInterrupt:  # a second signal (graceful_stop raises it): pass it on
                self._quit()
        for child in self.children:
            if child.exit_code is None:
                self._ended(child)

    def _receive(self, wait: float) -> None:
        try:
            index, message = self._inbox.get(timeout=wait)
        except queue.Empty:
            return
        if message is None:
            self._ended(self.children[index])
        else:
            self._received(self.children[index], message)

    def _received(self, child: Child, message: dict) -> None:
        kind = message.get("type")
        if kind == "tick":
            child.last = message
            if message.get("stopping"):
                self._stop_children()  # one stops (a bad key, a full disk, a signal): all stop
        elif kind == "end":
            child.ended = message
            child.last = message["stats"]
        elif kind == "error":
            child.error = message
            self._stop_children()
        elif kind == "log":
            record = logging.makeLogRecord(message["record"])
            logging.getLogger(record.name).handle(record)

    def _ended(self, child: Child) -> None:
        if child.exit_code is not None:
            return
        child.exit_code = child.process.wait()
        if child.ended is None and child.error is None and not self._quitting:
            log.warning("%s", child.describe_loss())

    # --- the sums ----------------------------------------------------------------

    def _sum(self) -> None:
        outcomes: Counter = Counter()
        errors: Counter = Counter()
        bars = requests = 0
        for child in self.children:
            outcomes.update(child.last.get("outcomes", {}))
            errors.update(child.last.get("errors", {}))
            bars += child.last.get("bars", 0)
            requests += child.last.get("requests", 0)
        stats = self.stats
        with stats._lock:
            stats.outcomes = Counter({_state(name): count for name, count in outcomes.items()})
            stats.errors = errors
            stats.bars = bars
            stats.requests = requests

    def _report(self, on_tick) -> ProcessesReport:  # type: ignore[no-untyped-def]
        self._sum()
        errors = [child.error for child in self.children if child.error]
        if errors and not any(child.ended for child in self.children):
            first = errors[0]
            raise (InputError if first.get("kind") == "input" else PolyledgerError)(first["message"])
        ends = [child.ended for child in self.children if child.ended]
        stopped = [end for end in ends if end["outcome"] == "stopped"]
        lost = [
            child.describe_loss() for child in self.children if child.ended is None and child.error is None
        ]
        if stopped or errors:
            outcome = "stopped"
        elif self._asked or any(end["outcome"] == "interrupted" for end in ends) or self._quitting:
            outcome = "interrupted"
        else:
            outcome = "finished"
        message = next((end["message"] for end in stopped if end.get("message")), "")
        if not message and errors:
            message = errors[0]["message"]
        report = ProcessesReport(
            run_id=self.run_id,
            outcome=outcome,
            stats=self.stats,
            message=message,
            requests_sent=self.requests_sent,
            throttled=sum(child.last.get("throttled", 0) for child in self.children),
            request_errors=self.errors_by_class,
            unsettled=self._unsettled(),
            processes=[child.run_id for child in self.children],
            lost=lost,
        )
        log.info(
            "run ended: run_id=%s outcome=%s units_settled=%d failed=%d requests=%d http_429=%d processes=%d",
            self.run_id,
            outcome,
            self.stats.settled,
            self.stats.outcomes[UnitState.FAILED],
            report.requests_sent,
            report.throttled,
            self.count,
        )
        if on_tick:
            on_tick(self.stats)
        return report

    def _units_in_scope(self) -> int:
        return units_to_do(self.ledger, self.options)

    def _unsettled(self) -> dict[str, int]:
        return unsettled_in_scope(self.ledger, self.options)


def _state(name: str) -> Any:
    try:
        return UnitState(name)
    except ValueError:  # released, requeued: outcomes that are not ledger states
        return name


def _read(index: int, stream: IO[str], inbox: queue.Queue) -> None:
    """One child's reports, line by line, into the parent's inbox; None at its end."""
    try:
        for line in stream:
            try:
                inbox.put((index, json.loads(line)))
            except ValueError:  # not ours (a library printing): never fatal
                continue
    finally:
        inbox.put((index, None))


def _child_env() -> dict[str, str]:
    """The parent's environment, with this very polyledger first on the path: a child runs
    the same code as its parent even beside another installed copy."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this polyledger
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONIOENCODING"] = "utf-8"
    return env
