"""``hivemind demo``: the whole platform on one machine, as real clients would use it.

It starts a coordinator on a throwaway SQLite database and two local workers (real Docker containers), builds
the small job image if it is missing, creates two accounts with a grant, submits a job with two replicas and a
two-step DAG whose second step reads the first step's output, shows progress, prints the results and both
wallets, checks the ledger audit, stops everything it started, and exits 0 when every step behaved.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx

from client_gui.engine.images import ImageError, ensure_busybox_image
from client_gui.engine.local import local_worker
from client_gui.engine.worker import Worker, WorkerLimits
from coordinator.jobs.models import JOB_FINAL
from coordinator.ledger.models import MICRO_PER_CPT
from coordinator.server import BackgroundCoordinator
from coordinator.settings import Settings
from shared_proto.v1 import (
    jobs_pb2,
    jobs_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)

PASSWORD = "demo-password-123"
Metadata = tuple[tuple[str, str | bytes], ...]


def cpt(micro: int) -> str:
    return f"{micro / MICRO_PER_CPT:,.6f} CPT"


def _step(text: str) -> None:
    print(f"\n▶ {text}", flush=True)


def _bar(done: int, total: int, label: str, width: int = 30) -> str:
    filled = width * done // max(total, 1)
    return f"  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}"


class Demo:
    def __init__(self, coordinator_target: str, http_base: str) -> None:
        self.channel = grpc.insecure_channel(coordinator_target)
        self.users = users_pb2_grpc.UserServiceStub(self.channel)
        self.tokens = tokens_pb2_grpc.TokenServiceStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.http = httpx.Client(base_url=http_base, timeout=30)

    def close(self) -> None:
        self.channel.close()
        self.http.close()

    def login(self, name: str) -> Metadata:
        token = self.users.Login(users_pb2.LoginRequest(username=name, password=PASSWORD)).token
        return (("authorization", f"Bearer {token}"),)

    def balance(self, md: Metadata) -> int:
        return int(
            self.tokens.GetBalance(tokens_pb2.GetBalanceRequest(), metadata=md).balance_micro
        )

    def submit(self, md: Metadata, **spec: object) -> str:
        request = jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(**spec))  # type: ignore[arg-type]
        reply = self.jobs.SubmitJob(request, metadata=md)
        print(
            f"  submitted {spec.get('name')}: job {reply.job_id} ({cpt(reply.escrow_micro)} held in escrow)"
        )
        return str(reply.job_id)

    def follow(
        self, md: Metadata, job_ids: list[str], timeout_s: float = 300
    ) -> dict[str, jobs_pb2.JobStatus]:
        """Show a progress bar until every job is final."""
        deadline = time.monotonic() + timeout_s
        interactive = sys.stdout.isatty()
        last = ""
        while True:
            statuses = {
                j: self.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=j), metadata=md) for j in job_ids
            }
            done = sum(1 for s in statuses.values() if s.state in JOB_FINAL)
            running = sum(1 for s in statuses.values() if s.state == "running")
            line = _bar(done, len(job_ids), f"jobs finished, {running} running")
            if line != last:
                print(
                    ("\r" + line) if interactive else line,
                    end="" if interactive else "\n",
                    flush=True,
                )
                last = line
            if done == len(job_ids):
                if interactive:
                    print()
                return statuses
            if time.monotonic() > deadline:
                raise TimeoutError(f"the demo jobs did not finish within {timeout_s:.0f} s")
            time.sleep(0.3)

    def download(self, md: Metadata, job_id: str, path: str) -> bytes:
        request = jobs_pb2.DownloadResultRequest(job_id=job_id, task_index=0, path=path)
        return b"".join(chunk.data for chunk in self.jobs.DownloadResult(request, metadata=md))


def run_demo(data_dir: Path) -> int:
    _step("Build the job image if this computer does not have it")
    try:
        image = ensure_busybox_image()
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"  {image} is ready")

    settings = Settings(
        data_dir=data_dir / "coordinator",
        grpc_port=0,
        http_port=0,
        log_level="WARNING",
        log_format="text",
        heartbeat_interval_s=1,
    )
    workers: list[Worker] = []
    with BackgroundCoordinator(settings) as coordinator:
        target = f"127.0.0.1:{coordinator.grpc_port}"
        print(
            f"\nCoordinator up: gRPC {target}, HTTP http://127.0.0.1:{coordinator.http_port} (SQLite)"
        )
        demo = Demo(target, f"http://127.0.0.1:{coordinator.http_port}")
        try:
            _step("Create two accounts, alice and bob, and an admin who grants each 50 CPT")
            coordinator.accounts.create_admin("admin", "admin@hivemind.example", PASSWORD)
            for name in ("alice", "bob"):
                demo.users.Register(
                    users_pb2.RegisterRequest(
                        username=name, email=f"{name}@example.org", password=PASSWORD
                    )
                )
            admin = demo.login("admin")
            admin_http = {"Authorization": str(admin[0][1])}
            for name in ("alice", "bob"):
                demo.http.post(
                    "/api/v1/admin/ledger/grant",
                    json={
                        "username": name,
                        "amount_micro": 50 * MICRO_PER_CPT,
                        "memo": "demo grant",
                    },
                    headers=admin_http,
                ).raise_for_status()
            alice, bob = demo.login("alice"), demo.login("bob")
            start = {"alice": demo.balance(alice), "bob": demo.balance(bob)}
            print(f"  alice {cpt(start['alice'])}, bob {cpt(start['bob'])}")

            _step(
                "Start two local workers, one owned by each (replicas must run on different owners)"
            )
            for name in ("alice", "bob"):
                worker = local_worker(
                    target,
                    name,
                    PASSWORD,
                    data_dir / f"worker-{name}",
                    limits=WorkerLimits(use_gpu=False, slots=2),
                )
                worker.start()
                workers.append(worker)
                print(f"  {name}'s worker started (benchmark, register, then long-poll for work)")

            _step("alice submits three jobs")
            resources = jobs_pb2.Resources(cpu_cores=0.5, memory_gb=0.125)
            common = {
                "image": image,
                "resources": resources,
                "timeout_s": 60,
                "max_budget_micro": MICRO_PER_CPT,
            }
            replicated = demo.submit(
                alice,
                name="checksum (2 replicas)",
                command=[
                    "sh",
                    "-c",
                    "seq 1 100000 | md5sum | cut -d' ' -f1 > sum.txt; cat sum.txt",
                ],
                output_paths=["sum.txt"],
                replicas=2,
                quorum=2,
                **common,
            )
            step1 = demo.submit(
                alice,
                name="dag step 1: make numbers",
                command=["sh", "-c", "seq 1 10 > numbers.txt"],
                output_paths=["numbers.txt"],
                **common,
            )
            step2 = demo.submit(
                alice,
                name="dag step 2: add them up",
                command=[
                    "sh",
                    "-c",
                    "awk '{s+=$1} END {print s}' in/numbers.txt > total.txt; cat total.txt",
                ],
                inputs=[
                    jobs_pb2.InputRef(
                        path="in/numbers.txt", from_job_id=step1, from_output="numbers.txt"
                    )
                ],
                output_paths=["total.txt"],
                depends_on=[step1],
                **common,
            )

            _step("Progress")
            statuses = demo.follow(alice, [replicated, step1, step2])

            _step("Results")
            for status in statuses.values():
                print(f"  {status.name}: {status.state}, charged {cpt(status.charged_micro)}, "
                      f"refunded {cpt(status.refunded_micro)}")  # fmt: skip
            checksum = demo.download(alice, replicated, "sum.txt").decode().strip()
            total = demo.download(alice, step2, "total.txt").decode().strip()
            print(f"  checksum job output (both replicas agreed): {checksum}")
            print(f"  dag step 2 read step 1's numbers and wrote: {total}")

            _step("Wallets")
            end = {"alice": demo.balance(alice), "bob": demo.balance(bob)}
            for name in ("alice", "bob"):
                delta = end[name] - start[name]
                print(
                    f"  {name:6s} {cpt(end[name]):>22s}  ({'+' if delta >= 0 else ''}{cpt(delta)})"
                )
            print("  (alice paid for her jobs and earned from her worker's share; bob only earned)")

            _step("The ledger audit")
            audit = demo.http.get("/api/v1/admin/ledger/audit", headers=admin_http).json()
            print(f"  {audit}")
        finally:
            for worker in workers:
                worker.stop(cancel_running=True, timeout=30)
                worker.client.close()
            demo.close()
    ok = (
        all(s.state == "completed" for s in statuses.values())
        and total == "55"
        and len(checksum) == 32
        and end["bob"] > start["bob"]
        and audit.get("status") == "ok"
    )
    print(
        "\nEverything stopped. "
        + (
            "Demo finished: everything behaved."
            if ok
            else "Demo finished with a problem: see above."
        )
    )
    return 0 if ok else 1


def main(keep: Path | None = None) -> int:
    if keep is not None:
        return run_demo(keep)
    with tempfile.TemporaryDirectory(prefix="hivemind-demo-") as tmp:
        return run_demo(Path(tmp))
