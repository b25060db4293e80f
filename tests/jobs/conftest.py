"""Fixtures for job tests: the coordinator fixtures with the jobs REST router and the gRPC JobService
reachable. Until coordinator/server.py serves both, they are attached here to the same running coordinator
(same loop, same dispatcher, same database); once it does, this attaches nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from coordinator.api import jobs as jobs_api
from coordinator.rpc.job_servicer import JobServicer
from coordinator.rpc.user_servicer import UserServicer
from shared_proto.v1 import jobs_pb2, jobs_pb2_grpc, users_pb2_grpc
from tests.jobs.helpers import run_on_loop
from tests.support import RunningCoordinator


class JobsCoordinator:
    """A running coordinator plus the gRPC address that serves JobService."""

    def __init__(self, running: RunningCoordinator, grpc_target: str) -> None:
        self.running = running
        self.grpc_target = grpc_target


def _serves_jobs_rest(running: RunningCoordinator) -> bool:
    return any(
        getattr(r, "path", "").startswith("/api/v1/jobs") for r in running.coordinator.app.routes
    )


def _serves_jobs_grpc(running: RunningCoordinator) -> bool:
    stub = jobs_pb2_grpc.JobServiceStub(running.channel)
    try:
        stub.GetJob(jobs_pb2.GetJobRequest(job_id="x"), timeout=10)
    except grpc.RpcError as exc:
        return exc.code() is not grpc.StatusCode.UNIMPLEMENTED
    return True


def _attach(running: RunningCoordinator) -> Iterator[JobsCoordinator]:
    c = running.coordinator
    if not _serves_jobs_rest(running):
        c.app.include_router(jobs_api.router)
    if _serves_jobs_grpc(running):
        yield JobsCoordinator(running, running.grpc_target)
        return

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        base = {"issuer": c.issuer, "executor": c.executor}
        servicer = JobServicer(c.dispatcher, c.blobs, c.settings.max_input_bytes, **base)
        jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
        # Clients sign in where they submit.
        users_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(c.accounts, **base), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = run_on_loop(running, start())
    try:
        yield JobsCoordinator(running, f"127.0.0.1:{port}")
    finally:
        run_on_loop(running, server.stop(0))


@pytest.fixture
def jobs_coordinator(coordinator: RunningCoordinator) -> Iterator[JobsCoordinator]:
    """Both databases."""
    yield from _attach(coordinator)


@pytest.fixture
def sqlite_jobs(sqlite_coordinator: RunningCoordinator) -> Iterator[JobsCoordinator]:
    """SQLite only, for tests about transport rather than storage."""
    yield from _attach(sqlite_coordinator)


@pytest.fixture
def small_inputs(tmp_path: Path) -> Iterator[JobsCoordinator]:
    """A coordinator that refuses inputs over 1 KiB."""
    with RunningCoordinator.start(
        db_url=f"sqlite:///{tmp_path / 'small.db'}", data_dir=tmp_path, max_input_bytes=1024
    ) as running:
        yield from _attach(running)
