"""What every servicer shares: running blocking domain work off the event loop, authentication from
metadata, and the one mapping from domain errors to gRPC status codes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar

import grpc

from coordinator.accounts.tokens import Principal, TokenIssuer
from coordinator.errors import HiveMindError, Unauthenticated, status_for
from coordinator.metrics import Metrics

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


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Counts every gRPC call by method and status code and times it (coordinator/metrics.py). It wraps the
    method's handler, so the code is the one the servicer ended with: OK, the code of ``abort_with``, or
    UNKNOWN for an exception nobody mapped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        record = functools.partial(self._record, method)
        h: Any = handler
        if h.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _timed_unary(h.unary_unary, record),
                request_deserializer=h.request_deserializer,
                response_serializer=h.response_serializer,
            )
        if h.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _timed_unary(h.stream_unary, record),
                request_deserializer=h.request_deserializer,
                response_serializer=h.response_serializer,
            )
        if h.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _timed_stream(h.unary_stream, record),
                request_deserializer=h.request_deserializer,
                response_serializer=h.response_serializer,
            )
        if h.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _timed_stream(h.stream_stream, record),
                request_deserializer=h.request_deserializer,
                response_serializer=h.response_serializer,
            )
        return handler  # pragma: no cover - a handler has one of the four shapes

    def _record(self, method: str, code: str, seconds: float) -> None:
        self.metrics.grpc_requests.labels(method, code).inc()
        self.metrics.grpc_latency.labels(method).observe(seconds)


def _final_code(context: Any, exc: BaseException | None) -> str:
    code = None
    with contextlib.suppress(Exception):
        code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if exc is None:
        return "OK"
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    return "UNKNOWN"


def _timed_unary(
    behavior: Callable[[Any, Any], Awaitable[Any]], record: Callable[[str, float], None]
) -> Callable[[Any, Any], Awaitable[Any]]:
    async def timed(request: Any, context: Any) -> Any:
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            return await behavior(request, context)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            record(_final_code(context, failure), time.perf_counter() - start)

    return timed


def _timed_stream(
    behavior: Callable[[Any, Any], Any], record: Callable[[str, float], None]
) -> Callable[[Any, Any], AsyncIterator[Any]]:
    async def timed(request: Any, context: Any) -> AsyncIterator[Any]:
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            result = behavior(request, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            else:  # a coroutine that writes with context.write()
                await result
        except BaseException as exc:
            failure = exc
            raise
        finally:
            record(_final_code(context, failure), time.perf_counter() - start)

    return timed
