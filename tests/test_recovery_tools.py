"""The recovery tools where a review found them wanting (repair, retry --flagged, audit
--deep, quarantine, a restored ledger, a copied data folder): each test states the defect
it failed on."""

from __future__ import annotations

import datetime as dt
import errno
import json
import shutil
import sqlite3

import pytest
from support import API_KEY, ledger_states, run_cli, write_universe

from polyledger.storage import LocalStore
from polyledger.testing import Listing, StandInServer, SyntheticMarket

D = dt.date


def _plan(universe: str, first: str, last: str, *extra: str) -> int:
    """`polyledger plan --universe <universe> --from <first> --to <last> <extra>`'s exit code."""
    return run_cli("plan", "--universe", universe, "--from", first, "--to", last, *extra).code


def _flip_a_byte(path) -> None:  # type: ignore[no-untyped-def]
    content = bytearray(path.read_bytes())
    content[len(content) // 3] ^= 0xFF  # inside the data: the footer still reads (checksum_mismatch)
    path.write_bytes(bytes(content))


def _two_tickers_downloaded(work, market) -> list:  # type: ignore[no-untyped-def]
    write_universe(work / "u.csv", ["SIRI", "TINY"])
    assert _plan("u.csv", "2023-01-01", "2023-01-31") == 0
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url).code == 0
    files = sorted((work / "data" / "minute").rglob("part.parquet"))
    assert len(files) == 2
    return files


def test_repair_that_cannot_move_a_damaged_file_aside_says_so_in_one_line(work, market, monkeypatch):
    """`repair` moves a damaged file to .quarantine/ with a bare os.replace: when the move
    fails (a read-only or immutable folder, a permission, e.g. `chattr +i` on the month's
    folder, checked by hand as root) the OSError escapes `main` as a Python traceback and
    exit 1, not the one-line error every other bad situation gets.
    (polyledger/checks/files.py `repair` -> storage/base.py `quarantine` -> local.py `move`)"""
    files = _two_tickers_downloaded(work, market)
    _flip_a_byte(files[0])

    def refuse(self, source, target, before_remove=None):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EPERM, "Operation not permitted", str(self.path_of(source)))

    monkeypatch.setattr(LocalStore, "move", refuse)
    try:
        result = run_cli("repair")
    except OSError as exc:
        pytest.fail(f"repair ended in a traceback instead of a one-line error: {exc!r}")
    assert result.code != 0 and result.err.startswith("error: "), result
    assert len(result.err.strip().splitlines()) == 1, result.err


def test_a_repair_stopped_midway_never_leaves_a_done_unit_without_its_file(work, market, monkeypatch):
    """`repair` first moves every damaged file to .quarantine/, and only at the end queues
    their units again (`reset_done_units`). When it stops in between (the second move
    fails; equally a kill or a power cut there), the units whose files it already moved
    stay `done` while their files are no longer in the data folder: plain `audit` says
    COMPLETE (exit 0) and a folder read silently lacks that month. The repair made things
    worse: before it, the month's file was at least still there.
    (polyledger/checks/files.py `repair`: quarantine loop before `ledger.reset_done_units`)"""
    files = _two_tickers_downloaded(work, market)
    for path in files:
        _flip_a_byte(path)
    real_move = LocalStore.move
    moves: list[str] = []

    def second_move_fails(self, source, target, before_remove=None):  # type: ignore[no-untyped-def]
        moves.append(source)
        if len(moves) == 2:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(self.path_of(source)))
        real_move(self, source, target, before_remove)

    monkeypatch.setattr(LocalStore, "move", second_move_fails)
    try:
        run_cli("repair")
    except OSError:
        pass  # the first test's defect: not what this one is about
    monkeypatch.setattr(LocalStore, "move", real_move)
    assert len(moves) == 2 and not (work / "data" / moves[0]).exists()  # the premise: one file moved
    with sqlite3.connect(work / "ledger.db") as db:
        (state,) = db.execute("SELECT state FROM units WHERE file_path = ?", (moves[0],)).fetchone()
    audit = run_cli("audit")
    assert state != "done" and audit.code != 0, (
        f"{moves[0]} is in .quarantine/, its unit is still {state!r} and `audit` exits {audit.code}"
    )


def test_a_ledger_backed_up_before_its_first_run_is_refused_its_own_data_folder(work, market):
    """The everyday backup: `cp ledger.db ledger.db.bak` after `plan`, before the first
    (long) run. The ledger's id (`settings.ledger_id`, which the data folder's marker
    names) is made lazily by the first run (`Ledger.identity`, called from `hold_home`),
    so the backup has none. Restored (the file back, or `import --from ledger.db.bak`)
    while the data folder is newer, every `run` and `repair` is refused with "data folder
    data holds another ledger's files ... give this ledger its own --data folder": false
    (it is this ledger's folder) and its advice is to download everything again elsewhere.
    The refused run also stores a fresh random ledger_id in the restored ledger, so the
    lock-out is permanent. Expected: the restored ledger resumes on its folder, as a backup
    taken after the first run does.
    (polyledger/ledger/runs.py `identity`, polyledger/storage/home.py `hold_home`)"""
    write_universe(work / "u.csv", ["TINY"])
    assert _plan("u.csv", "2023-01-01", "2023-02-28") == 0
    shutil.copyfile(work / "ledger.db", work / "ledger.db.bak")  # no run holds it: the file is whole
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url).code == 0
        files = sorted((work / "data" / "minute").rglob("part.parquet"))
        assert files
        for suffix in ("", "-wal", "-shm"):
            (work / f"ledger.db{suffix}").unlink(missing_ok=True)
        shutil.copyfile(work / "ledger.db.bak", work / "ledger.db")  # the backup restored

        again = run_cli("run", "--base-url", server.url)
    assert again.code == 0, f"exit {again.code}: {again.err.strip()}"
    assert ledger_states(work / "ledger.db") == {"done": 2}
    assert run_cli("audit", "--deep").code == 0


def test_retry_flagged_requeues_the_empty_months_audit_quality_flags_as_missing_sessions(work):
    """`audit --quality` flags `missing_session` ("the strongest sign of a silently
    incomplete month") on settled minute units, empty_confirmed ones included, and exits 1;
    its detail names the unit ("minute unit 2024-02 is empty_confirmed"). The documented
    cure, `retry --flagged --check missing_session`, moves only `done` units: it prints
    "0 flagged units are pending again", exits 0, and the flags (and audit's exit 1) stay
    for ever; no recovery command (retry --class: failed units; repair: files) can queue
    those months again. Here the API had no February/March minute bars for AAA at the
    first run and has them (and the daily bars) now.
    (polyledger/ledger/resets.py `reset_flagged`: sources {DONE} only)"""
    write_universe(work / "u.csv", ["AAA"])
    gone = SyntheticMarket([Listing("AAA", delist_date=D(2024, 1, 31), bars_per_day=20)], seed=3)
    whole = SyntheticMarket([Listing("AAA", bars_per_day=20)], seed=3)
    with StandInServer(gone, api_keys=(API_KEY,)) as server:
        assert _plan("u.csv", "2024-01-01", "2024-03-31") == 0
        assert run_cli("run", "--base-url", server.url).code == 0
        server.market = whole
        assert _plan("u.csv", "2024-01-01", "2024-03-31", "--dataset", "day") == 0
        assert run_cli("run", "--base-url", server.url).code == 0
    with sqlite3.connect(work / "ledger.db") as db:
        empty = db.execute(
            "SELECT count(*) FROM units WHERE dataset = 'minute' AND state = 'empty_confirmed'"
        ).fetchone()[0]
    assert empty == 2  # the premise: February and March settled empty
    quality = run_cli("audit", "--quality")
    assert quality.code == 1 and "missing_session" in quality.out

    retried = run_cli("retry", "--flagged", "--check", "missing_session")
    assert retried.code == 0
    assert not retried.out.startswith("0 "), (
        f"audit --quality flags {empty} empty months, retry --flagged says: {retried.out.strip()}"
    )


def test_a_copy_of_the_data_folder_is_not_taken_for_the_ledgers_folder(work, market):
    """docs/data.md: "a run given another folder is refused ... its download would be split
    over two folders, each incomplete while the ledger calls it complete"; only a folder
    *moved* whole keeps the ledger. A *copy* (`cp -a data backup`, the usual backup) carries
    the same marker id, and `hold_home` takes any folder with the id as the ledger's folder
    moved, even while the recorded one is still there with that id: a run on the backup is
    accepted (the ledger now records ./backup), the next run on ./data is accepted too
    (recorded back), and the download is split over the two folders. Plain `audit` says
    COMPLETE (exit 0) while ./data lacks the months fetched into the backup.
    (polyledger/storage/home.py `hold_home`: `home.location != where` accepted on the id alone)"""
    write_universe(work / "u.csv", ["TINY"])
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert _plan("u.csv", "2023-01-01", "2023-01-31") == 0
        assert run_cli("run", "--base-url", server.url).code == 0
        shutil.copytree(work / "data", work / "backup")  # a backup copy, marker and all
        assert _plan("u.csv", "2023-01-01", "2023-03-31") == 0
        on_copy = run_cli("run", "--base-url", server.url, "--data", "backup")
        write_universe(work / "u2.csv", ["SIRI"])
        assert _plan("u2.csv", "2023-01-01", "2023-01-31") == 0
        on_data = run_cli("run", "--base-url", server.url)
    if on_copy.code != 0 or on_data.code != 0:
        return  # one of the two folders was refused: nothing split
    whole = [run_cli("audit", "--deep", "--data", folder).code == 0 for folder in ("data", "backup")]
    assert any(whole), (
        "both runs accepted, yet neither ./data nor ./backup holds every done unit's file; "
        f"`audit` (the ledger) exits {run_cli('audit').code}"
    )


def test_a_run_refused_a_folder_stores_no_new_ledger_id(work, market):
    """The second half of the restored-backup lock-out: a ledger without an id (planned by
    an earlier version) refused a folder whose marker names another ledger must not store
    a random id of its own, which would refuse it that folder for good."""
    write_universe(work / "u.csv", ["TINY"])
    assert _plan("u.csv", "2023-01-01", "2023-01-31") == 0
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url).code == 0
        assert _plan("u.csv", "2023-01-01", "2023-01-31", "--ledger", "old.db") == 0
        with sqlite3.connect(work / "old.db") as db:  # as an earlier version planned it: no id
            db.execute("DELETE FROM settings WHERE key = 'ledger_id'")
        refused = run_cli("run", "--base-url", server.url, "--ledger", "old.db")
    assert refused.code == 2 and "another ledger's files" in refused.err, refused.err
    with sqlite3.connect(work / "old.db") as db:
        assert db.execute("SELECT value FROM settings WHERE key = 'ledger_id'").fetchone() is None


def test_a_copy_is_refused_naming_the_folder_and_a_real_move_still_works(work, market):
    """The copy's refusal is one line naming the folder the ledger records (and how to use
    the other place instead: a move); `repair` and `polyledger.open` refuse the copy too.
    Once the folder is moved (the recorded one gone), the moved one is the ledger's; a
    symbolic link to the ledger's folder is that folder, not a copy."""
    import polyledger
    from polyledger.errors import InputError

    write_universe(work / "u.csv", ["TINY"])
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert _plan("u.csv", "2023-01-01", "2023-01-31") == 0
        assert run_cli("run", "--base-url", server.url).code == 0
        shutil.copytree(work / "data", work / "backup")
        recorded = str((work / "data").resolve())
        refused = run_cli("run", "--base-url", server.url, "--data", "backup")
        assert refused.code == 2 and len(refused.err.strip().splitlines()) == 1, refused.err
        assert f"is a copy of this ledger's folder {recorded}" in refused.err and "move" in refused.err
        assert run_cli("repair", "--data", "backup").code == 2
        with pytest.raises(InputError, match="is a copy"):
            polyledger.open("ledger.db", "backup")
        (work / "link").symlink_to(work / "data", target_is_directory=True)
        assert run_cli("run", "--base-url", server.url, "--data", "link").code == 0
        shutil.rmtree(work / "backup")
        (work / "link").unlink()
        (work / "data").rename(work / "moved")
        moved = run_cli("run", "--base-url", server.url, "--data", "moved")
        assert moved.code == 0, moved.err
        assert run_cli("audit", "--deep", "--data", "moved").code == 0


def test_audit_deep_and_repair_see_the_files_at_the_data_folders_root(work, market):
    """`audit --deep` and `repair` walked only the dataset folders: a `data/old.parquet`
    (read by `data/**/*.parquet`) was never reported, and the temporary a killed marker
    write leaves at the root never removed. The marker itself is no finding."""
    _two_tickers_downloaded(work, market)
    stray = work / "data" / ".tmp-0123abcd-polyledger-data.json.partial"
    stray.write_bytes(b"{")
    shutil.copyfile(next((work / "data" / "minute").rglob("part.parquet")), work / "data" / "old.parquet")
    deep = run_cli("audit", "--deep", "--json")
    assert deep.code == 1
    found = {(f["kind"], f["path"]) for f in json.loads(deep.out)["deep"]["findings"]}
    assert found == {("stray_temporary", stray.name), ("extra_file", "old.parquet")}, found
    assert run_cli("repair").code == 0
    assert not stray.exists() and (work / "data" / "old.parquet").exists()  # reported, never moved
    assert (work / "data" / "polyledger-data.json").exists()


def test_a_ledger_copied_together_with_its_folder_uses_the_copied_folder(work, market):
    """`cp -a project project2`: the ledger and its folder copied together are a new pair
    (the copied ledger is no longer where it recorded its folder), so the copy of the folder
    is that ledger's, while the original ledger is still refused the copy."""
    files = _two_tickers_downloaded(work, market)
    (work / "p2").mkdir()
    shutil.copytree(work / "data", work / "p2" / "data")
    shutil.copyfile(work / "ledger.db", work / "p2" / "ledger.db")  # no run holds it: whole
    write_universe(work / "u.csv", ["SIRI", "TINY"])
    for ledger in ("ledger.db", "p2/ledger.db"):
        assert _plan("u.csv", "2023-01-01", "2023-02-28", "--ledger", ledger) == 0
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url, "--data", "p2/data").code == 2
        copied = run_cli("run", "--base-url", server.url, "--ledger", "p2/ledger.db", "--data", "p2/data")
        assert copied.code == 0, copied.err
    assert run_cli("audit", "--deep", "--ledger", "p2/ledger.db", "--data", "p2/data").code == 0
    assert all(path.exists() for path in files)  # the original folder as it was
