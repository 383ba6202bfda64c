"""Ctrl-C reaches `run` and `serve` whatever they inherited, and a command run in-process
leaves the process's signal handling (and so its later children's) exactly as it was.

Each scenario runs in a child whose SIGINT is ignored from the start, as a job started in
the background by a non-interactive shell, a scheduler or a CI runner has it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
from support import API_KEY, cli_command, python_env

pytestmark = pytest.mark.skipif(
    os.name != "posix", reason="POSIX signal inheritance; Windows cannot send SIGINT to a child"
)


def _ignore_sigint() -> None:  # preexec_fn: the child starts with SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _python(code: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=dict(python_env(), POLYGON_API_KEY=API_KEY),
        preexec_fn=_ignore_sigint,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# a child that reports how it found SIGINT when it started
_REPORT_CHILD = (
    "import subprocess, sys; "
    "probe = 'import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)'; "
    "print('child ignores SIGINT:', subprocess.run([sys.executable, '-c', probe], "
    "capture_output=True, text=True).stdout.strip())"
)


def test_serve_started_with_sigint_ignored_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        cli_command("serve", "--api-key", API_KEY, "--port", "0", "--tickers", "AAPL"),
        cwd=tmp_path,
        env=python_env(),
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint,
    )
    try:
        url = proc.stdout.readline().strip()  # printed once the server listens
        answer = requests.get(f"{url}/v3/reference/tickers/AAPL", params={"apiKey": API_KEY}, timeout=10)
        assert answer.status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_an_in_process_run_leaves_later_children_able_to_get_ctrl_c(tmp_path: Path) -> None:
    """The measured failure: after an in-process `run`, every later child of a parent that
    ignored SIGINT inherited "ignored" (the stale handler Python had recorded), so a `serve`
    started by it never stopped on Ctrl-C. Before the run, polars' import had caught SIGINT,
    so children started with the default; they must still, after it."""
    script = f"""
        import polars  # noqa: F401  (as the CLI does: it catches SIGINT in C)
        from polyledger.cli import main
        from polyledger.testing import Listing, StandInServer, SyntheticMarket
        {_REPORT_CHILD}
        market = SyntheticMarket([Listing("AAPL", bars_per_day=5)], seed=1)
        with StandInServer(market, api_keys=[{API_KEY!r}]) as server:
            open("u.csv", "w").write("ticker\\nAAPL\\n")
            assert main(["plan", "--universe", "u.csv", "--dataset", "day",
                         "--from", "2024-01-02", "--to", "2024-01-31"]) == 0
            assert main(["run", "--base-url", server.url, "--workers", "1"]) == 0
        {_REPORT_CHILD}
    """
    result = _python(script, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    reports = [line for line in result.stdout.splitlines() if line.startswith("child ignores SIGINT")]
    assert reports == ["child ignores SIGINT: False", "child ignores SIGINT: False"], result.stdout


def test_handling_routes_signals_even_when_ignored_and_restores_ignored_exactly(tmp_path: Path) -> None:
    """Inside the block the handler gets SIGINT although the process ignored it; after it,
    a process that really ignored SIGINT (nothing caught it in C) ignores it again, and so
    do its children: the parent's choice is kept, not overridden."""
    script = f"""
        import os, signal
        from polyledger import signals
        seen = []
        with signals.handling(lambda signum, frame: seen.append(signum)):
            os.kill(os.getpid(), signal.SIGINT)
        print("seen:", seen == [signal.SIGINT])
        os.kill(os.getpid(), signal.SIGINT)  # ignored again: the process goes on
        print("python record ignored:", signal.getsignal(signal.SIGINT) == signal.SIG_IGN)
        {_REPORT_CHILD}
    """
    result = _python(script, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        "seen: True",
        "python record ignored: True",
        "child ignores SIGINT: True",
    ]


def test_graceful_stop_asks_first_then_quits_on_the_second_signal() -> None:
    from polyledger.signals import graceful_stop

    asked: list[bool] = []
    handler = graceful_stop(lambda: asked.append(True), lambda: bool(asked))
    handler(signal.SIGINT, None)
    assert asked == [True]
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGINT, None)
    assert asked == [True]
