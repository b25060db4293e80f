"""Helpers for job tests: a funded submitter, ledger and table counts read straight from the database, and
a stand-in worker that drives the real dispatcher (lease, logs, outputs, report) without Docker."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from sqlmodel import func, select

from coordinator.clock import utcnow
from coordinator.jobs.models import TASK_FINAL, Blob, Job, Task
from coordinator.ledger import service as ledger
from coordinator.ledger.models import LedgerAccount
from coordinator.scheduling.service import PollRequest, ReportedResult, ReportedUsage
from shared_proto.v1 import nodes_pb2
from tests.support import RunningCoordinator, auth

CPT = 1_000_000
T = TypeVar("T")


def fund(c: RunningCoordinator, user_id: int, amount_micro: int) -> None:
    with c.coordinator.db.write() as session:
        ledger.grant(session, user_id, amount_micro, now=utcnow())


def spec(**overrides: Any) -> dict[str, Any]:
    """A small valid job spec (as the REST body), with ``overrides``."""
    return {
        "name": "square",
        "image": "python:3.11-slim",
        "command": ["python3", "-c", "print(6 * 7)"],
        "output_paths": ["out.txt"],
        "resources": {"cpu_cores": 1, "memory_gb": 0.5},
        "max_budget_micro": 2 * CPT,
    } | overrides


def funded(c: RunningCoordinator, name: str, amount_micro: int = 10 * CPT) -> tuple[int, str]:
    """A new user holding ``amount_micro``; returns (user id, access token)."""
    user_id, token = c.signup(name)
    fund(c, user_id, amount_micro)
    return user_id, token


def balance(c: RunningCoordinator, user_id: int) -> int:
    with c.coordinator.db.read() as session:
        return ledger.get_balance(session, user_id)


def escrow_balance(c: RunningCoordinator, job_id: str) -> int:
    with c.coordinator.db.read() as session:
        account = session.exec(
            select(LedgerAccount).where(LedgerAccount.name == f"escrow:{job_id}")
        ).one()
        return int(account.balance_micro)


def counts(c: RunningCoordinator) -> dict[str, int]:
    """Rows that a refused submission or upload must not leave behind."""
    with c.coordinator.db.read() as session:
        return {
            "jobs": session.exec(select(func.count()).select_from(Job)).one(),
            "tasks": session.exec(select(func.count()).select_from(Task)).one(),
            "blobs": session.exec(select(func.count()).select_from(Blob)).one(),
            "escrow_accounts": session.exec(
                select(func.count())
                .select_from(LedgerAccount)
                .where(LedgerAccount.kind == "escrow")
            ).one(),
        }


def run_on_loop(c: RunningCoordinator, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the coordinator's own event loop (where the dispatcher lives) and wait for it."""
    return asyncio.run_coroutine_threadsafe(coro, c.background._loop).result(30)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class StandInWorker:
    """What a worker does for one lease, done against the real dispatcher and blob store: take a lease,
    append log lines, store the outputs and stdout, report the result. The scheduler, verifier, ledger and
    the submitter-facing APIs all run for real; only Docker and the WorkerService transport are skipped."""

    def __init__(self, c: RunningCoordinator, owner_token: str, hostname: str) -> None:
        self.c = c
        reply = c.nodes.RegisterWorkerNode(
            nodes_pb2.RegisterWorkerNodeRequest(
                hostname=hostname, cpu_cores=8, memory_gb=16.0, cpu_score=800.0, docker_status=True
            ),
            metadata=auth(owner_token),
        )
        self.node = c.coordinator.nodes.authenticate(reply.node_credential)

    def run_one(
        self, outputs: dict[str, bytes], stdout: bytes, logs: list[tuple[str, str]]
    ) -> tuple[str, str] | None:
        """Lease one task, 'run' it producing ``outputs`` and ``stdout``, report it; returns (job id, task
        id), or None when the scheduler had nothing for this node."""
        dispatcher = self.c.coordinator.dispatcher
        request = PollRequest(
            max_tasks=1,
            free_cpu_cores=8,
            free_memory_gb=16,
            free_gpus=0,
            wait_s=1,
            docker_available=True,
            allow_network=False,
        )
        grants = run_on_loop(self.c, dispatcher.poll(self.node, request))
        if not grants:
            return None
        (grant,) = grants
        if logs:
            run_on_loop(
                self.c,
                dispatcher.append_logs(self.node, [(grant.lease_id, s, t) for s, t in logs]),
            )
        blobs = self.c.coordinator.blobs
        stored = [
            (path, blobs.put([data], max_size=1024**2).sha256, len(data))
            for path, data in outputs.items()
        ]
        stdout_sha = blobs.put([stdout], max_size=1024**2).sha256
        (outcome,) = run_on_loop(
            self.c,
            dispatcher.report(
                self.node,
                [
                    ReportedResult(
                        lease_id=grant.lease_id,
                        status="succeeded",
                        exit_code=0,
                        stdout_sha256=stdout_sha,
                        outputs=tuple(stored),
                        usage=ReportedUsage(1.0, 1024**2, 1.0, 0.0),
                    )
                ],
            ),
        )
        assert outcome.outcome == "accepted", outcome
        return grant.job_id, grant.task_id


def complete_only_task(
    c: RunningCoordinator, outputs: dict[str, bytes], stdout: bytes, logs: list[tuple[str, str]]
) -> str:
    """Have volunteers (distinct owners, as the verifier wants) run the one queued task until the
    verifier decides it; only the first one logs. Returns the job id."""
    job_id = ""
    for n in range(6):
        _, token = c.signup(f"volunteer{n}")
        ran = StandInWorker(c, token, f"volunteer{n}-pc").run_one(
            outputs, stdout, logs if n == 0 else []
        )
        if ran is None:
            continue
        job_id, task_id = ran
        with c.coordinator.db.read() as session:
            task = session.get(Task, task_id)
            assert task is not None
            if task.state in TASK_FINAL:
                return job_id
    raise AssertionError(f"the verifier did not decide job {job_id} after 6 volunteers")
