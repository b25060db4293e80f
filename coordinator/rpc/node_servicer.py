"""NodeManagerService over gRPC: RegisterWorkerNode (user token), ReportStatus (node credential) and
HealthCheck (open; a node credential, when sent, also records that node's liveness)."""

from __future__ import annotations

from typing import Any

import grpc

from coordinator.clock import to_unix
from coordinator.errors import Unauthenticated
from coordinator.nodes.models import Node
from coordinator.nodes.service import CREDENTIAL_PREFIX, NodeHardware, NodeRegistry
from coordinator.rpc.common import RpcBase, abort_with, bearer_token
from shared_proto.v1 import nodes_pb2, nodes_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def _hardware(request: nodes_pb2.RegisterWorkerNodeRequest) -> NodeHardware:
    return NodeHardware(
        hostname=request.hostname,
        cpu_cores=request.cpu_cores,
        memory_gb=request.memory_gb,
        cpu_score=request.cpu_score,
        gpu_score=request.gpu_score,
        gpu_memory_gb=request.gpu_memory_gb,
        location=request.location,
        port=request.port,
        gpu_name=request.gpu_name,
        docker_status=request.docker_status,
    )


class NodeServicer(RpcBase, nodes_pb2_grpc.NodeManagerServiceServicer):
    def __init__(self, registry: NodeRegistry, **base: Any) -> None:
        super().__init__(**base)
        self.registry = registry

    async def node(self, context: Context) -> Node:
        """The node whose credential came in ``authorization: Bearer hmn_...``; aborts UNAUTHENTICATED."""
        credential = bearer_token(context)
        if not credential:
            await abort_with(
                context,
                Unauthenticated(
                    "This call needs the node credential (authorization: Bearer hmn_...). "
                    "Register the node from the HiveMind app first."
                ),
            )
        return await self.call(context, self.registry.authenticate, credential)

    async def RegisterWorkerNode(
        self, request: nodes_pb2.RegisterWorkerNodeRequest, context: Context
    ) -> nodes_pb2.RegisterWorkerNodeResponse:
        owner = await self.user(context)
        registration = await self.call(
            context,
            lambda: self.registry.register(
                owner, _hardware(request), node_id=request.node_id or None
            ),
        )
        node = registration.node
        verb = "re-registered" if request.node_id else "registered"
        return nodes_pb2.RegisterWorkerNodeResponse(
            success=True,
            message=f"Node '{node.hostname}' is {verb} to {owner.username}. Keep its credential secret.",
            node_id=node.id,
            node_credential=registration.credential,
        )

    async def ReportStatus(
        self, request: nodes_pb2.ReportStatusRequest, context: Context
    ) -> nodes_pb2.StatusResponse:
        node = await self.node(context)
        status = await self.call(
            context,
            lambda: self.registry.report_status(
                node,
                request.status,
                cpu_usage_percent=request.cpu_usage_percent,
                memory_usage_percent=request.memory_usage_percent,
                gpu_usage_percent=request.gpu_usage_percent,
                message=request.message,
                node_id=request.node_id,
            ),
        )
        return nodes_pb2.StatusResponse(
            success=True, message=f"Status '{status}' recorded.", status=status
        )

    async def HealthCheck(
        self, request: nodes_pb2.HealthCheckRequest, context: Context
    ) -> nodes_pb2.HealthCheckResponse:
        # Only a node credential means anything here; other bearer tokens (a user's JWT sent by a client
        # that attaches it to every call) are ignored, as the call is open to anyone.
        if bearer_token(context).startswith(CREDENTIAL_PREFIX + "_"):
            node = await self.node(context)
            seen = await self.call(context, self.registry.heartbeat, node)
            return nodes_pb2.HealthCheckResponse(
                healthy=True,
                timestamp=to_unix(seen),
                message=f"Coordinator is healthy; heartbeat recorded for node '{node.hostname}'.",
            )
        return nodes_pb2.HealthCheckResponse(
            healthy=True,
            timestamp=to_unix(self.registry.clock()),
            message="Coordinator is healthy.",
        )
