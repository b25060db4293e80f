"""Dispatch throughput: N simulated workers with an instant executor against one real coordinator.

    python bench/dispatch_bench.py --jobs 10000 --workers 100
    python bench/dispatch_bench.py --jobs 10000 --workers 1000

The coordinator runs as its own process (``hivemind coordinator``, SQLite by default or ``--db URL``). This
process drives it over real gRPC: it registers the workers (spread over several owner accounts, since two
replicas of a task never go to the same owner), submits the jobs as arrays (HTCondor's ``queue N``: one
SubmitJob carries ``--array-size`` tasks, each an independent job with its own verified result), and runs
every worker as a coroutine that long-polls for up to ``--slots`` leases at once, "runs" them instantly, and
reports them in one batch with its next poll (``PollTasksRequest.results``, as the worker engine does;
``--separate-reports`` sends them in a ReportResults call of their own instead). Nothing runs in a container: this measures the coordinator's dispatch path —
leasing, verification (including the cross-check replicas that untrusted nodes get), payments through the
ledger, and job completion.

Every node starts untrusted, so while each earns trust (ten agreeing results) most of its tasks get a cross-check
replica: adaptive replication, as BOINC does it. ``--warm-up N`` first runs N untimed jobs, so that the timed
ones meet an established fleet, where only spot checks add replicas.

It prints jobs/s from the first submission to the last accepted result, and p50/p99 of submit-to-lease
latency, then checks that every job completed and the ledger audit is clean. Bounded: it stops after
``--time-limit`` seconds whatever happens (the warm-up, if any, has a limit of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path

import grpc

from shared_proto.v1 import (
    jobs_pb2,
    jobs_pb2_grpc,
    nodes_pb2,
    nodes_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import fresh_schema

PASSWORD = "bench-password-123"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_coordinator(
    data_dir: Path, db: str | None, grpc_port: int, event_loop: str = "auto"
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env.update(
        HIVEMIND_DATA_DIR=str(data_dir),
        HIVEMIND_SIGNUP_GRANT_MICRO=str(
            10**12
        ),  # a million CPT each: budgets are not what is measured
        HIVEMIND_LOG_LEVEL="WARNING",
        HIVEMIND_SQLITE_SYNCHRONOUS="NORMAL",
    )
    if db:
        env["HIVEMIND_DB"] = db
    cmd = [
        sys.executable,
        "-m",
        "coordinator",
        "coordinator",
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(free_port()),
        "--event-loop",
        event_loop,
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_ready(target: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(target) as channel:
        stub = nodes_pb2_grpc.NodeManagerServiceStub(channel)
        while True:
            try:
                await stub.HealthCheck(nodes_pb2.HealthCheckRequest(), timeout=2)
                return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def signup(users: users_pb2_grpc.UserServiceStub, name: str) -> str:
    await users.Register(
        users_pb2.RegisterRequest(username=name, email=f"{name}@bench.example", password=PASSWORD)
    )
    return str((await users.Login(users_pb2.LoginRequest(username=name, password=PASSWORD))).token)


class Stats:
    def __init__(self) -> None:
        self.submitted_at: dict[str, float] = {}  # job id -> when its SubmitJob returned
        self.first_lease: dict[str, float] = {}  # task id -> when its first lease reached a worker
        self.task_job: dict[str, str] = {}
        self.leases = 0
        self.reports = 0


async def simulated_worker(
    channel: grpc.aio.Channel,
    credential: str,
    slots: int,
    stats: Stats,
    stop: asyncio.Event,
    separate_reports: bool = False,
) -> None:
    """Poll for up to ``slots`` leases, "run" them instantly, and send their results with the next poll
    (or, with ``separate_reports``, in a ReportResults call of their own before it)."""
    stub = worker_pb2_grpc.WorkerServiceStub(channel)
    md = (("authorization", f"Bearer {credential}"),)
    finished: list[worker_pb2.TaskResult] = []
    while True:
        if separate_reports and finished:
            await stub.ReportResults(worker_pb2.ReportResultsRequest(results=finished), metadata=md)
            stats.reports += len(finished)
            finished = []
        if stop.is_set() and not finished:
            return
        try:
            reply = await stub.PollTasks(
                worker_pb2.PollTasksRequest(
                    max_tasks=slots,
                    free_cpu_cores=slots,
                    free_memory_gb=8,
                    wait_s=0 if stop.is_set() else 2,
                    docker_available=True,
                    results=finished,
                ),
                metadata=md,
            )
        except grpc.aio.AioRpcError as exc:
            if stop.is_set():
                return
            raise RuntimeError(f"poll failed: {exc.details()}") from exc
        if len(reply.outcomes) != len(finished):
            raise RuntimeError("the poll answered a different number of results than it was sent")
        stats.reports += len(finished)
        now = time.perf_counter()
        for lease in reply.leases:
            stats.leases += 1
            stats.first_lease.setdefault(lease.task_id, now)
            stats.task_job[lease.task_id] = lease.job_id
        finished = [
            worker_pb2.TaskResult(
                lease_id=lease.lease_id,
                status="succeeded",
                exit_code=0,
                stdout_sha256=EMPTY_SHA,
                usage=worker_pb2.Usage(
                    cpu_seconds=0.001, wall_seconds=0.001, peak_memory_bytes=1024
                ),
            )
            for lease in reply.leases
        ]


async def submit_arrays(
    jobs: jobs_pb2_grpc.JobServiceStub,
    md: tuple[tuple[str, str], ...],
    count: int,
    array_size: int,
    stats: Stats,
) -> list[str]:
    """Submit ``count`` jobs as arrays of ``array_size``; returns the arrays' job ids."""
    job_ids: list[str] = []
    remaining = count
    while remaining > 0:
        size = min(array_size, remaining)
        spec = jobs_pb2.JobSpec(
            name="bench",
            image="hivemind/busybox:latest",
            command=["true"],
            array_size=size if size > 1 else 0,
            resources=jobs_pb2.Resources(cpu_cores=1, memory_gb=0.5),
            timeout_s=60,
            max_budget_micro=size * 4 * 1_000_000,
        )
        reply = await jobs.SubmitJob(jobs_pb2.SubmitJobRequest(spec=spec), metadata=md)
        stats.submitted_at[reply.job_id] = time.perf_counter()
        job_ids.append(reply.job_id)
        remaining -= size
    return job_ids


async def wait_final(
    jobs: jobs_pb2_grpc.JobServiceStub,
    md: tuple[tuple[str, str], ...],
    job_ids: list[str],
    deadline: float,
) -> tuple[set[str], int]:
    """Wait until every array is final or ``deadline`` passes: (arrays still pending, arrays that
    failed or were cancelled)."""
    pending = set(job_ids)
    failed = 0
    while pending and time.perf_counter() < deadline:
        await asyncio.sleep(0.25)
        # One ListJobs call gives every array's state, as a submitter's dashboard would ask (GetJob reads
        # every task of an array: asking it about 1,000-task arrays four times a second would cost the
        # coordinator a tenth of its CPU and measure the wrong thing).
        token = ""
        while True:
            page = await jobs.ListJobs(
                jobs_pb2.ListJobsRequest(page_size=100, page_token=token), metadata=md
            )
            for status in page.jobs:
                if status.job_id in pending and status.state in (
                    "completed",
                    "failed",
                    "cancelled",
                ):
                    pending.discard(status.job_id)
                    failed += status.state != "completed"
            token = page.next_page_token
            if not token:
                break
    return pending, failed


async def run(args: argparse.Namespace) -> dict[str, float]:
    target = args.target
    stats = Stats()
    channels = [grpc.aio.insecure_channel(target) for _ in range(args.channels)]
    main_channel = channels[0]
    users = users_pb2_grpc.UserServiceStub(main_channel)
    nodes = nodes_pb2_grpc.NodeManagerServiceStub(main_channel)
    jobs = jobs_pb2_grpc.JobServiceStub(main_channel)

    t0 = time.perf_counter()
    submitter = await signup(users, "submitter")
    owners = [await signup(users, f"owner{i:03d}") for i in range(args.owners)]
    credentials = []
    for i in range(args.workers):
        token = owners[i % len(owners)]
        reply = await nodes.RegisterWorkerNode(
            nodes_pb2.RegisterWorkerNodeRequest(
                hostname=f"sim-{i:04d}", cpu_cores=args.slots, memory_gb=8, cpu_score=100.0 * args.slots,
                docker_status=True,
            ),
            metadata=(("authorization", f"Bearer {token}"),),
        )  # fmt: skip
        credentials.append(reply.node_credential)
    print(
        f"setup: {len(owners)} owners, {args.workers} workers in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )

    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            simulated_worker(
                channels[i % len(channels)], cred, args.slots, stats, stop, args.separate_reports
            )
        )
        for i, cred in enumerate(credentials)
    ]
    submitter_md = (("authorization", f"Bearer {submitter}"),)
    # Every simulated task's stdout is empty. Reports must name stored blobs, so store it once (the blob
    # store is content-addressed; a real worker uploads its stdout with UploadOutput).
    await jobs.UploadInput(_chunks(), metadata=submitter_md)

    if args.warm_up:
        # An established fleet: every node earns trust on untimed work first (TRUST_STREAK agreeing
        # results), so the timed jobs get cross-check replicas only as spot checks.
        t0 = time.perf_counter()
        warm = await submit_arrays(jobs, submitter_md, args.warm_up, args.array_size, stats)
        pending, failed = await wait_final(jobs, submitter_md, warm, t0 + args.time_limit)
        if pending or failed:
            raise RuntimeError(
                f"the warm-up did not complete: {len(pending)} arrays pending, {failed} failed"
            )
        warm_leases = stats.leases
        print(
            f"warm-up: {args.warm_up:,} jobs in {time.perf_counter() - t0:.1f} s, "
            f"{warm_leases:,} leases",
            flush=True,
        )
        stats.leases = 0
        stats.submitted_at.clear()
        stats.first_lease.clear()
        stats.task_job.clear()

    start = time.perf_counter()
    job_ids = await submit_arrays(jobs, submitter_md, args.jobs, args.array_size, stats)
    submit_done = time.perf_counter()
    pending, failed = await wait_final(jobs, submitter_md, job_ids, start + args.time_limit)
    end = time.perf_counter()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()

    latencies = sorted(
        stats.first_lease[t] - stats.submitted_at[j]
        for t, j in stats.task_job.items()
        if j in stats.submitted_at
    )
    completed_jobs = args.jobs if not pending else args.jobs - len(pending) * args.array_size
    return {
        "jobs": args.jobs,
        "workers": args.workers,
        "completed": float(completed_jobs) if not failed else float("nan"),
        "failed_arrays": failed,
        "unfinished_arrays": len(pending),
        "submit_s": submit_done - start,
        "total_s": end - start,
        "jobs_per_s": completed_jobs / (end - start),
        "leases": stats.leases,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
    }


async def _chunks() -> AsyncIterator[jobs_pb2.FileChunk]:
    yield jobs_pb2.FileChunk(data=b"", expected_sha256=EMPTY_SHA, total_size=0)


def audit(data_dir: Path, db: str | None) -> list[str]:
    from coordinator.db import Database
    from coordinator.ledger import service as ledger

    database = Database(db or f"sqlite:///{data_dir / 'coordinator.db'}")
    try:
        with database.read() as session:
            return ledger.audit(session)
    finally:
        database.dispose()


# -- in process -----------------------------------------------------------------------------------------
async def run_in_process(args: argparse.Namespace, data_dir: Path) -> dict[str, float]:
    """The dispatch path without gRPC: ``Dispatcher.poll`` and ``Dispatcher.report`` called directly on
    the coordinator's own loop, by ``--workers`` simulated nodes. Measures tasks/s and the coordinator's
    CPU time per verified, paid task (this process does nothing else)."""
    from coordinator.accounts.tokens import Principal
    from coordinator.nodes.service import NodeHardware
    from coordinator.scheduling.service import PollRequest, ReportedResult, ReportedUsage
    from coordinator.server import Coordinator
    from coordinator.settings import Settings

    settings = Settings(
        data_dir=data_dir,
        db=args.db,
        grpc_port=0,
        http_port=0,
        signup_grant_micro=10**12,
        sqlite_synchronous="NORMAL",
    )
    coordinator = Coordinator(settings)
    await coordinator.start()
    loop = asyncio.get_running_loop()

    def blocking(fn, *a):  # type: ignore[no-untyped-def]
        return loop.run_in_executor(coordinator.executor, fn, *a)

    try:
        submitter = await blocking(
            coordinator.accounts.register, "submitter", "s@bench.example", PASSWORD
        )
        owners = [
            await blocking(
                coordinator.accounts.register, f"owner{i:03d}", f"o{i}@bench.example", PASSWORD
            )
            for i in range(args.owners)
        ]
        nodes = []
        for i in range(args.workers):
            owner = owners[i % len(owners)]
            reg = await blocking(
                coordinator.nodes.register,
                Principal(owner.id, owner.username, owner.role),
                NodeHardware(
                    hostname=f"sim-{i:04d}", cpu_cores=args.slots, memory_gb=8,
                    cpu_score=100.0 * args.slots, docker_status=True,
                ),
            )  # fmt: skip
            nodes.append(await blocking(coordinator.nodes.authenticate, reg.credential))
        coordinator.blobs.put([b""], max_size=1)
        principal = Principal(submitter.id, submitter.username, submitter.role)
        dispatcher = coordinator.dispatcher
        job_ids = []
        remaining = args.jobs
        while remaining > 0:
            size = min(args.array_size, remaining)
            spec = {
                "name": "bench",
                "image": "hivemind/busybox:latest",
                "command": ["true"],
                "array_size": size if size > 1 else 0,
                "resources": {"cpu_cores": 1, "memory_gb": 0.5},
                "timeout_s": 60,
                "max_budget_micro": size * 4 * 1_000_000,
            }
            submitted = await dispatcher.submit(principal, spec, None)
            job_ids.append(submitted.job.id)
            remaining -= size
        request = PollRequest(
            max_tasks=args.slots,
            free_cpu_cores=args.slots,
            free_memory_gb=8,
            free_gpus=0,
            wait_s=0,
            docker_available=True,
            allow_network=False,
        )
        leases = 0

        async def worker(node) -> None:  # type: ignore[no-untyped-def]
            nonlocal leases
            idle = 0
            while idle < 3:
                grants = await dispatcher.poll(node, request)
                if not grants:
                    idle += 1
                    await asyncio.sleep(0.05)
                    continue
                idle = 0
                leases += len(grants)
                await dispatcher.report(
                    node,
                    [
                        ReportedResult(
                            lease_id=g.lease_id,
                            status="succeeded",
                            exit_code=0,
                            stdout_sha256=EMPTY_SHA,
                            outputs=(),
                            usage=ReportedUsage(0.001, 1024, 0.001, 0.0),
                        )
                        for g in grants
                    ],
                )

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(n) for n in nodes)), timeout=args.time_limit)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        done = 0
        with coordinator.db.read() as session:
            from coordinator.jobs.models import Job

            for job_id in job_ids:
                job = session.get(Job, job_id)
                assert job is not None
                done += job.tasks_done if job.state == "completed" else 0
        return {
            "tasks": args.jobs,
            "completed": done,
            "wall_s": wall,
            "tasks_per_s": done / wall,
            "cpu_ms_per_task": 1000 * cpu / max(1, done),
            "leases": leases,
        }
    finally:
        await coordinator.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument(
        "--owners", type=int, default=20, help="owner accounts the workers are spread over"
    )
    parser.add_argument(
        "--slots", type=int, default=4, help="leases a simulated worker takes per poll"
    )
    parser.add_argument(
        "--separate-reports",
        action="store_true",
        help="report results with ReportResults before the next poll (default: with the poll itself)",
    )
    parser.add_argument(
        "--array-size", type=int, default=1000, help="tasks per SubmitJob (1 = one job per call)"
    )
    parser.add_argument(
        "--channels", type=int, default=8, help="gRPC connections the workers share"
    )
    parser.add_argument(
        "--db", help="database URL for the coordinator (default: SQLite in a temp dir)"
    )
    parser.add_argument("--time-limit", type=float, default=300)
    parser.add_argument(
        "--warm-up",
        type=int,
        default=0,
        help="untimed jobs run first, so that the nodes earn trust (an established fleet; each node needs "
        "ten agreeing results, so give at least 15 per worker); "
        "default 0: a fresh fleet, whose nodes all start untrusted",
    )
    parser.add_argument(
        "--event-loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="the coordinator's event loop (default auto: uvloop where installed)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="call the dispatcher directly, without gRPC: tasks/s and CPU ms per task",
    )
    args = parser.parse_args()
    if args.in_process and args.warm_up:
        parser.error("--warm-up is for the gRPC run; --in-process does not support it")
    # Stop on SIGTERM too (e.g. from timeout(1)), so that the coordinator we start is stopped and the
    # PostgreSQL schema dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with ExitStack() as cleanup:
        if args.db:  # PostgreSQL: a schema of its own, so that no run meets another's rows
            args.db = cleanup.enter_context(fresh_schema(args.db, prefix="bench_"))
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    if args.in_process:
        with tempfile.TemporaryDirectory(prefix="hivemind-dispatch-") as tmp:
            from coordinator.eventloop import loop_factory

            with asyncio.Runner(loop_factory=loop_factory(args.event_loop)[1]) as runner:
                figures = runner.run(run_in_process(args, Path(tmp)))
            problems = audit(Path(tmp), args.db)
        print(
            f"in process: {figures['completed']:,.0f}/{figures['tasks']:,} tasks in "
            f"{figures['wall_s']:.2f} s = {figures['tasks_per_s']:,.0f} tasks/s, "
            f"{figures['cpu_ms_per_task']:.2f} ms CPU per task, {figures['leases']:,} leases"
        )
        print("ledger audit:", "ok" if not problems else problems[:5])
        return 0 if not problems and figures["completed"] == figures["tasks"] else 1
    with tempfile.TemporaryDirectory(prefix="hivemind-dispatch-") as tmp:
        data_dir = Path(tmp)
        port = free_port()
        args.target = f"127.0.0.1:{port}"
        proc = start_coordinator(data_dir, args.db, port, args.event_loop)
        try:
            asyncio.run(wait_ready(args.target))
            result = asyncio.run(run(args))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        problems = audit(data_dir, args.db)

    print()
    print(
        "| jobs | workers | submit (s) | total (s) | jobs/s | submit→lease p50 (ms) | p99 (ms) | leases |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {result['jobs']:,} | {result['workers']:,} | {result['submit_s']:.2f} | {result['total_s']:.2f} | "
        f"{result['jobs_per_s']:,.0f} | {result['p50_ms']:,.0f} | {result['p99_ms']:,.0f} | {result['leases']:,} |"
    )
    print(
        f"\nunfinished arrays: {result['unfinished_arrays']}, failed arrays: {result['failed_arrays']}"
    )
    print("ledger audit:", "ok" if not problems else problems[:5])
    return (
        0 if not problems and not result["unfinished_arrays"] and not result["failed_arrays"] else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
