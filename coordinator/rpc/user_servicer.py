"""UserService over gRPC: Register, Login, RefreshToken."""

from __future__ import annotations

from typing import Any

import grpc

from coordinator.accounts.service import Accounts, TokenPair
from coordinator.rpc.common import RpcBase, peer_address
from shared_proto.v1 import users_pb2, users_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def _login_response(pair: TokenPair, message: str) -> users_pb2.LoginResponse:
    return users_pb2.LoginResponse(
        success=True,
        token=pair.access_token,
        message=message,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        role=pair.role,
    )


class UserServicer(RpcBase, users_pb2_grpc.UserServiceServicer):
    def __init__(self, accounts: Accounts, **base: Any) -> None:
        super().__init__(**base)
        self.accounts = accounts

    async def Register(
        self, request: users_pb2.RegisterRequest, context: Context
    ) -> users_pb2.RegisterResponse:
        user = await self.call(
            context, self.accounts.register, request.username, request.email, request.password
        )
        return users_pb2.RegisterResponse(
            success=True,
            message=f"Welcome, {user.username}. You can sign in now.",
            user_id=user.id or 0,
        )

    async def Login(
        self, request: users_pb2.LoginRequest, context: Context
    ) -> users_pb2.LoginResponse:
        pair = await self.call(
            context, self.accounts.login, request.username, request.password, peer_address(context)
        )
        return _login_response(pair, f"Signed in as {pair.username}.")

    async def RefreshToken(
        self, request: users_pb2.RefreshTokenRequest, context: Context
    ) -> users_pb2.LoginResponse:
        pair = await self.call(context, self.accounts.refresh, request.refresh_token)
        return _login_response(pair, "Session renewed.")
