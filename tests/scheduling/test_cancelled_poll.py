"""A long poll whose answer never reaches the worker (the worker hung up after the dispatcher had leased it
tasks) gives those leases back at once: the task goes to the next node without waiting for the lease to
expire, and it is not charged an attempt.

Real parts: a coordinator on SQLite with its gRPC WorkerService on loopback. To cancel the poll exactly
between "leased" and "answered", the test holds the database's write lock (SQLite allows one writer), so
the dispatcher's write of the grants waits while the worker hangs up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from sqlmodel import select

from coordinator.jobs.models import LEASE_ACTIVE, LEASE_CANCELLED, Lease, Task
from shared_proto.v1 import worker_pb2
from tests.admin.helpers import funded, submit
from tests.jobs.helpers import run_on_loop
from tests.support import RunningCoordinator, grpc_worker


def _poll(wait_s: float) -> worker_pb2.PollTasksRequest:
    return worker_pb2.PollTasksRequest(
        max_tasks=1, free_cpu_cores=8, free_memory_gb=16, wait_s=wait_s, docker_available=True
    )


def _until(what: str, check: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


def _on_loop(c: RunningCoordinator, fn: Callable[[], Any]) -> Any:
    async def read() -> Any:
        return fn()

    return run_on_loop(c, read())


def _leases(c: RunningCoordinator) -> list[Lease]:
    with c.coordinator.db.read() as session:
        return list(session.exec(select(Lease).order_by(Lease.created_at)))


def _task(c: RunningCoordinator, job_id: str) -> Task:
    with c.coordinator.db.read() as session:
        return session.exec(select(Task).where(Task.job_id == job_id)).one()


def test_a_poll_cancelled_after_its_grants_gives_them_back_without_an_attempt(
    sqlite_coordinator: RunningCoordinator,
) -> None:
    c = sqlite_coordinator
    dispatcher = c.coordinator.dispatcher
    _, token = funded(c, "submitter")
    job_id = submit(c, token)
    first, first_md = grpc_worker(c, "alice")
    second, second_md = grpc_worker(c, "bob")

    write_lock = c.coordinator.db._write_lock
    assert write_lock is not None  # SQLite: one writer at a time
    with write_lock:
        call = first.PollTasks.future(_poll(wait_s=10), metadata=first_md)
        _until(
            "the dispatcher has leased the task",
            lambda: _on_loop(c, lambda: len(dispatcher.core.leases)) == 1,
        )
        call.cancel()  # the worker hangs up while the grant is being written
        _until(
            "the coordinator has seen the hang-up",
            lambda: _on_loop(c, lambda: len(dispatcher._background)) == 1,
        )
    with pytest.raises(grpc.FutureCancelledError):
        call.result()
    _until(
        "the undelivered lease is given back",
        lambda: [x.state for x in _leases(c)] == [LEASE_CANCELLED],
    )
    assert _on_loop(c, lambda: len(dispatcher._background)) == 0

    task = _task(c, job_id)
    assert task.attempts == 0
    # The task is offered again at once, long before the lost lease's deadline.
    reply = second.PollTasks(_poll(wait_s=0), metadata=second_md)
    assert [lease.task_id for lease in reply.leases] == [task.id]
    states = sorted(x.state for x in _leases(c))
    assert states == sorted([LEASE_CANCELLED, LEASE_ACTIVE])
    # Nothing of the given-back lease is left to expire later and cost the task an attempt.
    run_on_loop(c, dispatcher.tick())
    assert _task(c, job_id).attempts == 0
