"""The wire contract: committed generated code matches the .proto files, and the seed's names are kept."""

from __future__ import annotations

import filecmp
from pathlib import Path

from shared_proto import generate
from shared_proto.v1 import nodes_pb2, tokens_pb2, users_pb2


def test_committed_generated_code_matches_the_protos(tmp_path: Path) -> None:
    fresh = generate.generate(tmp_path)
    assert fresh, "the generator produced nothing"
    for path in fresh:
        committed = generate.PROTO_DIR / path.name
        assert committed.exists(), (
            f"{path.name} is not committed; run python -m shared_proto.generate"
        )
        assert filecmp.cmp(path, committed, shallow=False), (
            f"{committed} differs from what the .proto files generate; run python -m shared_proto.generate"
        )
    committed_names = {
        p.name for p in generate.PROTO_DIR.iterdir() if p.name.endswith(generate.GENERATED_SUFFIXES)
    }
    assert committed_names == {p.name for p in fresh}, "stale generated files are committed"


def test_seed_names_are_kept() -> None:
    assert users_pb2.DESCRIPTOR.package == "hivemind.v1"
    assert set(users_pb2.DESCRIPTOR.services_by_name["UserService"].methods_by_name) >= {
        "Register",
        "Login",
    }
    assert set(tokens_pb2.DESCRIPTOR.services_by_name["TokenService"].methods_by_name) >= {
        "Transfer",
        "GetBalance",
    }
    assert set(nodes_pb2.DESCRIPTOR.services_by_name["NodeManagerService"].methods_by_name) == {
        "RegisterWorkerNode",
        "ReportStatus",
        "HealthCheck",
    }
    seed_node_fields = [
        "node_id", "hostname", "cpu_cores", "memory_gb", "cpu_score", "gpu_score",
        "gpu_memory_gb", "location", "port", "gpu_name", "docker_status",
    ]  # fmt: skip
    fields = nodes_pb2.RegisterWorkerNodeRequest.DESCRIPTOR.fields
    assert [(f.name, f.number) for f in fields] == [
        (n, i + 1) for i, n in enumerate(seed_node_fields)
    ]
    assert [f.name for f in nodes_pb2.HealthCheckResponse.DESCRIPTOR.fields] == [
        "healthy",
        "timestamp",
        "message",
    ]
    assert [f.name for f in nodes_pb2.StatusResponse.DESCRIPTOR.fields] == [
        "success",
        "message",
        "status",
    ]


def test_money_is_never_a_float() -> None:
    for module in (users_pb2, tokens_pb2, nodes_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            for f in message.fields:
                if "amount" in f.name or "balance" in f.name:
                    assert f.type == f.TYPE_INT64 and f.name.endswith("_micro"), (
                        f"{message.name}.{f.name}"
                    )
