"""The unit state machine against a table written out here from the README, not read from
the production `TRANSITIONS` (a test that reads the table it checks cannot fail)."""

from __future__ import annotations

import itertools

import pytest

from polyledger.errors import IllegalTransition
from polyledger.ledger.states import SETTLED, UnitState, allowed_sources, check_transition

P, R, D, E, F = "pending", "running", "done", "empty_confirmed", "failed"

# README: pending -> running -> done | empty_confirmed | failed; a running unit goes back to
# pending when released or its lease expires; retry / repair / re-plan queue settled and
# failed units again. Nothing else.
LEGAL = {(P, R), (R, D), (R, E), (R, F), (R, P), (F, P), (D, P), (E, P)}
ALL_PAIRS = list(itertools.product([P, R, D, E, F], repeat=2))


def test_the_states_are_the_documented_five_with_their_stored_names():
    assert sorted(state.value for state in UnitState) == sorted([P, R, D, E, F])
    assert [str(UnitState(name)) for name in (P, R, D, E, F)] == [P, R, D, E, F]


def test_settled_means_done_or_empty_confirmed_only():
    assert {state.value for state in SETTLED} == {D, E}


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS)
def test_each_transition_is_allowed_exactly_when_the_readme_allows_it(source, target):
    if (source, target) in LEGAL:
        check_transition(UnitState(source), UnitState(target))
    else:
        with pytest.raises(IllegalTransition, match=f"illegal transition {source} -> {target}"):
            check_transition(UnitState(source), UnitState(target))


def test_allowed_sources_returns_the_requested_sources_sorted():
    sources = {UnitState.FAILED, UnitState.DONE, UnitState.EMPTY_CONFIRMED}
    assert allowed_sources(UnitState.PENDING, sources) == [D, E, F]
    assert allowed_sources(UnitState.PENDING, frozenset({UnitState.RUNNING})) == [R]


def test_one_illegal_source_refuses_the_whole_move_and_names_every_illegal_one():
    requested = {UnitState.PENDING, UnitState.DONE, UnitState.RUNNING}
    with pytest.raises(IllegalTransition) as raised:
        allowed_sources(UnitState.FAILED, requested)
    # sorted and joined with '/', so the message is the same whatever the set's order
    assert str(raised.value) == "illegal transition done/pending -> failed"


def test_an_empty_request_is_no_move_at_all():
    assert allowed_sources(UnitState.PENDING, set()) == []
