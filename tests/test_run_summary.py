"""What a run says when it ends or stops: the next step for what it left, and no talk of
a second Ctrl-C when nobody pressed one (found by a new user's review: a run stopped by a
refused key said "Ctrl-C again" and "retry requeues failed units" with nothing failed)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("left", "says", "never"),
    [
        ({"pending": 213}, "`polyledger run` again fetches the pending ones", "retry"),
        ({"failed": 2}, "`polyledger retry` requeues failed units", "run` again"),
        (
            {"failed": 2, "pending": 1, "running": 1},
            "`--class NAME` the others; `polyledger run` again",
            "x" * 9,
        ),
    ],
)
def test_what_a_run_left_comes_with_the_step_that_settles_it(left, says, never):
    from polyledger.output.progress import unsettled_text

    text = unsettled_text(left)
    assert text.startswith(", ".join(f"{count:,} {state}" for state, count in sorted(left.items())))
    assert "see `polyledger audit`" in text and says in text and never not in text


def test_a_run_stopped_by_a_refused_key_never_talks_of_a_second_ctrl_c(work, server, monkeypatch):
    from support import run_cli, write_universe

    write_universe(work / "u.csv", ["AAPL"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31").code == 0
    monkeypatch.setenv("POLYGON_API_KEY", "not-a-key-of-the-stand-in")
    refused = run_cli("run", "--base-url", server.url)
    assert refused.code == 1
    said = refused.out + refused.err
    assert "again to quit" not in said and "retry` requeues failed units" not in said, said
