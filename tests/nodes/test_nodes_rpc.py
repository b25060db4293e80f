"""NodeManagerService over real gRPC, checked through the owner's REST view, on both databases."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import update
from sqlmodel import select

from coordinator.accounts.tokens import hash_secret
from coordinator.clock import utcnow
from coordinator.nodes.models import Node
from shared_proto.v1 import nodes_pb2
from tests.nodes.helpers import code, details, hardware, node_count, register_node, report
from tests.support import RunningCoordinator, auth, bearer


def _rest_node(running: RunningCoordinator, token: str, node_id: str) -> dict[str, Any]:
    r = running.http.get(f"/api/v1/nodes/{node_id}", headers=bearer(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_register_binds_the_node_to_the_user(coordinator: RunningCoordinator) -> None:
    ada_id, ada = coordinator.signup("ada")
    reply = register_node(coordinator, ada)
    assert reply.success and "ada-workstation" in reply.message
    assert str(uuid.UUID(reply.node_id)) == reply.node_id
    assert reply.node_credential.startswith("hmn_")

    listed = coordinator.http.get("/api/v1/nodes", headers=bearer(ada))
    assert listed.status_code == 200
    [node] = listed.json()["nodes"]
    assert node["id"] == reply.node_id and node["owner_id"] == ada_id
    assert (node["hostname"], node["cpu_cores"], node["memory_gb"]) == ("ada-workstation", 16, 64.0)
    assert (node["gpu_name"], node["gpu_memory_gb"], node["docker_status"]) == (
        "NVIDIA RTX 4090",
        24.0,
        True,
    )
    assert node["status"] == "registered" and node["online"] is True and node["revoked"] is False
    # The secret is shown once and stored only as its hash; REST shows neither.
    with coordinator.coordinator.db.read() as s:
        row = s.exec(select(Node).where(Node.id == reply.node_id)).one()
    assert row.credential_hash == hash_secret(reply.node_credential)
    assert reply.node_credential not in listed.text and row.credential_hash not in listed.text
    assert "credential" not in listed.text

    # Another user sees none of it.
    _, bob = coordinator.signup("bob")
    assert coordinator.http.get("/api/v1/nodes", headers=bearer(bob)).json() == {"nodes": []}


def test_register_needs_a_user_token(sqlite_coordinator: RunningCoordinator) -> None:
    c = sqlite_coordinator
    with pytest.raises(grpc.RpcError) as exc:
        c.nodes.RegisterWorkerNode(hardware())
    assert code(exc) == grpc.StatusCode.UNAUTHENTICATED and "Sign in" in details(exc)
    _, ada = c.signup("ada")
    credential = register_node(c, ada).node_credential
    with pytest.raises(grpc.RpcError) as exc:
        register_node(c, credential)  # a node credential is not a user token
    assert code(exc) == grpc.StatusCode.UNAUTHENTICATED
    assert node_count(c) == 1


def test_report_status_updates_what_the_owner_sees(coordinator: RunningCoordinator) -> None:
    _, ada = coordinator.signup("ada")
    reg = register_node(coordinator, ada)
    reply = report(
        coordinator,
        reg.node_credential,
        "busy",
        node_id=reg.node_id,
        cpu_usage_percent=75.5,
        memory_usage_percent=40.0,
        gpu_usage_percent=99.0,
        message="running a job",
    )
    assert reply.success and reply.status == "busy"
    node = _rest_node(coordinator, ada, reg.node_id)
    assert (node["status"], node["status_message"]) == ("busy", "running a job")
    assert (node["cpu_usage_percent"], node["memory_usage_percent"], node["gpu_usage_percent"]) == (
        75.5,
        40.0,
        99.0,
    )
    assert node["online"] is True

    # The node id may be left out: the credential says which node it is.
    assert report(coordinator, reg.node_credential, "offline").status == "offline"
    node = _rest_node(coordinator, ada, reg.node_id)
    assert node["status"] == "offline" and node["online"] is False


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"status": "sleeping"}, "idle, busy, paused, offline"),
        ({"status": ""}, "idle, busy, paused, offline"),
        ({"status": "registered"}, "idle, busy, paused, offline"),
        ({"status": "idle", "cpu_usage_percent": 100.5}, "CPU usage"),
        ({"status": "idle", "memory_usage_percent": -1.0}, "memory usage"),
        ({"status": "idle", "gpu_usage_percent": math.nan}, "finite"),
        ({"status": "idle", "message": "x" * 501}, "limit is 500"),
    ],
)
def test_report_status_refuses_bad_values(
    sqlite_coordinator: RunningCoordinator, fields: dict[str, Any], needle: str
) -> None:
    c = sqlite_coordinator
    _, ada = c.signup("ada")
    reg = register_node(c, ada)
    with pytest.raises(grpc.RpcError) as exc:
        c.nodes.ReportStatus(
            nodes_pb2.ReportStatusRequest(**fields), metadata=auth(reg.node_credential)
        )
    assert code(exc) == grpc.StatusCode.INVALID_ARGUMENT and needle in details(exc)
    assert _rest_node(c, ada, reg.node_id)["status"] == "registered"


def test_report_status_needs_this_nodes_own_valid_credential(
    coordinator: RunningCoordinator,
) -> None:
    _, ada = coordinator.signup("ada")
    first = register_node(coordinator, ada)
    second = register_node(coordinator, ada, hostname="ada-laptop")

    with pytest.raises(grpc.RpcError) as exc:
        coordinator.nodes.ReportStatus(nodes_pb2.ReportStatusRequest(status="idle"))
    assert code(exc) == grpc.StatusCode.UNAUTHENTICATED and "node credential" in details(exc)

    with pytest.raises(grpc.RpcError) as exc:
        report(coordinator, ada, node_id=first.node_id)  # the owner's user token
    assert code(exc) == grpc.StatusCode.UNAUTHENTICATED and "not a user access token" in details(
        exc
    )

    with pytest.raises(grpc.RpcError) as exc:
        report(coordinator, "hmn_" + "A" * 43)
    assert code(exc) == grpc.StatusCode.UNAUTHENTICATED and "not valid" in details(exc)

    with pytest.raises(grpc.RpcError) as exc:
        report(
            coordinator, second.node_credential, "busy", node_id=first.node_id
        )  # another node's credential
    assert code(exc) == grpc.StatusCode.PERMISSION_DENIED
    assert _rest_node(coordinator, ada, first.node_id)["status"] == "registered"

    r = coordinator.http.post(f"/api/v1/nodes/{first.node_id}/revoke", headers=bearer(ada))
    assert r.status_code == 200
    with pytest.raises(grpc.RpcError) as exc:
        report(coordinator, first.node_credential, "busy", node_id=first.node_id)
    assert code(exc) == grpc.StatusCode.UNAUTHENTICATED
    assert (
        details(exc)
        == "This node's credential was revoked. Register the node again from the HiveMind app."
    )
    # Revoking one node leaves the other working.
    assert report(coordinator, second.node_credential, "busy").success


def test_healthcheck_is_open_and_records_a_nodes_liveness(coordinator: RunningCoordinator) -> None:
    reply = coordinator.nodes.HealthCheck(nodes_pb2.HealthCheckRequest())
    assert reply.healthy and reply.timestamp > 1_700_000_000 and reply.message

    _, ada = coordinator.signup("ada")
    reg = register_node(coordinator, ada)
    # A user's token is not a node credential: it is ignored, and the call still answers.
    assert coordinator.nodes.HealthCheck(nodes_pb2.HealthCheckRequest(), metadata=auth(ada)).healthy

    # The node has gone quiet for longer than the online window: the owner sees it offline...
    with coordinator.coordinator.db.write() as s:
        s.execute(update(Node).values(last_seen_at=utcnow() - timedelta(minutes=10)))
    assert _rest_node(coordinator, ada, reg.node_id)["online"] is False
    # ...until its next heartbeat.
    beat = coordinator.nodes.HealthCheck(
        nodes_pb2.HealthCheckRequest(), metadata=auth(reg.node_credential)
    )
    assert beat.healthy and "ada-workstation" in beat.message
    assert _rest_node(coordinator, ada, reg.node_id)["online"] is True

    with pytest.raises(grpc.RpcError) as exc:
        coordinator.nodes.HealthCheck(
            nodes_pb2.HealthCheckRequest(), metadata=auth("hmn_not-a-real-one")
        )
    assert code(exc) == grpc.StatusCode.UNAUTHENTICATED
    coordinator.http.post(f"/api/v1/nodes/{reg.node_id}/revoke", headers=bearer(ada))
    with pytest.raises(grpc.RpcError) as exc:
        coordinator.nodes.HealthCheck(
            nodes_pb2.HealthCheckRequest(), metadata=auth(reg.node_credential)
        )
    assert code(exc) == grpc.StatusCode.UNAUTHENTICATED and "revoked" in details(exc)


BAD_HARDWARE: list[tuple[dict[str, Any], str]] = [
    ({"cpu_cores": -4}, "CPU cores"),
    ({"cpu_cores": 0}, "CPU cores"),
    ({"cpu_cores": 4097}, "CPU cores"),
    ({"cpu_score": math.nan}, "finite"),
    ({"gpu_score": math.inf}, "finite"),
    ({"cpu_score": -1.0}, "CPU score"),
    ({"memory_gb": 0.0}, "memory size"),
    ({"memory_gb": -8.0}, "memory size"),
    ({"memory_gb": math.inf}, "finite"),
    ({"memory_gb": 70000.0}, "memory size"),
    ({"gpu_memory_gb": -1.0}, "GPU memory"),
    ({"hostname": "h" * 256}, "limit is 255"),
    ({"hostname": ""}, "hostname is empty"),
    ({"hostname": "   "}, "hostname is empty"),
    ({"hostname": "evil\x00host"}, "control characters"),
    ({"port": 70000}, "port"),
    ({"port": -1}, "port"),
    ({"location": "x" * 129}, "location"),
    ({"gpu_name": "g" * 129}, "GPU name"),
]


def test_bad_hardware_is_refused_and_nothing_is_written(coordinator: RunningCoordinator) -> None:
    _, ada = coordinator.signup("ada")
    for overrides, needle in BAD_HARDWARE:
        with pytest.raises(grpc.RpcError) as exc:
            register_node(coordinator, ada, **overrides)
        assert code(exc) == grpc.StatusCode.INVALID_ARGUMENT, overrides
        assert needle in details(exc), (overrides, details(exc))
    assert node_count(coordinator) == 0
    # The limits themselves are accepted.
    edge: dict[str, Any] = {
        "hostname": "h" * 255,
        "cpu_cores": 4096,
        "memory_gb": 65536.0,
        "port": 65535,
        "cpu_score": 0.0,
    }
    assert register_node(coordinator, ada, **edge).success
    assert node_count(coordinator) == 1


def test_re_register_keeps_the_id_and_replaces_the_credential(
    coordinator: RunningCoordinator,
) -> None:
    _, ada = coordinator.signup("ada")
    first = register_node(coordinator, ada)
    again = register_node(coordinator, ada, node_id=first.node_id, memory_gb=128.0, gpu_name="")
    assert again.node_id == first.node_id and again.node_credential != first.node_credential
    assert node_count(coordinator) == 1

    with pytest.raises(grpc.RpcError) as exc:
        report(coordinator, first.node_credential)
    assert code(exc) == grpc.StatusCode.UNAUTHENTICATED
    assert report(coordinator, again.node_credential, "idle", node_id=first.node_id).success
    node = _rest_node(coordinator, ada, first.node_id)
    assert (node["memory_gb"], node["gpu_name"], node["status"]) == (128.0, "", "idle")

    # After a revocation, registering again is how the owner brings the node back.
    coordinator.http.post(f"/api/v1/nodes/{first.node_id}/revoke", headers=bearer(ada))
    back = register_node(coordinator, ada, node_id=first.node_id)
    assert report(coordinator, back.node_credential).success
    assert _rest_node(coordinator, ada, first.node_id)["revoked"] is False


def test_re_register_refuses_someone_elses_or_an_unknown_node(
    coordinator: RunningCoordinator,
) -> None:
    _, ada = coordinator.signup("ada")
    _, bob = coordinator.signup("bob")
    reg = register_node(coordinator, ada)
    with pytest.raises(grpc.RpcError) as exc:
        register_node(coordinator, bob, node_id=reg.node_id, hostname="stolen")
    assert code(exc) == grpc.StatusCode.PERMISSION_DENIED and "another account" in details(exc)
    for unknown in (str(uuid.uuid4()), "x" * 5000):
        with pytest.raises(grpc.RpcError) as exc:
            register_node(coordinator, bob, node_id=unknown)
        assert code(exc) == grpc.StatusCode.NOT_FOUND and "register without a node id" in details(
            exc
        )
    # Ada's node and credential are untouched.
    assert _rest_node(coordinator, ada, reg.node_id)["hostname"] == "ada-workstation"
    assert report(coordinator, reg.node_credential).success
    assert node_count(coordinator) == 1
