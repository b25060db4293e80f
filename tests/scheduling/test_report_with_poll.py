"""A poll can carry the results of the node's finished leases (``PollTasksRequest.results``): they are
recorded first, exactly as ReportResults records them, and answered in ``PollTasksResponse.outcomes``; a
refused batch fails the whole call and hands out nothing.

Real parts: a coordinator (both databases) with its gRPC WorkerService on loopback, its blob store, the
dispatcher, the verifier and the ledger."""

from __future__ import annotations

import grpc
import pytest
from sqlmodel import select

from coordinator.jobs.models import Lease
from shared_proto.v1 import jobs_pb2, worker_pb2
from tests.admin.helpers import funded, submit
from tests.jobs.helpers import CPT
from tests.support import RunningCoordinator, grpc_worker


def _poll(max_tasks: int, results: list[worker_pb2.TaskResult]) -> worker_pb2.PollTasksRequest:
    return worker_pb2.PollTasksRequest(
        max_tasks=max_tasks,
        free_cpu_cores=8,
        free_memory_gb=16,
        wait_s=0,
        docker_available=True,
        results=results,
    )


def _result(c: RunningCoordinator, lease_id: str) -> worker_pb2.TaskResult:
    stdout = c.coordinator.blobs.put([b"42\n"], max_size=1024).sha256
    out = c.coordinator.blobs.put([b"forty-two"], max_size=1024).sha256
    return worker_pb2.TaskResult(
        lease_id=lease_id,
        status="succeeded",
        exit_code=0,
        stdout_sha256=stdout,
        outputs=[jobs_pb2.OutputFile(path="out.txt", sha256=out, size=9)],
        usage=worker_pb2.Usage(cpu_seconds=0.5, peak_memory_bytes=2**20, wall_seconds=1.0),
    )


def _three_tasks(c: RunningCoordinator) -> None:
    _, token = funded(c, "submitter", 50 * CPT)
    submit(c, token, array_size=3, max_budget_micro=20 * CPT)


def _lease_states(c: RunningCoordinator) -> dict[str, str]:
    with c.coordinator.db.read() as session:
        return {x.id: x.state for x in session.exec(select(Lease))}


def test_a_poll_records_the_results_it_carries_then_hands_out_work(
    coordinator: RunningCoordinator,
) -> None:
    c = coordinator
    _three_tasks(c)
    stub, md = grpc_worker(c, "alice")

    (first,) = stub.PollTasks(_poll(1, []), metadata=md).leases
    reply = stub.PollTasks(_poll(2, [_result(c, first.lease_id)]), metadata=md)

    assert [(o.lease_id, o.outcome) for o in reply.outcomes] == [(first.lease_id, "accepted")]
    assert len(reply.leases) == 2 and first.task_id not in {x.task_id for x in reply.leases}
    states = _lease_states(c)
    assert states[first.lease_id] != "active"  # recorded: no longer waiting for its result
    assert all(states[x.lease_id] == "active" for x in reply.leases)
    # The same result again, with the next poll (no task is left for this node): answered, never
    # recorded twice.
    again = stub.PollTasks(_poll(1, [_result(c, first.lease_id)]), metadata=md)
    assert [o.outcome for o in again.outcomes] == ["duplicate"]
    assert _lease_states(c) == states


def test_a_refused_result_fails_the_poll_and_hands_out_nothing(
    coordinator: RunningCoordinator,
) -> None:
    c = coordinator
    _three_tasks(c)
    alice, alice_md = grpc_worker(c, "alice")
    bob, bob_md = grpc_worker(c, "bob")
    (alices,) = alice.PollTasks(_poll(1, []), metadata=alice_md).leases
    before = _lease_states(c)

    with pytest.raises(grpc.RpcError) as refused:
        bob.PollTasks(_poll(2, [_result(c, alices.lease_id)]), metadata=bob_md)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "was not given to this node" in (refused.value.details() or "")
    assert _lease_states(c) == before  # no lease handed out, nothing of the result written

    with pytest.raises(grpc.RpcError) as too_many:
        bob.PollTasks(_poll(1, [_result(c, alices.lease_id)] * 257), metadata=bob_md)
    assert too_many.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 256" in (too_many.value.details() or "")
    assert _lease_states(c) == before


def test_results_recorded_before_a_poll_fails_are_still_answered(
    sqlite_coordinator: RunningCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a poll's results are recorded, a failure while looking for work (here a fault injected into
    the dispatcher's poll) answers the results with no leases, rather than failing the call: the worker
    would otherwise send them again and be told ``duplicate``, not what became of them."""
    c = sqlite_coordinator
    _three_tasks(c)
    stub, md = grpc_worker(c, "alice")
    (first,) = stub.PollTasks(_poll(1, []), metadata=md).leases

    async def broken_poll(*_: object) -> object:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(c.coordinator.dispatcher, "poll", broken_poll)
    reply = stub.PollTasks(_poll(2, [_result(c, first.lease_id)]), metadata=md)
    assert [(o.lease_id, o.outcome) for o in reply.outcomes] == [(first.lease_id, "accepted")]
    assert list(reply.leases) == []
    assert _lease_states(c)[first.lease_id] != "active"
    with pytest.raises(grpc.RpcError) as failed:  # without results, the failure is the answer
        stub.PollTasks(_poll(1, []), metadata=md)
    assert failed.value.code() is grpc.StatusCode.UNKNOWN
