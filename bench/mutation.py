"""Mutation testing of the functions that carry the README's promises, with mutmut 3.

    pip install -e '.[test,mutation]'        # once: mutmut is an optional extra
    python bench/mutation.py                 # mutate, test, report (one core: --max-children 1)
    python bench/mutation.py --report-only   # report the last run's results again
    python bench/mutation.py --rerun-survivors  # after new tests: test the survivors again
    python bench/mutation.py --report-only --diffs  # ... with the equivalent ones' changes too

mutmut copies the project into `mutants/` (git-ignored), rewrites the files listed under
`[tool.mutmut] only_mutate` in pyproject.toml, and for each mutant runs only the tests of
`pytest_add_cli_args_test_selection` that call the mutated function (found in one
traced run of them all). mutmut mutates whole files; the functions that carry no promise
(planning, reading, object stores, ...) are left out here by naming the ones to run,
below. mutmut 3 leaves decorated functions alone (apart from static/class methods), so
`Ledger.settle_fetched`, `release`, `_claim_with_token` and `_settle_one` (under
`@_reconnecting`) and `_move_sql` (`@lru_cache`) are not mutated; the undecorated
`_settle`, `_move` and `_fetched_change` they call are.

Score = killed / mutants, where a timeout counts as killed (the mutant hung the tests)
and "no tests" as survived; the second score leaves out the survivors shown to be
equivalent (EQUIVALENT below, each with its reason, and SQL whose letter case alone
changed). Survivors are printed with their change (`mutmut show NAME` shows one in
context). This installs nothing.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEP = "ǁ"  # mutmut's class separator in mutant names: module.xǁClassǁmethod__mutmut_N


def _functions(module: str, *names: str) -> list[str]:
    return [f"{module}.x_{name}__mutmut_*" for name in names]


def _methods(module: str, cls: str, *names: str) -> list[str]:
    return [f"{module}.x{SEP}{cls}{SEP}{name}__mutmut_*" for name in names]


# module -> (its file, the mutant-name patterns of its promise-bearing functions)
TARGETS: dict[str, tuple[str, list[str]]] = {
    "state machine": (
        "polyledger/ledger/states.py",
        ["polyledger.ledger.states.*"],
    ),
    "ledger records": (
        "polyledger/ledger/records.py",
        _functions("polyledger.ledger.records", "iso", "in_list"),
    ),
    "unit moves": (
        "polyledger/ledger/moves.py",
        _methods("polyledger.ledger.moves", "UnitMoves", "_move", "_dataset_filter"),
    ),
    "claims": (
        "polyledger/ledger/claims.py",
        _methods(
            "polyledger.ledger.claims", "Claims", "claim", "claim_following", "_claim_where", "_claimed"
        ),
    ),
    "settling": (
        "polyledger/ledger/settle.py",
        _functions("polyledger.ledger.settle", "_fetched_change")
        + _methods(
            "polyledger.ledger.settle",
            "Settling",
            "_settle",
            "settle_done",
            "settle_empty",
            "settle_failed",
            "requeue",
        ),
    ),
    "worker settle path": (
        "polyledger/fetch/units.py",
        ["polyledger.fetch.units.*"],
    ),
    "unit file writes": (
        "polyledger/storage/base.py",
        _methods("polyledger.storage.base", "BarStore", "write_unit", "_write_bytes"),
    ),
    "atomic writes": (
        "polyledger/storage/local.py",
        _functions("polyledger.storage.local", "_fsync_folder")
        + _methods(
            "polyledger.storage.local",
            "LocalStore",
            "_put",
            "_write_atomically",
            "temporaries",
            "clean_temporaries",
        ),
    ),
    "page decoder": (
        "polyledger/polygon/aggs.py",
        _functions("polyledger.polygon.aggs", "decode_aggregates", "_decode_fast", "_decode_general"),
    ),
    "pagination guards": (
        "polyledger/polygon/fetch.py",
        ["polyledger.polygon.fetch.*"],
    ),
    "paging routine": (
        "polyledger/polygon/paging.py",
        ["polyledger.polygon.paging.*"],
    ),
    "redaction": (
        "polyledger/secrets.py",
        ["polyledger.secrets.*"],
    ),
    "rate limiter": (
        "polyledger/polygon/ratelimit.py",
        ["polyledger.polygon.ratelimit.*"],
    ),
}

# surviving mutants that cannot change what the code does, and why (checked by hand)
_CLAIMS = "polyledger.ledger.claims.x" + SEP + "Claims" + SEP
_SETTLING = "polyledger.ledger.settle.x" + SEP + "Settling" + SEP
_MOVES = "polyledger.ledger.moves.x" + SEP + "UnitMoves" + SEP
_FETCHED_CHANGE = "_fetched_change reads only the stored file of the FetchedUnit it is given"
_PREFIX = "the prefix of the dataset parameters' names: any prefix no other parameter uses works"
_HINT = "by_id/postgres only choose `(state || '')`, a hint that keeps SQLite's planner off the state index"
_STRICT = "zip(strict=True) checks lengths that are equal by construction (one entry per unit)"
_KEY0 = '`"results":` at offset 0 is not a JSON object: the fast path gives it up either way'
_MISSING_OK = "missing_ok: an unlink of a temporary never made raises OSError, and the clean-up ignores it"
_ONE_ROW = "frame.row() with no index returns the only row: the frame was just checked to have one"
EQUIVALENT: dict[str, str] = {
    _CLAIMS + "claim_following__mutmut_1": "limit < 0 for <= 0: a claim with LIMIT 0 takes nothing, "
    "so limit=0 still returns [] (one query more)",
    _SETTLING + "settle_done__mutmut_12": _FETCHED_CHANGE,
    _SETTLING + "settle_done__mutmut_13": _FETCHED_CHANGE,
    _SETTLING + "settle_empty__mutmut_12": _FETCHED_CHANGE,
    _SETTLING + "settle_empty__mutmut_13": _FETCHED_CHANGE,
    f"polyledger.fetch.units.x{SEP}_Progress{SEP}fail__mutmut_16": "waiting = None for []: nothing reads "
    "waiting after fail() (the caller tests len(waiting) before calling it)",
    "polyledger.polygon.aggs.x__decode_general__mutmut_38": _ONE_ROW,
    "polyledger.polygon.aggs.x__decode_general__mutmut_40": _ONE_ROW,
    "polyledger.polygon.aggs.x__decode_general__mutmut_78": "unnest(None) unnests every struct "
    "column, and the frame selected has only `results`",
    "polyledger.polygon.fetch.x__check_progress__mutmut_3": "`or 'XXXX'` for `or ''`: _check_progress "
    "is only called when next_url is set",
    _MOVES + "_dataset_filter__mutmut_6": _PREFIX,
    _MOVES + "_dataset_filter__mutmut_10": _PREFIX,
    _MOVES + "_dataset_filter__mutmut_11": _PREFIX,
    _MOVES + "_move__mutmut_1": "the default of `sets`: every caller passes its own",
    _MOVES + "_move__mutmut_3": _HINT,
    _MOVES + "_move__mutmut_10": _HINT,
    _MOVES + "_move__mutmut_11": _HINT,
    _MOVES + "_move__mutmut_17": _HINT,
    _MOVES + "_move__mutmut_18": _HINT,
    "polyledger.fetch.units.x__store__mutmut_5": _STRICT,
    "polyledger.fetch.units.x__store__mutmut_9": _STRICT,
    "polyledger.fetch.units.x__store__mutmut_10": _STRICT,
    "polyledger.fetch.units.x__store__mutmut_68": _STRICT,
    "polyledger.fetch.units.x__store__mutmut_71": _STRICT,
    "polyledger.fetch.units.x__store__mutmut_72": _STRICT,
    f"polyledger.fetch.units.x{SEP}_Progress{SEP}_settle__mutmut_24": "`or` for `and`: a page is always "
    "buffered before a settle, and the last unit is never complete before finish() (bars past it are "
    "out_of_range), so raw.height is true whenever units still wait",
    f"polyledger.fetch.units.x{SEP}_Progress{SEP}_settle__mutmut_27": "the buffer keeps one day more after a "
    "settle: each unit's bars are cut by its own dates, so only memory changes",
    f"polyledger.fetch.units.x{SEP}_Progress{SEP}_settle__mutmut_38": "_buffer = None for []: that branch "
    "runs only when no unit waits any more (finish), and nothing reads the buffer after",
    "polyledger.polygon.aggs.x__decode_fast__mutmut_3": "rfind for find: they differ only when a body "
    'holds two `"results":` keys, which no JSON object the API sends does',
    f"polyledger.storage.local.x{SEP}LocalStore{SEP}_write_atomically__mutmut_24": _MISSING_OK,
    f"polyledger.storage.local.x{SEP}LocalStore{SEP}_write_atomically__mutmut_25": _MISSING_OK,
    f"polyledger.storage.base.x{SEP}BarStore{SEP}write_unit__mutmut_13": "zstd: polars' default",
    f"polyledger.storage.base.x{SEP}BarStore{SEP}write_unit__mutmut_14": "statistics=True is polars' default",
    f"polyledger.polygon.ratelimit.x{SEP}RateLimiter{SEP}__init____mutmut_37": "float('-INF') is "
    "float('-inf'): Python reads it case-insensitively",
    f"polyledger.polygon.ratelimit.x{SEP}RateLimiter{SEP}on_throttled__mutmut_19": "span without "
    "successes: unused, as `accepted` is None then",
    f"polyledger.polygon.fetch.x{SEP}_Progress{SEP}__call____mutmut_9": "seen.add(None): a URL seen "
    "before never passes anyway, as every next_url must start after the page it follows (checked first)",
    f"polyledger.polygon.paging.x{SEP}UnseenNextUrl{SEP}__call____mutmut_3": "`or 'XXXX'` for `or ''`: "
    "the guard is only called with a page that has a next_url",
    "polyledger.polygon.aggs.x__decode_fast__mutmut_4": _KEY0,
    "polyledger.polygon.aggs.x__decode_fast__mutmut_5": _KEY0,
}

# mutmut's exit codes (mutmut.stats.status_by_exit_code), folded into three outcomes
KILLED_CODES = {1, 3}
TIMEOUT_CODES = {36, -24, 24, 152, 255}
SURVIVED_CODES = {0}


def outcome(exit_code: int | None) -> str:
    if exit_code in KILLED_CODES:
        return "killed"
    if exit_code in TIMEOUT_CODES:
        return "timeout"
    if exit_code in SURVIVED_CODES:
        return "survived"
    if exit_code in (5, 33):
        return "no tests"
    return "not checked" if exit_code is None else f"other ({exit_code})"


def mutmut_command() -> str:
    beside = Path(sys.executable).with_name("mutmut")
    found = str(beside) if beside.exists() else shutil.which("mutmut")
    if not found:
        sys.exit("mutmut is not installed: pip install -e '.[mutation]'")
    return found


def run_mutmut(max_children: int, patterns: list[str]) -> float:
    """Run mutmut over these mutant names or patterns; returns the seconds it took."""
    started = time.monotonic()
    completed = subprocess.run(
        [mutmut_command(), "run", "--max-children", str(max_children), *patterns], cwd=ROOT
    )
    if completed.returncode != 0:
        sys.exit(f"mutmut run failed with exit code {completed.returncode}")
    return time.monotonic() - started


def results_of(path: str) -> dict[str, int | None]:
    meta = ROOT / "mutants" / f"{path}.meta"
    if not meta.exists():
        sys.exit(f"no mutmut results for {path}: run without --report-only first")
    return json.loads(meta.read_text())["exit_code_by_key"]


def survivor_names() -> list[str]:
    """The target mutants of the last run that were not killed outright (after new tests: are
    they now?); timeouts too, as a busy machine can make a survivor's tests overrun."""
    return [
        name
        for path, patterns in TARGETS.values()
        for name, code in sorted(results_of(path).items())
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns) and outcome(code) != "killed"
    ]


def diff_of(name: str, path: str) -> str:
    """The mutant's change, as `mutmut show NAME` prints it."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    return get_diff_for_mutant(name, path=path)


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    lines = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    removed = [line[1:] for line in lines if line.startswith("-")]
    return removed, [line[1:] for line in lines if line.startswith("+")]


def equivalence(name: str, path: str, diff: str) -> str | None:
    """Why a surviving mutant cannot change behaviour, or None if it could."""
    if name in EQUIVALENT:
        return EQUIVALENT[name]
    removed, added = changed_lines(diff)
    same_but_case = [r.lower() for r in removed] == [a.lower() for a in added]
    row_keys = any("row[" in line for line in removed)  # sqlite3.Row ignores case, pg.Row does not
    if "/ledger/" in path and removed and same_but_case and not row_keys:
        return "SQL text changed in letter case only: keywords and unquoted names are case-insensitive"
    return None


def report(show_diffs: bool) -> float:
    """Print killed/survived/score per module and overall, then the survivors; the score
    over the mutants that are not equivalent."""
    os.chdir(ROOT)  # mutmut reads its configuration and mutants/ from here
    totals = {"tested": 0, "killed": 0, "equivalent": 0}
    survivors: list[tuple[str, str, str, str | None, str]] = []
    print(
        f"{'module':<22} {'mutants':>7} {'killed':>7} {'timeout':>7} {'survived':>8} "
        f"{'equiv.':>6} {'score':>7} {'excl. equiv.':>12}"
    )
    for label, (path, patterns) in TARGETS.items():
        counts: dict[str, int] = {}
        equivalent = 0
        for name, code in sorted(results_of(path).items()):
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                continue
            kind = outcome(code)
            counts[kind] = counts.get(kind, 0) + 1
            if kind not in ("killed", "timeout"):
                diff = diff_of(name, path) if kind in ("survived", "no tests") else ""
                why = equivalence(name, path, diff) if kind == "survived" else None
                equivalent += why is not None
                survivors.append((label, name, kind, why, diff))
        killed = counts.get("killed", 0) + counts.get("timeout", 0)
        tested = sum(counts.values())
        totals["tested"] += tested
        totals["killed"] += killed
        totals["equivalent"] += equivalent
        print(
            f"{label:<22} {tested:>7} {counts.get('killed', 0):>7} {counts.get('timeout', 0):>7} "
            f"{tested - killed:>8} {equivalent:>6} {percent(killed, tested):>7} "
            f"{percent(killed, tested - equivalent):>12}"
        )
    tested, killed, equivalent = totals["tested"], totals["killed"], totals["equivalent"]
    print(
        f"{'overall':<22} {tested:>7} {killed:>15} {tested - killed:>8} {equivalent:>6} "
        f"{percent(killed, tested):>7} {percent(killed, tested - equivalent):>12}"
    )
    for heading, wanted in (("survivors", False), ("equivalent survivors", True)):
        listed = [s for s in survivors if (s[3] is not None) == wanted]
        if listed:
            print(f"\n{heading} ({len(listed)}):")
        for label, name, kind, why, diff in listed:
            print(f"  [{label}] {name}: {kind}" + (f" -- {why}" if why else ""))
            if show_diffs or not wanted:
                removed, added = changed_lines(diff)
                for line in removed:
                    print(f"      - {line.strip()}")
                for line in added:
                    print(f"      + {line.strip()}")
    return 100.0 * killed / (tested - equivalent) if tested > equivalent else 0.0


def percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true", help="report the last run, run nothing")
    parser.add_argument("--diffs", action="store_true", help="show the equivalent survivors' changes too")
    parser.add_argument(
        "--rerun-survivors", action="store_true", help="test again what the last run did not kill outright"
    )
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
    args = parser.parse_args()
    if args.rerun_survivors:
        names = survivor_names()
        elapsed = run_mutmut(args.max_children, names) if names else 0.0
    elif args.report_only:
        elapsed = None
    else:
        elapsed = run_mutmut(args.max_children, [p for _, patterns in TARGETS.values() for p in patterns])
    print()
    report(args.diffs)
    if elapsed is not None:
        print(f"\nmutmut run took {elapsed / 60:.1f} min with --max-children {args.max_children}")


if __name__ == "__main__":
    main()
