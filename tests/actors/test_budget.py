"""The budget of a unit: one way in (reserve), one way out (settle or forfeit).

Pure logic, no bus. The property tests drive random sequences of charges,
reservations, settlements and forfeits and check after every step that nothing
spends or holds more than the allowance, and that no reservation leaks.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from volta.actors._unit import DELEGATE_SHARE, Budget, Reservation
from volta.protocol import ErrorCode, TaskRefused


def test_a_budget_never_hands_out_more_than_it_has() -> None:
    budget = Budget(1000)
    budget.charge(100)
    first = budget.reserve()
    second = budget.reserve()
    assert (first.amount, second.amount, budget.available()) == (450, 225, 225)
    first.settle(500)  # a delegate that says it spent more than it was given
    assert budget.spent == 100 + 450  # counts as its whole allowance, no more
    second.settle(25)
    assert (budget.spent, budget.reserved, budget.available()) == (575, 0, 425)


def test_the_delegate_share_is_split_among_delegations_started_together() -> None:
    budget = Budget(1000)
    assert budget.share() == int(1000 * DELEGATE_SHARE) == 500
    assert budget.share(among=4) == 125
    assert Budget(None).share(among=4) is None


def test_a_named_allowance_is_cut_to_what_is_left_and_never_negative() -> None:
    budget = Budget(100)
    assert budget.reserve(5000).amount == 100
    with pytest.raises(TaskRefused) as caught:
        budget.reserve(10)
    assert caught.value.code is ErrorCode.BUDGET_EXCEEDED
    assert caught.value.message == "the task's budget is spent (0 of 100 tokens)"
    with pytest.raises(TaskRefused):
        Budget(100).reserve(-5)


def test_without_a_limit_a_named_allowance_still_bounds_what_a_delegate_costs() -> None:
    budget = Budget(None)
    unlimited = budget.reserve()
    bounded = budget.reserve(100)
    assert (unlimited.amount, bounded.amount, budget.reserved) == (None, 100, 100)
    bounded.settle(1000)
    unlimited.settle(40)
    assert (budget.spent, budget.reserved, budget.available()) == (140, 0, None)


def test_a_reservation_is_closed_once() -> None:
    budget = Budget(1000)
    reservation = budget.reserve(200)
    reservation.forfeit()
    reservation.settle(0)
    reservation.forfeit()
    assert (budget.spent, budget.reserved, reservation.open) == (200, 0, False)


class BudgetMachine(RuleBasedStateMachine):
    """Random reserve/settle/forfeit/charge sequences against one budget."""

    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.budget = Budget(0)
        self.open: list[Reservation] = []
        self.closed: list[Reservation] = []
        self.charged = 0
        self.settled = 0  # what closed reservations added to spent, by the rules

    @initialize(allowance=st.one_of(st.none(), st.integers(0, 10_000)))
    def start(self, allowance: int | None) -> None:
        self.budget = Budget(allowance)

    @rule(tokens=st.integers(0, 10_000))
    def charge(self, tokens: int) -> None:
        # A unit spends what it has (a brain checks before each call); overshoot by one
        # call's estimate error is the model's, not the bookkeeping's.
        available = self.budget.available()
        tokens = tokens if available is None else min(tokens, available)
        self.budget.charge(tokens)
        self.charged += tokens

    @rule(target=reservations, amount=st.one_of(st.none(), st.integers(-50, 20_000)))
    def reserve(self, amount: int | None) -> Reservation | None:
        before = (self.budget.spent, self.budget.reserved)
        refused: TaskRefused | None = None
        try:
            reservation = self.budget.reserve(amount)
        except TaskRefused as error:
            refused = error
        if refused is not None:
            assert refused.code is ErrorCode.BUDGET_EXCEEDED
            assert self.budget.allowance is not None
            assert (self.budget.spent, self.budget.reserved) == before, "a refusal changed it"
            return None
        self.open.append(reservation)
        return reservation

    @rule(reservation=consumes(reservations), spent=st.integers(-10, 30_000))
    def settle(self, reservation: Reservation | None, spent: int) -> None:
        if reservation is None or not reservation.open:
            return
        cap = reservation.amount
        self.settled += max(0, spent if cap is None else min(spent, cap))
        reservation.settle(spent)
        self.open.remove(reservation)
        self.closed.append(reservation)

    @rule(reservation=consumes(reservations))
    def forfeit(self, reservation: Reservation | None) -> None:
        if reservation is None or not reservation.open:
            return
        self.settled += reservation.amount or 0
        reservation.forfeit()
        self.open.remove(reservation)
        self.closed.append(reservation)

    @precondition(lambda self: bool(self.closed))
    @rule(data=st.data())
    def close_again(self, data: st.DataObject) -> None:
        reservation = data.draw(st.sampled_from(self.closed))
        before = (self.budget.spent, self.budget.reserved)
        reservation.settle(data.draw(st.integers(0, 10_000)))
        reservation.forfeit()
        assert (self.budget.spent, self.budget.reserved) == before, "closed twice"

    @invariant()
    def never_more_than_the_allowance(self) -> None:
        budget = self.budget
        if budget.allowance is not None:
            assert budget.spent + budget.reserved <= budget.allowance
            assert budget.available() == budget.allowance - budget.spent - budget.reserved

    @invariant()
    def no_reservation_leaks(self) -> None:
        held = sum(r.amount or 0 for r in self.open)
        assert self.budget.reserved == held
        assert self.budget.spent == self.charged + self.settled

    def teardown(self) -> None:
        for reservation in list(self.open):
            reservation.forfeit()
        assert self.budget.reserved == 0


TestBudgetMachine = BudgetMachine.TestCase
TestBudgetMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


@given(
    allowance=st.integers(0, 10**6),
    charged=st.integers(0, 10**6),
    among=st.integers(1, 16),
)
def test_a_turn_of_delegations_never_asks_for_more_than_is_left(
    allowance: int, charged: int, among: int
) -> None:
    budget = Budget(allowance)
    budget.charge(min(charged, allowance))
    each = budget.share(among=among)
    assert each is not None
    reservations = []
    for _ in range(among):
        try:
            reservations.append(budget.reserve(each))
        except TaskRefused:
            assert each == 0
    assert budget.spent + budget.reserved <= allowance
    assert sum(r.amount or 0 for r in reservations) <= (allowance - budget.spent) * DELEGATE_SHARE
