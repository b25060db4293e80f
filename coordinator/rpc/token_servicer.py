"""TokenService over gRPC: Transfer, GetBalance, ListTransactions. Transport only: the rules live in
coordinator/ledger/service.py (``Ledger``), shared with the REST routes."""

from __future__ import annotations

from typing import Any

import grpc

from coordinator.clock import Clock, to_unix
from coordinator.db import Database
from coordinator.ledger.service import DEFAULT_PAGE_SIZE, TransferRequest, format_cpt
from coordinator.ledger.usecases import Ledger
from coordinator.rpc.common import RpcBase
from shared_proto.v1 import tokens_pb2, tokens_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class TokenServicer(RpcBase, tokens_pb2_grpc.TokenServiceServicer):
    def __init__(self, db: Database, clock: Clock, **base: Any) -> None:
        super().__init__(**base)
        self.ledger = Ledger(db, clock)

    async def Transfer(
        self, request: tokens_pb2.TransferRequest, context: Context
    ) -> tokens_pb2.TransferResponse:
        user = await self.user(context, request.token)
        result = await self.guard(
            context,
            self.ledger.transfer_async(
                self.executor,
                TransferRequest(
                    user.user_id,
                    request.recipient,
                    request.amount_micro,
                    idempotency_key=request.idempotency_key or None,  # proto3: "" means not sent
                    memo=request.memo,
                ),
            ),
        )
        return tokens_pb2.TransferResponse(
            success=True,
            message=result.message,
            new_balance_micro=result.new_balance_micro,
            transaction_id=str(result.transaction_id),
        )

    async def GetBalance(
        self, request: tokens_pb2.GetBalanceRequest, context: Context
    ) -> tokens_pb2.GetBalanceResponse:
        user = await self.user(context, request.token)
        balance = await self.call(context, self.ledger.balance, user, request.username)
        return tokens_pb2.GetBalanceResponse(
            success=True,
            message=f"{balance.username} holds {format_cpt(balance.balance_micro)}.",
            balance_micro=balance.balance_micro,
            username=balance.username,
        )

    async def ListTransactions(
        self, request: tokens_pb2.ListTransactionsRequest, context: Context
    ) -> tokens_pb2.ListTransactionsResponse:
        user = await self.user(context, request.token)
        rows, next_token = await self.call(
            context,
            lambda: self.ledger.statement(
                user,
                username=request.username,
                page_size=request.page_size or DEFAULT_PAGE_SIZE,  # proto3: 0 means not sent
                page_token=request.page_token,
            ),
        )
        return tokens_pb2.ListTransactionsResponse(
            success=True,
            transactions=[
                tokens_pb2.TransactionRow(
                    transaction_id=str(row.transaction_id),
                    kind=row.kind,
                    amount_micro=row.amount_micro,
                    counterparty=row.counterparty,
                    timestamp=to_unix(row.created_at),
                    memo=row.memo,
                    balance_after_micro=row.balance_after_micro,
                )
                for row in rows
            ],
            next_page_token=next_token,
        )
