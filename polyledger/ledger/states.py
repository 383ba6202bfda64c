"""The unit state machine, in one place. Every state change in the ledger is checked here."""

from __future__ import annotations

from enum import Enum

from polyledger.errors import IllegalTransition


class UnitState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    EMPTY_CONFIRMED = "empty_confirmed"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


S = UnitState
TRANSITIONS: dict[UnitState, frozenset[UnitState]] = {
    S.PENDING: frozenset({S.RUNNING}),
    # pending again when the worker gives it back (shutdown, bad key) or its lease expires
    S.RUNNING: frozenset({S.DONE, S.EMPTY_CONFIRMED, S.FAILED, S.PENDING}),
    # retry / repair / re-plan put settled units back in the queue
    S.FAILED: frozenset({S.PENDING}),
    S.DONE: frozenset({S.PENDING}),
    S.EMPTY_CONFIRMED: frozenset({S.PENDING}),
}
SETTLED = frozenset({S.DONE, S.EMPTY_CONFIRMED})


def allowed_sources(target: UnitState, requested: frozenset[UnitState] | set[UnitState]) -> list[str]:
    """The states a unit may move to `target` from, among `requested`; raises if any is illegal."""
    illegal = sorted(s.value for s in requested if target not in TRANSITIONS[s])
    if illegal:
        raise IllegalTransition(f"illegal transition {'/'.join(illegal)} -> {target.value}")
    return sorted(s.value for s in requested)


def check_transition(source: UnitState, target: UnitState) -> None:
    """Raise IllegalTransition unless source -> target is allowed."""
    allowed_sources(target, {source})
