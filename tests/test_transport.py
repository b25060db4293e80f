"""The gRPC server as infrastructure: health service, reflection, open endpoints, hostile bytes."""

from __future__ import annotations

import contextlib
import socket

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from shared_proto.v1 import nodes_pb2, tokens_pb2
from tests.support import RunningCoordinator, auth


def test_standard_health_service_reports_serving(sqlite_coordinator: RunningCoordinator) -> None:
    stub = health_pb2_grpc.HealthStub(sqlite_coordinator.channel)
    for service in ("", "hivemind.v1.TokenService"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(sqlite_coordinator: RunningCoordinator) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(sqlite_coordinator.channel)
    replies = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {
        "hivemind.v1.UserService",
        "hivemind.v1.TokenService",
        "hivemind.v1.NodeManagerService",
    } <= names
    assert "grpc.health.v1.Health" in names


def test_seed_healthcheck_needs_no_token(sqlite_coordinator: RunningCoordinator) -> None:
    reply = sqlite_coordinator.nodes.HealthCheck(nodes_pb2.HealthCheckRequest())
    assert reply.healthy and reply.timestamp > 1_700_000_000


def test_garbage_bytes_do_not_hurt_the_server(sqlite_coordinator: RunningCoordinator) -> None:
    payloads = [
        b"\x00" * 64,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(range(256)) * 8,
        bytes(range(256)) * 64,
    ]
    for payload in payloads:
        with socket.create_connection(
            ("127.0.0.1", sqlite_coordinator.coordinator.grpc_port), timeout=5
        ) as s:
            s.sendall(payload)
            s.settimeout(2)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                s.recv(4096)
    # Still serving real clients afterwards, and nothing was written by the garbage.
    _, token = sqlite_coordinator.signup("ada")
    reply = sqlite_coordinator.tokens.GetBalance(
        tokens_pb2.GetBalanceRequest(), metadata=auth(token)
    )
    assert reply.balance_micro == 0


def test_unknown_method_is_unimplemented(sqlite_coordinator: RunningCoordinator) -> None:
    call = sqlite_coordinator.channel.unary_unary("/hivemind.v1.TokenService/Steal")
    try:
        call(b"")
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.UNIMPLEMENTED
    else:
        raise AssertionError("an unknown method answered")
