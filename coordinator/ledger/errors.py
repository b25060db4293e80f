"""The ledger's own errors: subclasses of the shared domain errors, so the one status table maps them."""

from __future__ import annotations

from coordinator.errors import FailedPrecondition


class InsufficientFunds(FailedPrecondition):
    """An account would go below zero. ``balance_micro`` is what it holds, ``needed_micro`` what was asked."""

    def __init__(
        self, message: str, *, account_id: int, balance_micro: int, needed_micro: int
    ) -> None:
        super().__init__(message)
        self.account_id = account_id
        self.balance_micro = balance_micro
        self.needed_micro = needed_micro


class IdempotencyConflict(FailedPrecondition):
    """An idempotency key was used before for a different request."""


class BalanceLimitExceeded(FailedPrecondition):
    """An account would hold more than a 64-bit balance column can store."""
