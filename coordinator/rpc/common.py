"""What every servicer shares: running blocking domain work off the event loop, authentication from
metadata, and the one mapping from domain errors to gRPC status codes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar

import grpc

from coordinator.accounts.tokens import Principal, TokenIssuer
from coordinator.errors import HiveMindError, Unauthenticated, status_for

logger = logging.getLogger(__name__)

T = TypeVar("T")


def bearer_token(context: grpc.aio.ServicerContext[Any, Any], fallback: str = "") -> str:
    """The token from ``authorization: Bearer <token>`` metadata, else the seed-style ``token`` field."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return ""
    return fallback


def peer_address(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The client's address without the port: ``ipv4:127.0.0.1:5555`` -> ``127.0.0.1``."""
    peer = context.peer() or "unknown"
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]").replace("%5B", "").replace("%5D", "")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], exc: HiveMindError) -> NoReturn:
    code_name, _ = status_for(exc)
    await context.abort(getattr(grpc.StatusCode, code_name), exc.message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


class RpcBase:
    """Base for servicers: ``self.call`` runs a blocking domain function in the DB thread pool and turns a
    domain error into the mapped gRPC status; ``self.user`` authenticates the caller."""

    def __init__(self, issuer: TokenIssuer, executor: ThreadPoolExecutor) -> None:
        self.issuer = issuer
        self.executor = executor

    async def call(
        self, context: grpc.aio.ServicerContext[Any, Any], fn: Callable[..., T], *args: Any
    ) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, fn, *args)
        except HiveMindError as exc:
            await abort_with(context, exc)

    async def guard(
        self, context: grpc.aio.ServicerContext[Any, Any], awaitable: Awaitable[T]
    ) -> T:
        """Await a domain coroutine that runs on the event loop (the dispatcher's) and turn a domain error
        into the mapped gRPC status, as ``call`` does for blocking functions."""
        try:
            return await awaitable
        except HiveMindError as exc:
            await abort_with(context, exc)

    async def user(
        self, context: grpc.aio.ServicerContext[Any, Any], token_field: str = ""
    ) -> Principal:
        try:
            return self.issuer.verify(bearer_token(context, token_field))
        except Unauthenticated as exc:
            await abort_with(context, exc)
