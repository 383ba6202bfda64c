"""The pages stay true to the CLI: every `polyledger ...` command line shown in README.md
and docs/*.md names a real command and real options of it (and a concrete example parses
whole, as the CLI itself would parse it); every command and option the CLI has is on
docs/commands.md, in its command's section; every relative link between the pages
resolves, anchors included. Nothing runs: the commands are only parsed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from polyledger.cli import app

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "tests" / "README.md"]
COMMANDS_PAGE = ROOT / "docs" / "commands.md"

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`]+)`")
ENV_PREFIX = re.compile(r"^(?:\$\s+)?(?:[A-Z_][A-Z0-9_]*=\S*\s+)*")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
NOT_SHELL = {"python", "sql"}


def _cli() -> dict:
    """The CLI's commands by name, as typer builds them (on its own copy of click)."""
    return typer.main.get_command(app).commands  # type: ignore[attr-defined]


def _options(command) -> set[str]:  # type: ignore[no-untyped-def]
    return {
        name
        for param in command.params
        if param.param_type_name == "option" and not param.hidden
        for name in (*param.opts, *param.secondary_opts)
    }


def command_lines(text: str) -> list[str]:
    """Every `polyledger ...` command shown: lines of shell code blocks (with their `\\`
    continuations and env assignments in front) and code spans in the prose."""
    found = []
    for language, body in FENCE.findall(text):
        if language in NOT_SHELL:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = ENV_PREFIX.sub("", line.strip())
            if line.startswith("polyledger "):
                found.append(line)
    prose = FENCE.sub("", text)
    for span in CODE_SPAN.findall(prose):
        span = ENV_PREFIX.sub("", " ".join(span.replace("\\|", "|").split()))
        if span.startswith("polyledger "):
            found.append(span)
    return found


def _tokens(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in a usage line: words are enough to check names
        return line.split()


def problems(line: str) -> list[str]:
    """What is wrong with one documented command line, against the real CLI."""
    tokens = _tokens(line)[1:]
    commands = _cli()
    if not tokens or tokens[0] not in commands:
        return [f"no command {tokens[:1]} in {line!r}"]
    command = commands[tokens[0]]
    known = _options(command) | {"--help"}
    wrong = [
        name for token in tokens[1:] for name in OPTION.findall(token.split("=")[0]) if name not in known
    ]
    if wrong:
        return [f"`polyledger {tokens[0]}` has no option {', '.join(wrong)}: {line!r}"]
    # a real example (not a usage line with [optional] or a|b parts, nor the command's bare
    # name in prose): the CLI's own parser must accept it whole
    concrete = len(tokens) > 1 and not any(mark in token for token in tokens for mark in "[]|")
    concrete = concrete and "--help" not in tokens  # --help would print and exit
    if concrete:
        try:
            command.make_context(f"polyledger {tokens[0]}", tokens[1:])
        except typer.TyperException as exc:  # what the CLI reports as a usage error
            return [f"{line!r} does not parse: {exc.format_message()}"]
    return []


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{page.name}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{page.name}: {target} (no such heading)")
    return broken


def _sections(text: str) -> dict[str, str]:
    """docs/commands.md by `## ` heading: the heading line -> its section's text."""
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    return {part.split("\n", 1)[0]: part for part in parts[1:]}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_command_line_shown_is_a_real_command_with_real_options(page):
    lines = command_lines(page.read_text(encoding="utf-8"))
    assert [problem for line in lines for problem in problems(line)] == []


def test_the_pages_show_commands_at_all():
    """The extraction itself works: a page that lost its commands would pass vacuously."""
    shown = {name for page in PAGES for line in command_lines(page.read_text()) for name in line.split()[1:2]}
    assert shown >= {"universe", "plan", "run", "audit", "sql"}, shown
    assert len(command_lines(COMMANDS_PAGE.read_text(encoding="utf-8"))) >= 20


def test_every_command_and_option_of_the_cli_is_in_its_section_of_commands_md():
    sections = _sections(COMMANDS_PAGE.read_text(encoding="utf-8"))
    missing = []
    for name, command in _cli().items():
        if command.hidden:
            continue
        mine = [text for heading, text in sections.items() if f"`polyledger {name}`" in heading]
        if not mine:
            missing.append(f"no section for `polyledger {name}`")
            continue
        documented = set(OPTION.findall(mine[0]))
        missing += [f"{name} {option}" for option in sorted(_options(command) - documented)]
    assert missing == []


def test_every_relative_link_between_the_pages_resolves():
    assert [problem for page in PAGES for problem in broken_links(page)] == []


def test_a_misspelt_option_an_unknown_command_or_a_bad_value_is_caught():
    """The checks themselves: each kind of mistake a page could make is reported."""
    assert problems("polyledger run --workers 16 --unadjusted") == []
    assert problems("polyledger retry [--class transient|all|CLASS] [--ticker T]") == []
    assert problems("polyledger run --worker 16")
    assert problems("polyledger retry [--clas transient|all]")
    assert problems("polyledger audits --deep")
    assert problems("polyledger run --workers many")
    assert problems("polyledger export --ledger ledger.db")  # --to is required
    assert command_lines("text `POLYGON_API_KEY=x polyledger run --rate 5`\n") == ["polyledger run --rate 5"]


def test_the_shipped_example_ledger_is_at_the_schema_head_and_shows_every_state():
    """docs/ledger.md: `ledger.db.example` is a demo ledger "with every state in it"; read
    as it is shipped (sqlite3, no migration), so a schema change that forgets to make it
    again is caught (found by a new user's review: it was at 0010 with no empty unit)."""
    import sqlite3

    from polyledger.ledger.database import SCHEMA_HEAD
    from polyledger.ledger.states import UnitState

    example = Path(__file__).resolve().parents[1] / "ledger.db.example"
    with sqlite3.connect(f"file:{example}?mode=ro", uri=True) as connection:
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        states = {row[0] for row in connection.execute("SELECT DISTINCT state FROM units")}
    assert version == SCHEMA_HEAD, "make it again: polyledger demo --example-ledger ledger.db.example"
    assert states == {state.value for state in UnitState}
