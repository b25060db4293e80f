"""Helpers for node tests: a worker's registration request and small gRPC/DB conveniences."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from sqlmodel import func, select

from coordinator.nodes.models import Node
from shared_proto.v1 import nodes_pb2
from tests.support import RunningCoordinator, auth


def hardware(**overrides: Any) -> nodes_pb2.RegisterWorkerNodeRequest:
    """A plausible RegisterWorkerNode request (a 16-core workstation with a GPU), with ``overrides``."""
    fields: dict[str, Any] = {
        "hostname": "ada-workstation",
        "cpu_cores": 16,
        "memory_gb": 64.0,
        "cpu_score": 1234.5,
        "gpu_score": 880.0,
        "gpu_memory_gb": 24.0,
        "location": "Taipei",
        "port": 50052,
        "gpu_name": "NVIDIA RTX 4090",
        "docker_status": True,
    } | overrides
    return nodes_pb2.RegisterWorkerNodeRequest(**fields)


def register_node(
    running: RunningCoordinator, token: str, **overrides: Any
) -> nodes_pb2.RegisterWorkerNodeResponse:
    return running.nodes.RegisterWorkerNode(hardware(**overrides), metadata=auth(token))


def report(
    running: RunningCoordinator, credential: str, status: str = "idle", **fields: Any
) -> nodes_pb2.StatusResponse:
    return running.nodes.ReportStatus(
        nodes_pb2.ReportStatusRequest(status=status, **fields), metadata=auth(credential)
    )


def node_count(running: RunningCoordinator) -> int:
    with running.coordinator.db.read() as s:
        return int(s.exec(select(func.count()).select_from(Node)).one())


def code(exc: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return exc.value.code()


def details(exc: pytest.ExceptionInfo[grpc.RpcError]) -> str:
    return str(exc.value.details())
