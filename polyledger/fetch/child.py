"""One process of `run --processes N` (`python -m polyledger.fetch.child`): an ordinary
`Run` whose configuration arrives as the first line on stdin, whose counters and log
records leave as JSON lines on stdout, and which stops when told (`stop`, `quit`) or when
its parent vanishes (stdin closes). See `polyledger.fetch.processes`."""

from __future__ import annotations

import _thread
import datetime as dt
import json
import logging
import os
import sys
import threading
from typing import IO

from polyledger import signals
from polyledger.errors import InputError, PolyledgerError
from polyledger.fetch.processes import QUIT, STOP, child_flat_config, snapshot
from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import Ledger
from polyledger.secrets import RedactingFilter, api_key_from_env, redact
from polyledger.storage import BarStore


class Channel:
    """JSON lines to the parent, one whole line at a time whatever thread writes."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.broken = threading.Event()

    def send(self, message: dict) -> None:
        line = json.dumps(message, default=str) + "\n"
        with self.lock:
            if self.broken.is_set():
                return
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):  # the parent is gone
                self.broken.set()


class ToParent(logging.Handler):
    """Log records go to the parent (already redacted), which writes the log file and
    the console: one writer for each, however many processes."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        fields = {
            "name": record.name,
            "levelno": record.levelno,
            "levelname": record.levelname,
            "msg": record.getMessage(),
            "created": record.created,
            "exc_text": record.exc_text,
            "threadName": record.threadName,
            "process": record.process,
        }
        self.channel.send({"type": "log", "record": fields})


def _protocol_stream() -> IO[str]:
    """The real stdout, kept for the messages; fd 1 then points at stderr, so a stray
    print (ours or a library's) can never break a message line."""
    stream = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def _listen(job: Run, channel: Channel) -> None:
    """The parent's commands. `stop` asks for a graceful stop, `quit` is a second signal,
    and the end of stdin (the parent died) a stop: no child outlives its run."""
    for line in sys.stdin:
        command = line.strip()
        if command == STOP:
            job.request_stop()
        elif command == QUIT:
            if job.stop.is_set():
                _thread.interrupt_main()  # as a second Ctrl-C: the SIGINT handler runs
            job.request_stop()
    job.request_stop()
    channel.broken.set()


def _tick(job: Run, channel: Channel):  # type: ignore[no-untyped-def]
    def tick(stats) -> None:  # type: ignore[no-untyped-def]
        channel.send(
            snapshot(
                stats,
                requests_sent=job.client.requests_sent,
                throttled=job.limiter.throttled,
                request_errors=job.client.errors_by_class,
                stopping=job.stop.is_set(),
            )
        )

    return tick


def main() -> int:
    channel = Channel(_protocol_stream())
    config = json.loads(sys.stdin.readline())
    root = logging.getLogger()
    root.handlers[:] = [ToParent(channel)]
    root.setLevel(config.get("log_level", logging.INFO))
    api_key = api_key_from_env() or ""  # the parent checked it is set; never sent down the pipe
    options = dict(config["options"])
    options["datasets"] = tuple(options["datasets"]) if options["datasets"] else None
    options["timeout"] = tuple(options["timeout"])
    if options.get("window"):
        options["window"] = tuple(dt.date.fromisoformat(day) for day in options["window"])
    try:
        options["flatfiles"] = child_flat_config(options.get("flatfiles"))
        with Ledger(config["ledger"], create=False) as ledger:
            job = Run(
                ledger,
                BarStore(config["data"]),
                api_key=api_key,
                base_url=config["base_url"],
                options=RunOptions(**options),
                run_id=config["run_id"],
            )
            threading.Thread(
                target=_listen, args=(job, channel), name="polyledger-parent", daemon=True
            ).start()
            tick = _tick(job, channel)
            with signals.handling(signals.graceful_stop(job.request_stop, job.stop.is_set)):
                report = job.execute(on_tick=tick)
            tick(report.stats)
            channel.send(
                {
                    "type": "end",
                    "outcome": report.outcome,
                    "message": report.message,
                    "stats": snapshot(
                        report.stats,
                        requests_sent=report.requests_sent,
                        throttled=report.throttled,
                        request_errors=report.request_errors,
                        stopping=job.stop.is_set(),
                    ),
                }
            )
            return 0
    except InputError as exc:
        channel.send({"type": "error", "kind": "input", "message": redact(str(exc))})
        return 2
    except PolyledgerError as exc:
        channel.send({"type": "error", "kind": "fatal", "message": redact(str(exc))})
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the ledger or storage failed: one line for the parent
        channel.send({"type": "error", "kind": "fatal", "message": redact(f"{type(exc).__name__}: {exc}")})
        return 1


if __name__ == "__main__":
    sys.exit(main())
