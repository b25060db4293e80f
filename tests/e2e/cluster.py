"""A real cluster for end-to-end tests: a coordinator plus workers that run real Docker containers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from sqlmodel import select

from client_gui.engine.local import local_worker
from client_gui.engine.worker import TaskExecutor, Worker, WorkerLimits
from coordinator.clock import utcnow
from coordinator.jobs.models import JOB_FINAL, Job
from coordinator.ledger import service as ledger
from coordinator.ledger.models import MICRO_PER_CPT
from shared_proto.v1 import jobs_pb2, jobs_pb2_grpc, tokens_pb2
from tests.support import PASSWORD, RunningCoordinator, auth

BUSYBOX = "hivemind/busybox:latest"


@dataclass
class Cluster:
    running: RunningCoordinator
    home: Path
    workers: dict[str, Worker] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.running.channel)

    @property
    def db(self) -> Any:
        return self.running.coordinator.db

    def user(self, name: str, grant_cpt: int = 0) -> str:
        user_id, token = self.running.signup(name)
        self.tokens[name] = token
        if grant_cpt:
            with self.db.write() as s:
                ledger.grant(s, user_id, grant_cpt * MICRO_PER_CPT, now=utcnow())
        return token

    def add_worker(
        self,
        owner: str,
        *,
        name: str | None = None,
        slots: int = 2,
        executor_factory: Callable[[bool], TaskExecutor] | None = None,
    ) -> Worker:
        if owner not in self.tokens:
            self.user(owner)
        worker = local_worker(
            self.running.grpc_target,
            owner,
            PASSWORD,
            self.home / (name or owner),
            limits=WorkerLimits(use_gpu=False, slots=slots),
            executor_factory=executor_factory,
        )
        worker.start()
        self.workers[name or owner] = worker
        return worker

    def balance(self, name: str) -> int:
        reply = self.running.tokens.GetBalance(
            tokens_pb2.GetBalanceRequest(), metadata=auth(self.tokens[name])
        )
        return int(reply.balance_micro)

    def submit(self, submitter: str, **spec: Any) -> str:
        spec.setdefault("image", BUSYBOX)
        spec.setdefault("max_budget_micro", MICRO_PER_CPT)
        spec.setdefault("timeout_s", 60)
        resources = spec.pop("resources", {"cpu_cores": 0.5, "memory_gb": 0.125})
        request = jobs_pb2.SubmitJobRequest(
            spec=jobs_pb2.JobSpec(resources=jobs_pb2.Resources(**resources), **spec)
        )
        return str(self.jobs.SubmitJob(request, metadata=auth(self.tokens[submitter])).job_id)

    def wait(self, submitter: str, job_id: str, timeout_s: float = 120) -> jobs_pb2.JobStatus:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.jobs.GetJob(
                jobs_pb2.GetJobRequest(job_id=job_id), metadata=auth(self.tokens[submitter])
            )
            if status.state in JOB_FINAL:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"job {job_id} still {status.state} after {timeout_s} s: {status}"
                )
            time.sleep(0.2)

    def download(self, submitter: str, job_id: str, path: str, index: int = 0) -> bytes:
        chunks = self.jobs.DownloadResult(
            jobs_pb2.DownloadResultRequest(job_id=job_id, task_index=index, path=path),
            metadata=auth(self.tokens[submitter]),
        )
        return b"".join(c.data for c in chunks)

    def audit(self) -> list[str]:
        with self.db.read() as s:
            return ledger.audit(s)

    def job_row(self, job_id: str) -> Job:
        with self.db.read() as s:
            return s.exec(select(Job).where(Job.id == job_id)).one()

    def stop_workers(self) -> None:
        for worker in self.workers.values():
            worker.stop(cancel_running=True, timeout=30)
        for worker in self.workers.values():
            worker.client.close()
        self.workers.clear()


@contextmanager
def cluster(db_url: str, tmp_path: Path, **settings: Any) -> Iterator[Cluster]:
    settings.setdefault("lease_ttl_s", 6)
    settings.setdefault("heartbeat_interval_s", 1)
    settings.setdefault("node_ttl_s", 12)
    with RunningCoordinator.start(
        db_url=db_url, data_dir=tmp_path / "coordinator", **settings
    ) as running:
        c = Cluster(running, tmp_path)
        try:
            yield c
        finally:
            c.stop_workers()


def rpc_code(exc: grpc.RpcError) -> grpc.StatusCode:
    return exc.code()  # type: ignore[attr-defined,no-any-return]
