"""A person's account at the coordinator: sign-up, sign-in, session renewal, and the wallet (balance,
history, transfers) over UserService and TokenService. Used by the desktop app; no Qt here.

Errors are the engine's :class:`~client_gui.engine.coordinator_client.CoordinatorError` family, whose
``message`` is a sentence a person can act on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc

from client_gui.engine.coordinator_client import (
    CALL_TIMEOUT_S,
    DEFAULT_TARGET,
    RequestRefused,
    UserChannel,
    UserSession,
    _translate,
    user_session_from_pb,
)
from shared_proto.v1 import tokens_pb2, tokens_pb2_grpc, users_pb2, users_pb2_grpc

TASK_PAYMENT = "task_payment"
"""The ledger kind of a payment to a volunteer for a verified task result."""


@dataclass(frozen=True)
class LedgerRow:
    """One line of the signed-in user's statement; ``amount_micro`` is positive for money in."""

    transaction_id: str
    kind: str
    amount_micro: int
    counterparty: str
    at: datetime
    memo: str
    balance_after_micro: int


@dataclass(frozen=True)
class TransferReceipt:
    transaction_id: str
    new_balance_micro: int


class AccountClient(UserChannel):
    """One channel for a person's account calls. ``token`` is the access token the wallet calls send;
    :meth:`login` and :meth:`refresh` set it. Thread-safe as gRPC channels are; the token is one string
    swapped atomically."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        token: str = "",
        *,
        tls: bool = False,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        super().__init__(target, token, tls=tls, call_timeout_s=call_timeout_s)
        self._users = users_pb2_grpc.UserServiceStub(self._channel)
        self._tokens = tokens_pb2_grpc.TokenServiceStub(self._channel)

    # -- users --

    def register(self, username: str, email: str, password: str) -> int:
        """Create an account; returns its user id. The coordinator's sentence explains a refusal
        (name taken, invalid email, password too short)."""
        try:
            reply = self._users.Register(
                users_pb2.RegisterRequest(username=username, email=email, password=password),
                timeout=self.call_timeout_s,
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "create the account") from None
        if not reply.success:
            raise RequestRefused(reply.message or "The coordinator refused to create the account.")
        return int(reply.user_id)

    def login(self, username: str, password: str) -> UserSession:
        try:
            reply = self._users.Login(
                users_pb2.LoginRequest(username=username, password=password),
                timeout=self.call_timeout_s,
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "sign in") from None
        session = user_session_from_pb(reply)
        self.token = session.token
        return session

    def refresh(self, refresh_token: str) -> UserSession:
        """Exchange a refresh token (single use) for a new pair; the new access token is kept."""
        try:
            reply = self._users.RefreshToken(
                users_pb2.RefreshTokenRequest(refresh_token=refresh_token),
                timeout=self.call_timeout_s,
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "renew the session") from None
        session = user_session_from_pb(reply)
        self.token = session.token
        return session

    # -- wallet --

    def balance(self) -> int:
        """The signed-in user's balance in micro-CPT."""
        try:
            reply = self._tokens.GetBalance(
                tokens_pb2.GetBalanceRequest(),
                metadata=self._metadata(),
                timeout=self.call_timeout_s,
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "read the balance") from None
        return int(reply.balance_micro)

    def transactions(
        self, *, page_size: int = 50, page_token: str = ""
    ) -> tuple[list[LedgerRow], str]:
        """One page of the statement, newest first, and the token of the next page ("" at the end)."""
        try:
            reply = self._tokens.ListTransactions(
                tokens_pb2.ListTransactionsRequest(page_size=page_size, page_token=page_token),
                metadata=self._metadata(),
                timeout=self.call_timeout_s,
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "read the wallet history") from None
        rows = [
            LedgerRow(
                transaction_id=row.transaction_id,
                kind=row.kind,
                amount_micro=int(row.amount_micro),
                counterparty=row.counterparty,
                at=datetime.fromtimestamp(row.timestamp, UTC),
                memo=row.memo,
                balance_after_micro=int(row.balance_after_micro),
            )
            for row in reply.transactions
        ]
        return rows, reply.next_page_token

    def history_since(self, since: datetime, *, max_rows: int = 5_000) -> list[LedgerRow]:
        """Every statement row at or after ``since`` (newest first), at most ``max_rows``."""
        rows: list[LedgerRow] = []
        token = ""
        while len(rows) < max_rows:
            page, token = self.transactions(page_size=200, page_token=token)
            keep = [row for row in page if row.at >= since]
            rows.extend(keep)
            if not token or len(keep) < len(page):
                break
        return rows[:max_rows]

    def transfer(
        self, recipient: str, amount_micro: int, *, memo: str = "", idempotency_key: str = ""
    ) -> TransferReceipt:
        """Send CPT to another user. One key per intended transfer: a retry with the same key never
        pays twice (a fresh one is made when none is given)."""
        try:
            reply = self._tokens.Transfer(
                tokens_pb2.TransferRequest(
                    recipient=recipient,
                    amount_micro=amount_micro,
                    memo=memo,
                    idempotency_key=idempotency_key or uuid.uuid4().hex,
                ),
                metadata=self._metadata(),
                timeout=self.call_timeout_s,
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "send the transfer") from None
        if not reply.success:
            raise RequestRefused(reply.message or "The coordinator refused the transfer.")
        return TransferReceipt(reply.transaction_id, int(reply.new_balance_micro))
