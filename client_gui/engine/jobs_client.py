"""The submitter's typed client for the coordinator's JobService: upload inputs, submit, follow, download.

Only this module touches the job ``_pb2`` types on the submitting side; callers get the dataclasses below.
Every gRPC failure becomes a :class:`~client_gui.engine.coordinator_client.CoordinatorError` whose
``message`` is the coordinator's sentence (the same errors the worker's client raises). No Qt here.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import shlex
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any, BinaryIO

import grpc
from google.protobuf import json_format

from client_gui.engine.coordinator_client import (
    CALL_TIMEOUT_S,
    CHUNK_SIZE,
    DEFAULT_TARGET,
    TRANSFER_TIMEOUT_S,
    CoordinatorError,
    NotAuthenticated,
    TransferCorrupted,
    UserChannel,
    _translate,
)
from shared_proto.v1 import jobs_pb2, jobs_pb2_grpc, users_pb2, users_pb2_grpc

logger = logging.getLogger(__name__)

MAX_MICRO = 2**63 - 1
STDOUT = "@stdout"
"""The download path of a task's standard output."""
FINAL_JOB_STATES = frozenset({"completed", "failed", "cancelled"})
LIST_PAGE_SIZE = 100


class JobSpecError(ValueError):
    """A job spec (dict or file) that cannot be turned into a JobSpec; ``str()`` says what to fix."""


class JobWaitTimeout(CoordinatorError):
    """:meth:`JobsClient.wait` gave up before the job ended (the job itself goes on)."""


# --- values callers work with -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputFile:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class TaskStatus:
    task_id: str
    index: int
    state: str
    """waiting, queued, running, accepted, failed or cancelled."""
    exit_code: int
    result_hash: str
    outputs: tuple[OutputFile, ...]
    attempts: int
    failure_reason: str
    charged_micro: int

    @property
    def has_result(self) -> bool:
        """Whether the verified result (outputs and stdout) can be downloaded."""
        return bool(self.result_hash) and self.state in ("accepted", "failed")


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    name: str
    state: str
    """waiting, queued, running, completed, failed or cancelled."""
    failure_reason: str
    task_count: int
    tasks_done: int
    tasks_failed: int
    escrow_micro: int
    charged_micro: int
    refunded_micro: int
    created_at: int
    """Unix seconds."""
    finished_at: int
    """Unix seconds; 0 while the job runs."""
    tasks: tuple[TaskStatus, ...]
    """Empty in :meth:`JobsClient.list`."""

    @property
    def finished(self) -> bool:
        return self.state in FINAL_JOB_STATES


@dataclass(frozen=True)
class Submission:
    job_id: str
    escrow_micro: int
    task_count: int
    message: str


@dataclass(frozen=True)
class JobEstimate:
    """What a spec would cost, in micro-CPT, from the coordinator's current price table."""

    task_count: int
    replicas: int
    timeout_s: int
    escrow_micro: int
    """Held from the wallet at submission: the whole budget; what is not spent comes back at the end."""
    max_cost_micro: int
    """The most the job can cost: ``full_timeout_cost_micro`` capped by the budget."""
    full_timeout_cost_micro: int
    """Every replica of every task using all it reserved until the timeout, on the fastest node."""
    min_cost_micro: int
    task_minute_micro: int
    """One task (all its replicas) per minute of run time on the reference machine."""
    platform_fee_bps: int


@dataclass(frozen=True)
class Upload:
    sha256: str
    size: int
    already_present: bool


def _job_from_pb(job: jobs_pb2.JobStatus) -> JobStatus:
    return JobStatus(
        job_id=job.job_id,
        name=job.name,
        state=job.state,
        failure_reason=job.failure_reason,
        task_count=job.task_count,
        tasks_done=job.tasks_done,
        tasks_failed=job.tasks_failed,
        escrow_micro=job.escrow_micro,
        charged_micro=job.charged_micro,
        refunded_micro=job.refunded_micro,
        created_at=job.created_at,
        finished_at=job.finished_at,
        tasks=tuple(
            TaskStatus(
                task_id=t.task_id,
                index=t.index,
                state=t.state,
                exit_code=t.exit_code,
                result_hash=t.result_hash,
                outputs=tuple(OutputFile(o.path, o.sha256, o.size) for o in t.outputs),
                attempts=t.attempts,
                failure_reason=t.failure_reason,
                charged_micro=t.charged_micro,
            )
            for t in job.tasks
        ),
    )


# --- money and specs ----------------------------------------------------------------------------------------


def cpt_to_micro(amount: str | int | Decimal) -> int:
    """``"1.5"`` CPT -> ``1_500_000`` micro-CPT, exactly (never through a float).

    Refuses more than 6 decimals (the ledger's unit is the micro-CPT), and zero or negative amounts."""
    try:
        value = Decimal(str(amount).strip().replace("_", ""))
    except InvalidOperation:
        raise JobSpecError(f"{amount!r} is not an amount of CPT; write it like 2.5") from None
    if not value.is_finite():
        raise JobSpecError(f"{amount!r} is not an amount of CPT; write it like 2.5")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        raise JobSpecError(
            f"{amount} CPT has more than 6 decimals; the smallest unit is 0.000001 CPT."
        )
    if value <= 0:
        raise JobSpecError(f"The amount must be more than 0 CPT (got {amount}).")
    with localcontext() as exact:
        exact.prec = 200  # scaling by 10^6 must never round
        micro = int(value.scaleb(6))
    if micro > MAX_MICRO:
        raise JobSpecError(f"{amount} CPT is more than any wallet can hold.")
    return micro


def format_cpt(micro: int) -> str:
    """``12_500_000`` -> ``"12.5 CPT"``, exactly."""
    return f"{format(Decimal(micro).scaleb(-6).normalize(), ',f')} CPT"


def spec_from_dict(data: Mapping[str, Any]) -> jobs_pb2.JobSpec:
    """Build a JobSpec from a dict with the proto's field names (as in the REST body), plus two comforts:
    ``command`` may be one string (split like a shell would), and ``budget_cpt`` (e.g. ``"2.5"``) may
    stand for ``max_budget_micro``. Unknown fields are refused, so a typo is not silently ignored."""
    if not isinstance(data, Mapping):
        raise JobSpecError('A job spec is a JSON object, e.g. {"image": ..., "command": [...]}.')
    raw = dict(data)
    if isinstance(raw.get("command"), str):
        raw["command"] = shlex.split(raw["command"])
    if "budget_cpt" in raw:
        if raw.get("max_budget_micro"):
            raise JobSpecError("Give either budget_cpt or max_budget_micro, not both.")
        raw["max_budget_micro"] = cpt_to_micro(raw.pop("budget_cpt"))
    known = [f.name for f in jobs_pb2.JobSpec.DESCRIPTOR.fields]
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise JobSpecError(
            f"The job spec has unknown field(s) {', '.join(unknown)}; "
            f"the fields are {', '.join(known)} (and budget_cpt)."
        )
    try:
        return json_format.ParseDict(raw, jobs_pb2.JobSpec())
    except json_format.ParseError as exc:
        detail = str(exc).splitlines()[0]
        raise JobSpecError(f"The job spec is not valid: {detail}") from None


# --- the client ---------------------------------------------------------------------------------------------


class JobsClient(UserChannel):
    """A submitter's connection to the coordinator. Sign in with :meth:`login`, or pass a ``token``.

    Calls raise :class:`CoordinatorError` (or a subclass) whose ``message`` is the coordinator's sentence.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        token: str | None = None,
        *,
        tls: bool = False,
        call_timeout_s: float = CALL_TIMEOUT_S,
        transfer_timeout_s: float = TRANSFER_TIMEOUT_S,
    ) -> None:
        super().__init__(target, token, tls=tls, call_timeout_s=call_timeout_s)
        self.transfer_timeout_s = transfer_timeout_s
        self._users = users_pb2_grpc.UserServiceStub(self._channel)
        self._jobs = jobs_pb2_grpc.JobServiceStub(self._channel)

    # -- sign-in --

    def login(self, username: str, password: str) -> str:
        """Sign in and keep the access token for the calls that follow; returns it."""
        try:
            reply = self._users.Login(
                users_pb2.LoginRequest(username=username, password=password),
                timeout=self.call_timeout_s,
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "sign in") from None
        if not reply.success or not reply.token:
            raise NotAuthenticated(reply.message or "The coordinator refused the sign-in.")
        self.token = reply.token
        return self.token

    # -- inputs --

    def upload(self, path: Path) -> str:
        """Upload one input file (256 KiB chunks, checked against its sha256); returns the sha256."""
        return self.upload_file(path).sha256

    def upload_file(self, path: Path) -> Upload:
        """:meth:`upload`, also saying the size and whether the coordinator had the bytes already."""
        path = Path(path)
        try:
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK_SIZE):
                    digest.update(chunk)
            size = path.stat().st_size
            sha = digest.hexdigest()
            with path.open("rb") as fh:
                reply = self._jobs.UploadInput(
                    _upload_chunks(fh, sha, size),
                    timeout=self.transfer_timeout_s,
                    metadata=self._metadata(),
                )
        except OSError as exc:
            raise CoordinatorError(f"Cannot read {path}: {exc.strerror or exc}.") from None
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, f"store the input {path.name}") from None
        if reply.sha256 != sha:
            raise TransferCorrupted(
                f"{path.name} changed while it was being uploaded; upload it again."
            )
        logger.info("uploaded %s as %s (%d bytes)", path, sha, size)
        return Upload(reply.sha256, reply.size, reply.already_present)

    # -- jobs --

    def submit(
        self, spec: Mapping[str, Any] | jobs_pb2.JobSpec, idempotency_key: str | None = None
    ) -> str:
        """Submit a job (its budget is held in escrow); returns the job id."""
        return self.submit_job(spec, idempotency_key).job_id

    def submit_job(
        self, spec: Mapping[str, Any] | jobs_pb2.JobSpec, idempotency_key: str | None = None
    ) -> Submission:
        """:meth:`submit`, also saying the escrow held and the number of tasks."""
        message = spec if isinstance(spec, jobs_pb2.JobSpec) else spec_from_dict(spec)
        request = jobs_pb2.SubmitJobRequest(spec=message, idempotency_key=idempotency_key or "")
        reply = self._call("submit the job", self._jobs.SubmitJob, request)
        return Submission(reply.job_id, reply.escrow_micro, reply.task_count, reply.message)

    def estimate(self, spec: Mapping[str, Any] | jobs_pb2.JobSpec) -> JobEstimate:
        """What the job would cost, checked as :meth:`submit_job` would check it; nothing is held."""
        message = spec if isinstance(spec, jobs_pb2.JobSpec) else spec_from_dict(spec)
        reply = self._call(
            "estimate the job", self._jobs.EstimateJob, jobs_pb2.EstimateJobRequest(spec=message)
        )
        return JobEstimate(
            task_count=reply.task_count,
            replicas=reply.replicas,
            timeout_s=reply.timeout_s,
            escrow_micro=reply.escrow_micro,
            max_cost_micro=reply.max_cost_micro,
            full_timeout_cost_micro=reply.full_timeout_cost_micro,
            min_cost_micro=reply.min_cost_micro,
            task_minute_micro=reply.task_minute_micro,
            platform_fee_bps=reply.platform_fee_bps,
        )

    def get(self, job_id: str) -> JobStatus:
        reply = self._call("show the job", self._jobs.GetJob, jobs_pb2.GetJobRequest(job_id=job_id))
        return _job_from_pb(reply)

    def list(self, *, state: str = "", limit: int = LIST_PAGE_SIZE) -> builtins.list[JobStatus]:
        """Up to ``limit`` of your jobs, newest first (optionally only those in ``state``)."""
        found: builtins.list[JobStatus] = []
        token = ""
        while len(found) < limit:
            reply = self._call(
                "list the jobs",
                self._jobs.ListJobs,
                jobs_pb2.ListJobsRequest(
                    page_size=min(200, limit - len(found)), page_token=token, state=state
                ),
            )
            found.extend(_job_from_pb(j) for j in reply.jobs)
            token = reply.next_page_token
            if not token:
                break
        return found

    def cancel(self, job_id: str) -> int:
        """Cancel the job; returns the refund in micro-CPT."""
        reply = self._call(
            "cancel the job", self._jobs.CancelJob, jobs_pb2.CancelJobRequest(job_id=job_id)
        )
        return int(reply.refunded_micro)

    def wait(
        self,
        job_id: str,
        timeout_s: float | None = None,
        poll_s: float = 2.0,
        *,
        on_update: Callable[[JobStatus], None] | None = None,
    ) -> JobStatus:
        """Poll until the job completes, fails or is cancelled; returns its final status.

        Raises :class:`JobWaitTimeout` after ``timeout_s`` (None waits for as long as it takes)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if on_update is not None:
                on_update(job)
            if job.finished:
                return job
            if deadline is not None and time.monotonic() + poll_s > deadline:
                raise JobWaitTimeout(
                    f"Job {job_id} is still {job.state} after {timeout_s:g} s "
                    f"({job.tasks_done} of {job.task_count} tasks done)."
                )
            time.sleep(poll_s)

    # -- logs and results --

    def logs(
        self, job_id: str, index: int = 0, follow: bool = False, after_seq: int = 0
    ) -> Iterator[tuple[str, str]]:
        """A task's log lines as ``(stream, text)``, stream being stdout or stderr. With ``follow`` the
        iterator goes on until the task ends."""
        request = jobs_pb2.StreamLogsRequest(
            job_id=job_id, task_index=index, follow=follow, after_seq=after_seq
        )
        try:
            for chunk in self._jobs.StreamLogs(
                request,
                timeout=None if follow else self.call_timeout_s,
                metadata=self._metadata(),
            ):
                yield chunk.stream, chunk.text
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "send the task's log") from None

    def download(self, job_id: str, index: int, path: str, dest: Path) -> OutputFile:
        """Download an accepted output of task ``index`` (``path`` "@stdout" for its stdout) to ``dest``.

        The bytes go to a temporary file beside ``dest``, renamed into place only when their sha256 is the
        one the coordinator announced; otherwise nothing is kept and :class:`TransferCorrupted` is raised.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.part")
        digest = hashlib.sha256()
        size = 0
        expected = ""
        request = jobs_pb2.DownloadResultRequest(job_id=job_id, task_index=index, path=path)
        try:
            with partial.open("wb") as out:
                for chunk in self._jobs.DownloadResult(
                    request, timeout=self.transfer_timeout_s, metadata=self._metadata()
                ):
                    expected = expected or chunk.expected_sha256
                    digest.update(chunk.data)
                    out.write(chunk.data)
                    size += len(chunk.data)
        except grpc.RpcError as exc:
            partial.unlink(missing_ok=True)
            raise _translate(exc, self.target, f"send the output {path}") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        sha = digest.hexdigest()
        if sha != expected:
            partial.unlink(missing_ok=True)
            raise TransferCorrupted(
                f"{path} of task {index} arrived corrupted (its sha256 does not match); "
                "nothing was kept. Download it again."
            )
        partial.replace(dest)
        return OutputFile(path, sha, size)

    # -- plumbing --

    def _call(self, action: str, method: Callable[..., Any], request: Any) -> Any:
        try:
            return method(request, timeout=self.call_timeout_s, metadata=self._metadata())
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, action) from None


def _upload_chunks(stream: BinaryIO, sha256: str, size: int) -> Iterator[jobs_pb2.FileChunk]:
    """The chunks of one upload; the first (sent even for an empty file) carries the sha256 and size."""
    data = stream.read(CHUNK_SIZE)
    yield jobs_pb2.FileChunk(data=data, expected_sha256=sha256, total_size=size)
    while data := stream.read(CHUNK_SIZE):
        yield jobs_pb2.FileChunk(data=data)
