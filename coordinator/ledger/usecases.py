"""The ledger's use cases as the transports call them (gRPC and REST alike): each method is one
transaction of its own, and the rules about who may see or mint what live here, not in the transports."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from sqlmodel import Session

from coordinator.accounts.tokens import Principal
from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.errors import HiveMindError, PermissionDenied
from coordinator.ledger.service import (
    DEFAULT_PAGE_SIZE,
    StatementRow,
    TransferRequest,
    TransferResult,
    audit,
    get_balance,
    list_transactions,
    lock_transfer_wallets,
    transfer_many,
    transfer_request,
    user_id_by_username,
)


@dataclass(frozen=True, slots=True)
class Balance:
    user_id: int
    username: str
    balance_micro: int


class Ledger:
    """The ledger's use cases as the transports see them: each method is one transaction of its own.

    Blocking (run it off the event loop). gRPC and REST call the same methods, so the rules about who may
    see whose balance live here, not in the transports."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def transfer_async(self, executor: Executor, request: TransferRequest) -> TransferResult:
        """:meth:`transfer` for a caller on the event loop (gRPC): batched with the loop's concurrent
        transfers (``transfer_many``), one thread hand-off and one commit per batch."""
        return await self.db.write_grouped_async(
            self._transfer_alone(request),
            executor,
            refusals=HiveMindError,
            batch=self._transfer_batch,
            request=request,
            short=True,
        )

    def transfer(
        self,
        sender_user_id: int,
        recipient_username: str,
        amount_micro: int,
        *,
        idempotency_key: str | None = None,
        memo: str = "",
    ) -> TransferResult:
        # Grouped with concurrent transfers into one commit: transfer() refuses (HiveMindError) only
        # before it writes, which is what write_grouped needs to answer a refusal alone.
        return self.db.write_grouped(
            self._transfer_alone(
                TransferRequest(
                    sender_user_id, recipient_username, amount_micro, idempotency_key, memo
                )
            ),
            refusals=HiveMindError,
            prelock=lock_transfer_wallets,
            lock_key=(sender_user_id, recipient_username),
        )

    def _transfer_alone(self, r: TransferRequest) -> Callable[[Session], TransferResult]:
        return lambda session: transfer_request(session, r, now=self.clock())

    def _transfer_batch(
        self, session: Session, requests: list[TransferRequest]
    ) -> list[TransferResult | HiveMindError]:
        return transfer_many(session, requests, now=self.clock())

    def balance(self, caller: Principal, username: str = "") -> Balance:
        """The caller's balance, or (administrators only) the balance of ``username``."""
        with self.db.read() as session:
            user_id, name = _subject(session, caller, username, what="balance")
            return Balance(
                user_id=user_id, username=name, balance_micro=get_balance(session, user_id)
            )

    def statement(
        self,
        caller: Principal,
        *,
        username: str = "",
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[StatementRow], str]:
        """A page of the caller's history (or, administrators only, of ``username``'s)."""
        with self.db.read() as session:
            user_id, _ = _subject(session, caller, username, what="history")
            return list_transactions(session, user_id, page_size, page_token or None)

    def audit(self) -> list[str]:
        with self.db.read() as session:
            return audit(session)


def _subject(session: Session, caller: Principal, username: str, *, what: str) -> tuple[int, str]:
    """Whose data a request names: the caller's own unless an administrator names someone else."""
    if not username or username == caller.username:
        return caller.user_id, caller.username
    if not caller.is_admin:
        raise PermissionDenied(
            f"Only an administrator can see another user's {what}. Leave the username empty to see yours."
        )
    return user_id_by_username(session, username), username
