"""Property test: any sequence of grants, transfers, replays and refused requests leaves the books
audited clean and every balance equal to a plain Python model of the rules."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.clock import utcnow
from coordinator.db import Database
from coordinator.errors import HiveMindError, InvalidArgument, NotFound
from coordinator.ledger import service as ledger
from coordinator.ledger.errors import IdempotencyConflict, InsufficientFunds
from tests.ledger.helpers import CPT, audit, balance, make_user

USERS = 4
_examples = itertools.count()


@dataclass
class Model:
    """The rules, without a database."""

    balances: list[int] = field(default_factory=lambda: [0] * USERS)
    keys: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    minted: int = 0

    def grant(self, user: int, amount: int) -> type[HiveMindError] | None:
        if not 0 < amount <= ledger.MAX_AMOUNT_MICRO:
            return InvalidArgument
        self.balances[user] += amount
        self.minted += amount
        return None

    def transfer(
        self, src: int, dst: int, amount: int, key: str | None
    ) -> type[HiveMindError] | None:
        if not 0 < amount <= ledger.MAX_AMOUNT_MICRO:
            return InvalidArgument
        if dst == -1:
            return NotFound
        if src == dst:
            return InvalidArgument
        if key is not None and (src, key) in self.keys:
            return None if self.keys[(src, key)] == (dst, amount) else IdempotencyConflict
        if self.balances[src] < amount:
            return InsufficientFunds
        self.balances[src] -= amount
        self.balances[dst] += amount
        if key is not None:
            self.keys[(src, key)] = (dst, amount)
        return None


amounts = st.one_of(
    st.integers(1, 40 * CPT),
    st.sampled_from([0, -1, 1, 2**63, ledger.MAX_AMOUNT_MICRO, ledger.MAX_AMOUNT_MICRO + 1]),
)
users = st.integers(0, USERS - 1)
ops = st.one_of(
    st.tuples(st.just("grant"), users, amounts),
    st.tuples(
        st.just("transfer"),
        users,
        st.one_of(users, st.just(-1)),  # -1: a recipient that does not exist
        amounts,
        st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"])),
    ),
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(ops, max_size=25))
def test_any_sequence_keeps_the_books(database: Database, steps: list[tuple[Any, ...]]) -> None:
    # Each example gets its own users on the shared database; the audit covers everything so far.
    prefix = f"p{next(_examples)}u"
    names = [f"{prefix}{i}" for i in range(USERS)]
    ids = [make_user(database, name) for name in names]
    model = Model()
    for step in steps:
        got: type[HiveMindError] | None = None
        try:
            with database.write() as session:
                if step[0] == "grant":
                    _, user, amount = step
                    expected = model.grant(user, amount)
                    ledger.grant(session, ids[user], amount, now=utcnow())
                else:
                    _, src, dst, amount, key = step
                    expected = model.transfer(src, dst, amount, key)
                    recipient = names[dst] if dst >= 0 else f"{prefix}nobody"
                    ledger.transfer(
                        session, ids[src], recipient, amount, idempotency_key=key, now=utcnow()
                    )
        except HiveMindError as exc:
            got = type(exc)
        assert got is expected, step
    assert [balance(database, u) for u in ids] == model.balances
    assert audit(database) == []
