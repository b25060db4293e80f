"""EstimateJob (gRPC), POST /api/v1/jobs/estimate and JobsClient.estimate against a real coordinator: the
figures to the micro-CPT for the price table in force, nothing held, and exactly submit's refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from client_gui.engine.coordinator_client import CoordinatorError
from client_gui.engine.jobs_client import JobEstimate, JobsClient
from shared_proto.v1 import jobs_pb2, jobs_pb2_grpc
from tests.jobs.conftest import JobsCoordinator
from tests.jobs.helpers import CPT, balance, counts, fund
from tests.support import PASSWORD, RunningCoordinator, auth, bearer


def spec(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "render",
        "image": "hivemind/busybox:latest",
        "command": ["sh", "-c", "echo hi"],
        "resources": {"cpu_cores": 2.0, "memory_gb": 1.0},
        "timeout_s": 600,
        "array_size": 3,
        "replicas": 2,
        "max_budget_micro": CPT,
    } | overrides


def signed_in(c: RunningCoordinator, name: str) -> tuple[int, JobsClient]:
    user_id = c.register(name)
    fund(c, user_id, 10 * CPT)
    client = JobsClient(c.grpc_target)
    client.login(name, PASSWORD)
    return user_id, client


# Worked by hand from the default price table (docs/REWARDS.md): 100 µCPT per normalized core-second,
# 10 µCPT per GB-second, a minimum of 1,000 µCPT per replica, CPU factor at most 4, 10 % fee.
# One replica at the full 600 s timeout on the fastest node: 2 cores × 600 s × 4 × 100 + 1 GB × 600 s × 10
# = 480,000 + 6,000 = 486,000; 3 tasks × 2 replicas = 6 of them: 2,916,000.
# One task per minute on the reference machine: (2 × 60 × 100 + 1 × 60 × 10) × 2 replicas = 25,200.
EXPECTED = JobEstimate(
    task_count=3,
    replicas=2,
    timeout_s=600,
    escrow_micro=CPT,
    max_cost_micro=CPT,
    full_timeout_cost_micro=2_916_000,
    min_cost_micro=6_000,
    task_minute_micro=25_200,
    platform_fee_bps=1_000,
)


def test_the_estimate_is_exact_and_holds_nothing(jobs_coordinator: JobsCoordinator) -> None:
    c = jobs_coordinator.running
    ada, client = signed_in(c, "ada")
    before = counts(c)
    with client:
        assert client.estimate(spec()) == EXPECTED
        # A budget above the worst case: the most the job can cost is the worst case itself.
        roomy = client.estimate(spec(max_budget_micro=5 * CPT))
        assert (roomy.escrow_micro, roomy.max_cost_micro) == (5 * CPT, 2_916_000)
    assert balance(c, ada) == 10 * CPT
    assert counts(c) == before


def test_the_estimate_follows_the_price_table_in_force(tmp_path: Path) -> None:
    with RunningCoordinator.start(
        db_url=f"sqlite:///{tmp_path / 'c.db'}",
        data_dir=tmp_path,
        price_cpu_micro_per_core_second=50,
        price_memory_micro_per_gb_second=0,
        price_gpu_micro_per_gpu_second=1_000,
        min_task_charge_micro=500,
        platform_fee_bps=2_500,
    ) as c:
        _, client = signed_in(c, "ada")
        with client:
            found = client.estimate(
                spec(resources={"cpu_cores": 1.0, "memory_gb": 1.0, "gpu_count": 1}, array_size=1)
            )
    # one replica: 1 core × 600 × 4 × 50 + 1 GPU × 600 × 1,000 = 120,000 + 600,000; two replicas
    assert found.full_timeout_cost_micro == 1_440_000
    assert found.max_cost_micro == CPT
    # per minute, reference machine: (60 × 50 + 60 × 1,000) × 2 replicas
    assert found.task_minute_micro == 126_000
    assert (found.min_cost_micro, found.platform_fee_bps) == (1_000, 2_500)


# Refusals that depend on the spec alone: the estimate must refuse each exactly as submit does.
REFUSED: list[tuple[str, dict[str, Any]]] = [
    ("invalid image", {"image": "Not An Image!"}),
    ("negative cpu", {"resources": {"cpu_cores": -2.0}}),
    ("quorum above replicas", {"replicas": 1, "quorum": 3}),
    ("budget below the minimum cost", {"max_budget_micro": 5_999}),
    ("no budget", {"max_budget_micro": 0}),
    ("output escaping the work dir", {"output_paths": ["../etc/passwd"]}),
    ("no command", {"command": []}),
    ("malformed input hash", {"inputs": [{"path": "x.csv", "sha256": "not-a-hash"}]}),
    ("timeout over a week", {"timeout_s": 8 * 24 * 3600}),
]


def test_the_estimate_refuses_exactly_what_submit_refuses(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    ada, client = signed_in(c, "ada")
    token = client.token
    stub = jobs_pb2_grpc.JobServiceStub(c.channel)
    before = counts(c)
    for name, overrides in REFUSED:
        message = _spec_pb(spec(**overrides))
        with pytest.raises(grpc.RpcError) as estimated:
            stub.EstimateJob(jobs_pb2.EstimateJobRequest(spec=message), metadata=auth(token))
        with pytest.raises(grpc.RpcError) as submitted:
            stub.SubmitJob(jobs_pb2.SubmitJobRequest(spec=message), metadata=auth(token))
        assert estimated.value.code() == submitted.value.code(), name  # type: ignore[attr-defined]
        assert estimated.value.details() == submitted.value.details(), name  # type: ignore[attr-defined]
        # and the client says the coordinator's sentence
        with pytest.raises(CoordinatorError) as said:
            client.estimate(message)
        assert said.value.message == submitted.value.details(), name  # type: ignore[attr-defined]
    assert balance(c, ada) == 10 * CPT
    assert counts(c) == before
    # The budget sentence names the minimum, so the submitter knows what to raise it to.
    with pytest.raises(CoordinatorError, match=r"minimum cost of 0\.006 CPT"):
        client.estimate(spec(max_budget_micro=5_999))
    client.close()


def test_inputs_not_yet_uploaded_are_estimated_and_refused_only_at_submit(
    sqlite_jobs: JobsCoordinator,
) -> None:
    """The app estimates before uploading; whether the bytes are there is a question for submit."""
    c = sqlite_jobs.running
    _, client = signed_in(c, "ada")
    with client:
        with_input = spec(inputs=[{"path": "in.txt", "sha256": "ab" * 32}])
        assert client.estimate(with_input) == EXPECTED
        with pytest.raises(CoordinatorError, match="never uploaded"):
            client.submit_job(with_input)


def test_the_rest_twin_gives_the_same_figures_and_refusals(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    _, client = signed_in(c, "ada")
    token = client.token
    client.close()
    r = c.http.post("/api/v1/jobs/estimate", json=spec(), headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "task_count": 3,
        "replicas": 2,
        "timeout_s": 600,
        "escrow_micro": CPT,
        "max_cost_micro": CPT,
        "full_timeout_cost_micro": 2_916_000,
        "min_cost_micro": 6_000,
        "task_minute_micro": 25_200,
        "platform_fee_bps": 1_000,
    }
    r = c.http.post("/api/v1/jobs/estimate", json=spec(max_budget_micro=1), headers=bearer(token))
    assert r.status_code == 400
    assert "below this job's minimum cost" in r.json()["error"]["message"]
    assert c.http.post("/api/v1/jobs/estimate", json=spec()).status_code == 401


def _spec_pb(data: dict[str, Any]) -> jobs_pb2.JobSpec:
    res = data.pop("resources")
    inputs = [jobs_pb2.InputRef(**i) for i in data.pop("inputs", [])]
    return jobs_pb2.JobSpec(resources=jobs_pb2.Resources(**res), inputs=inputs, **data)
