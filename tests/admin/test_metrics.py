"""Prometheus metrics at /metrics: each listed family is exposed, and the values move with real traffic - a
job leased, verified and paid; heartbeats and gRPC calls over the wire; an expired lease; HTTP requests by
route template. Each coordinator has its own registry, so two in one process do not mix."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select

from coordinator.jobs.models import Task
from coordinator.scheduling.service import PollRequest
from shared_proto.v1 import nodes_pb2, tokens_pb2, worker_pb2, worker_pb2_grpc
from tests.admin.conftest import Admin
from tests.admin.helpers import funded, submit, volunteer
from tests.e2e.cluster import cluster
from tests.jobs.helpers import run_on_loop
from tests.support import RunningCoordinator, auth, bearer

WORKER = "/hivemind.v1.WorkerService"
TOKENS = "/hivemind.v1.TokenService"
USERS = "/hivemind.v1.UserService"
JOBS = "/hivemind.v1.JobService"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
FAMILIES = [
    "hivemind_queue_depth",
    "hivemind_leases_granted",
    "hivemind_leases_expired",
    "hivemind_submit_to_lease_seconds",
    "hivemind_nodes_online",
    "hivemind_heartbeats",
    "hivemind_ledger_transactions",
    "hivemind_verification_outcomes",
    "hivemind_grpc_requests",
    "hivemind_grpc_request_duration_seconds",
    "hivemind_http_requests",
    "hivemind_http_request_duration_seconds",
]


def scrape(c: RunningCoordinator) -> Samples:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    r = c.http.get("/metrics")
    assert r.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_every_family_is_exposed_from_the_start(sqlite_coordinator: RunningCoordinator) -> None:
    text = sqlite_coordinator.http.get("/metrics").text
    exposed = {family.name for family in text_string_to_metric_families(text)}
    assert set(FAMILIES) <= exposed, set(FAMILIES) - exposed
    samples = scrape(sqlite_coordinator)
    for outcome in ("agreed", "disagreed", "quarantined"):
        assert value(samples, "hivemind_verification_outcomes_total", outcome=outcome) == 0


def test_values_move_with_real_traffic(admin: Admin) -> None:
    c = admin.c
    start = scrape(c)
    _, carol = funded(c, "carol")
    urgent = submit(c, carol, name="urgent", priority=5)
    submit(c, carol, name="later")
    queued = scrape(c)
    assert value(queued, "hivemind_queue_depth", priority="5") == 1
    assert value(queued, "hivemind_queue_depth", priority="0") == 1

    # the urgent job: three volunteers, one of whom disagrees and is outvoted
    first, second, third = volunteer(c), volunteer(c), volunteer(c)
    assert first.run_one({"out.txt": b"42\n"}, b"42\n", []) == (urgent, first_task(c, urgent))
    assert second.run_one({"out.txt": b"41\n"}, b"41\n", []) is not None
    assert third.run_one({"out.txt": b"42\n"}, b"42\n", []) is not None
    job = c.http.get(f"/api/v1/jobs/{urgent}", headers=bearer(carol)).json()
    assert job["state"] == "completed"

    # a worker heartbeats over gRPC with its node credential, and a call is refused over gRPC
    worker = worker_pb2_grpc.WorkerServiceStub(c.channel)
    credential = register_credential(c)
    worker.Heartbeat(worker_pb2.HeartbeatRequest(status="idle"), metadata=auth(credential))
    with pytest.raises(grpc.RpcError):
        c.tokens.GetBalance(tokens_pb2.GetBalanceRequest())

    after = scrape(c)
    granted = "hivemind_leases_granted_total"
    assert value(after, granted) - value(start, granted) == 3
    assert value(after, "hivemind_queue_depth", priority="5") == 0
    assert value(after, "hivemind_queue_depth", priority="0") == 1
    # one task had its first lease (the other job's task is still queued)
    assert value(after, "hivemind_submit_to_lease_seconds_count") == 1
    assert value(after, "hivemind_verification_outcomes_total", outcome="agreed") == 2
    assert value(after, "hivemind_verification_outcomes_total", outcome="disagreed") == 1
    kinds = {"grant": 1, "escrow_hold": 2, "task_payment": 1, "escrow_refund": 1}
    for kind, count in kinds.items():
        assert value(after, "hivemind_ledger_transactions_total", kind=kind) == count, kind
    assert value(after, "hivemind_nodes_online") == 4
    assert value(after, "hivemind_heartbeats_total") == 1
    grpc_calls = "hivemind_grpc_requests_total"
    assert value(after, grpc_calls, method=f"{WORKER}/Heartbeat", code="OK") == 1
    assert value(after, grpc_calls, method=f"{TOKENS}/GetBalance", code="UNAUTHENTICATED") == 1
    logins = value(after, "hivemind_grpc_request_duration_seconds_count", method=f"{USERS}/Login")
    assert logins >= 2
    http = "hivemind_http_requests_total"
    assert value(after, http, method="GET", route="/api/v1/jobs/{job_id}", status="200") == 1
    assert value(after, http, method="POST", route="/api/v1/jobs", status="201") == 2
    scrapes = "hivemind_http_request_duration_seconds_count"
    assert value(after, scrapes, method="GET", route="/metrics") >= 2


def first_task(c: RunningCoordinator, job_id: str) -> str:
    with c.coordinator.db.read() as session:
        return session.exec(select(Task.id).where(Task.job_id == job_id)).one()


def register_credential(c: RunningCoordinator) -> str:
    _, token = c.signup("hb-owner")
    reply = c.nodes.RegisterWorkerNode(
        nodes_pb2.RegisterWorkerNodeRequest(hostname="hb-pc", cpu_cores=2, memory_gb=4.0),
        metadata=auth(token),
    )
    return str(reply.node_credential)


def test_a_lease_without_heartbeats_is_counted_expired(tmp_path: Path) -> None:
    with RunningCoordinator.start(
        db_url=f"sqlite:///{tmp_path / 'c.db'}", data_dir=tmp_path, lease_ttl_s=1
    ) as c:
        _, carol = funded(c, "carol")
        submit(c, carol)
        worker = volunteer(c)
        request = PollRequest(1, 8, 16, 0, 0, True, False)
        assert len(run_on_loop(c, c.coordinator.dispatcher.poll(worker.node, request))) == 1
        deadline = time.monotonic() + 30
        while value(scrape(c), "hivemind_leases_expired_total") < 1:
            assert time.monotonic() < deadline, "the silent lease was never taken back"
            time.sleep(0.2)
        # another coordinator in this process has its own registry: it saw none of this
        with RunningCoordinator.start(
            db_url=f"sqlite:///{tmp_path / 'other.db'}", data_dir=tmp_path / "other"
        ) as other:
            assert value(scrape(other), "hivemind_leases_expired_total") == 0
            assert value(scrape(other), "hivemind_leases_granted_total") == 0


def test_a_real_worker_moves_the_counters(tmp_path: Path) -> None:
    """A real worker runs a real container: leases granted and ledger payments show up in /metrics."""
    with cluster(f"sqlite:///{tmp_path / 'c.db'}", tmp_path) as cl:
        cl.user("alice", grant_cpt=10)
        cl.add_worker("bob")
        cl.add_worker("carol")
        job_id = cl.submit(
            "alice", command=["sh", "-c", "echo hi > out.txt"], output_paths=["out.txt"]
        )
        assert cl.wait("alice", job_id).state == "completed"
        assert cl.download("alice", job_id, "out.txt") == b"hi\n"
        samples = scrape(cl.running)
        assert value(samples, "hivemind_leases_granted_total") >= 2
        assert value(samples, "hivemind_ledger_transactions_total", kind="task_payment") == 1
        assert value(samples, "hivemind_heartbeats_total") >= 1
        calls = "hivemind_grpc_requests_total"
        polls = value(samples, calls, method=f"{WORKER}/PollTasks", code="OK")
        assert polls >= 2
        downloads = value(samples, calls, method=f"{JOBS}/DownloadResult", code="OK")
        assert downloads == 1
        assert value(samples, "hivemind_nodes_online") == 2
