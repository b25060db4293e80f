"""REST mirror of JobService: upload inputs, submit jobs, follow them (logs as server-sent events), download
results and cancel. Transport only: the domain is coordinator/jobs and coordinator/scheduling."""

from __future__ import annotations

import functools
import json
import logging
import os
import pathlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from coordinator.api.deps import CurrentUser, ServicesDep
from coordinator.errors import InvalidArgument
from coordinator.jobs import service as jobs
from coordinator.jobs.blobs import CHUNK_SIZE, BlobStore, StoredBlob
from coordinator.jobs.estimate import estimate
from coordinator.jobs.models import Job, Task, TaskLog
from coordinator.jobs.spec import JobSpec

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["jobs"])

# Generous caps so an absurd body is refused before any work; coordinator.jobs.spec gives the precise rules
# (and the sentences), exactly as for a spec arriving over gRPC.
_SHORT = 1024
_TEXT = 65_536
_MANY = 100_000
STDOUT = "@stdout"
FOLLOW_WAIT_S = 5.0
"""How long a followed log stream waits for a wake-up before re-checking (and sending a keep-alive)."""
MAX_LOG_PAGE = 1000

JobId = Annotated[str, Path(max_length=_SHORT)]
TaskIndex = Annotated[int, Path(ge=0, le=_MANY)]


# -- the job spec, field for field as the proto's JobSpec ----------------------------------------------------
class _Strict(BaseModel):
    # A misspelt field ("cpu" for "cpu_cores") is refused rather than silently replaced by a default.
    model_config = ConfigDict(extra="forbid")


class ResourcesIn(_Strict):
    cpu_cores: StrictFloat = Field(0.0, description="0 means the default (1 core)")
    memory_gb: StrictFloat = Field(0.0, description="0 means the default (0.5 GB)")
    gpu_count: StrictInt = 0
    gpu_memory_gb: StrictFloat = 0.0
    disk_gb: StrictFloat = Field(0.0, description="0 means the default (1 GB)")
    gpu_name: str = Field("", max_length=_SHORT, description='a substring, e.g. "A100"')


class InputRefIn(_Strict):
    path: str = Field(max_length=_SHORT, description="where the file appears in the work dir")
    sha256: str = Field("", max_length=_SHORT, description="an uploaded file (POST /api/v1/inputs)")
    from_job_id: str = Field("", max_length=_SHORT, description="... or an output of a parent job")
    from_output: str = Field("", max_length=_SHORT, description='"path" (task 0) or "index:path"')


class ParameterSetIn(_Strict):
    env: dict[str, str] = Field(default_factory=dict, max_length=_SHORT)
    args: list[Annotated[str, Field(max_length=_TEXT)]] = Field(
        default_factory=list, max_length=_SHORT
    )


class JobSpecIn(_Strict):
    """What to run. Zero and empty values mean the coordinator's defaults, as in the proto."""

    name: str = Field("", max_length=_SHORT)
    image: str = Field(max_length=_SHORT, examples=["python:3.11-slim"])
    command: list[Annotated[str, Field(max_length=_TEXT)]] = Field(
        max_length=_SHORT, examples=[["python3", "-c", "print(6 * 7)"]]
    )
    env: dict[str, str] = Field(default_factory=dict, max_length=_SHORT)
    inputs: list[InputRefIn] = Field(default_factory=list, max_length=_SHORT)
    output_paths: list[Annotated[str, Field(max_length=_SHORT)]] = Field(
        default_factory=list, max_length=_SHORT
    )
    resources: ResourcesIn = Field(default_factory=ResourcesIn)
    timeout_s: StrictInt = 0
    priority: StrictInt = 0
    depends_on: list[Annotated[str, Field(max_length=_SHORT)]] = Field(
        default_factory=list, max_length=_SHORT
    )
    parameter_sets: list[ParameterSetIn] = Field(default_factory=list, max_length=_MANY)
    array_size: StrictInt = 0
    replicas: StrictInt = 0
    quorum: StrictInt = 0
    # Strict: "5" or 5.0 are refused rather than coerced; money is an integer of micro-CPT.
    max_budget_micro: StrictInt = Field(
        0,
        description="the most this job may cost, held in escrow at submission (1 CPT = 1,000,000)",
    )
    network_access: StrictBool = False
    max_attempts: StrictInt = 0


class SubmitBody(JobSpecIn):
    idempotency_key: str | None = Field(
        None,
        max_length=_SHORT,
        description="optional; resubmitting with the same key returns the first job and holds nothing",
    )


class JobSpecOut(JobSpecIn):
    """The spec as accepted, defaults filled in."""

    # A field the domain adds later is shown, not a reason to fail every GET.
    model_config = ConfigDict(extra="allow")


class SubmitOut(BaseModel):
    job_id: str
    escrow_micro: int = Field(description="the budget now held in the job's escrow account")
    task_count: int
    replayed: bool = Field(description="true when this idempotency key was used before")
    message: str


class EstimateOut(BaseModel):
    """What the spec would cost, in micro-CPT, from the coordinator's current price table."""

    task_count: int
    replicas: int
    timeout_s: int
    escrow_micro: int = Field(description="held from the wallet at submission: the whole budget")
    max_cost_micro: int = Field(description="the most the job can cost (capped by the budget)")
    full_timeout_cost_micro: int = Field(
        description="every replica using all it reserved until the timeout, on the fastest node"
    )
    min_cost_micro: int = Field(description="every replica at the minimum charge")
    task_minute_micro: int = Field(
        description="one task (all replicas) per minute of run time on the reference machine"
    )
    platform_fee_bps: int


# -- jobs and tasks as their owner sees them ------------------------------------------------------------------
class OutputOut(BaseModel):
    path: str
    sha256: str
    size: int


class TaskOut(BaseModel):
    task_id: str
    index: int
    state: str = Field(description="waiting, queued, running, accepted, failed or cancelled")
    exit_code: int | None
    result_hash: str | None
    stdout_sha256: str | None = Field(description=f"download it as the output '{STDOUT}'")
    outputs: list[OutputOut]
    attempts: int
    failure_reason: str
    charged_micro: int
    finished_at: datetime | None


class JobOut(BaseModel):
    job_id: str
    name: str
    owner_id: int
    state: str = Field(description="waiting, queued, running, completed, failed or cancelled")
    failure_reason: str
    task_count: int
    tasks_done: int
    tasks_failed: int
    escrow_micro: int
    charged_micro: int
    refunded_micro: int
    created_at: datetime
    finished_at: datetime | None
    spec: JobSpecOut


class JobDetailOut(JobOut):
    tasks: list[TaskOut]


class JobListOut(BaseModel):
    jobs: list[JobOut]
    next_page_token: str = Field(
        description="pass as page_token for the next page; empty at the end"
    )


class CancelOut(BaseModel):
    job_id: str
    refunded_micro: int
    message: str


class LogLineOut(BaseModel):
    seq: int = Field(description="pass the last one as after_seq to continue")
    stream: str = Field(description="stdout or stderr")
    text: str
    lease_id: str


class UploadOut(BaseModel):
    sha256: str
    size: int
    already_present: bool = Field(description="the coordinator held these bytes already")


def _job_fields(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "name": job.name,
        "owner_id": job.owner_id,
        "state": job.state,
        "failure_reason": job.failure_reason,
        "task_count": job.task_count,
        "tasks_done": job.tasks_done,
        "tasks_failed": job.tasks_failed,
        "escrow_micro": job.escrow_micro,
        "charged_micro": job.charged_micro,
        "refunded_micro": job.refunded_micro,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "spec": JobSpecOut.model_validate(JobSpec.from_stored(job.spec).as_dict()),
    }


def _task_out(task: Task) -> TaskOut:
    return TaskOut(
        task_id=task.id,
        index=task.index,
        state=task.state,
        exit_code=task.exit_code,
        result_hash=task.result_hash,
        stdout_sha256=task.stdout_sha256,
        outputs=[
            OutputOut(path=o["path"], sha256=o["sha256"], size=o["size"]) for o in task.outputs
        ],
        attempts=task.attempts,
        failure_reason=task.failure_reason,
        charged_micro=task.charged_micro,
        finished_at=task.finished_at,
    )


def _log_out(row: TaskLog) -> LogLineOut:
    assert row.id is not None
    return LogLineOut(seq=row.id, stream=row.stream, text=row.text, lease_id=row.lease_id)


# -- inputs --------------------------------------------------------------------------------------------------
@router.post(
    "/inputs",
    response_model=UploadOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
    responses={200: {"description": "the coordinator held these bytes already"}},
)
async def upload_input(
    request: Request,
    response: Response,
    _user: CurrentUser,
    services: ServicesDep,
    x_content_sha256: Annotated[
        str | None,
        Header(
            max_length=_SHORT, description="optional: refused unless the bytes have this sha256"
        ),
    ] = None,
) -> UploadOut:
    """Upload one input file as the raw request body; refer to it in a spec by the returned sha256."""
    blobs, max_size = services.blobs, services.settings.max_input_bytes
    # Content-Length is HTTP framing, not a parameter: read it here, so the schema does not invite
    # clients (or fuzzers) to send one that disagrees with the body.
    declared = request.headers.get("content-length", "")
    content_length = int(declared) if declared.isdigit() else None
    if content_length is not None and content_length > max_size:
        raise InvalidArgument(BlobStore._too_large(max_size))
    # Spool to a temporary file first: a slow client then holds no thread while its bytes trickle in
    # (as on the gRPC side, coordinator/rpc/files.py), and a too-large body is refused as soon as it is.
    fd, name = tempfile.mkstemp(dir=blobs.root / "tmp", prefix="upload-")
    spool = pathlib.Path(name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > max_size:
                        raise InvalidArgument(BlobStore._too_large(max_size))
                    await run_in_threadpool(out.write, chunk)
            except ClientDisconnect:
                logger.info("input upload abandoned by the client after %d bytes", size)
                raise InvalidArgument(
                    "The upload ended before the whole file arrived. Send it again."
                ) from None

        def store() -> StoredBlob:
            with spool.open("rb") as fh:
                return blobs.put(
                    iter(functools.partial(fh.read, CHUNK_SIZE), b""),
                    max_size=max_size,
                    expected_sha256=(x_content_sha256 or "").strip().lower() or None,
                    expected_size=content_length,
                )

        stored = await run_in_threadpool(store)
    finally:
        await run_in_threadpool(spool.unlink, missing_ok=True)
    if stored.already_present:
        response.status_code = status.HTTP_200_OK
    return UploadOut(sha256=stored.sha256, size=stored.size, already_present=stored.already_present)


# -- jobs ----------------------------------------------------------------------------------------------------
@router.post(
    "/jobs",
    response_model=SubmitOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "replayed: this idempotency key was used before"}},
)
async def submit_job(
    body: SubmitBody, response: Response, user: CurrentUser, services: ServicesDep
) -> SubmitOut:
    """Validate the spec, hold ``max_budget_micro`` in escrow and queue the tasks, all or nothing."""
    spec = body.model_dump(exclude={"idempotency_key"})
    submitted = await services.dispatcher.submit(user, spec, body.idempotency_key)
    if submitted.replayed:
        response.status_code = status.HTTP_200_OK
    job = submitted.job
    return SubmitOut(
        job_id=job.id,
        escrow_micro=job.escrow_micro,
        task_count=job.task_count,
        replayed=submitted.replayed,
        message="Already submitted with this idempotency key."
        if submitted.replayed
        else "Job submitted.",
    )


@router.post("/jobs/estimate", response_model=EstimateOut)
def estimate_job(body: JobSpecIn, _user: CurrentUser, services: ServicesDep) -> EstimateOut:
    """What the spec would cost, checked as a submission is; nothing is held or created."""
    dispatcher = services.dispatcher
    found = estimate(
        body.model_dump(),
        prices=dispatcher.prices(),
        default_max_attempts=dispatcher.default_max_attempts,
    )
    return EstimateOut(**asdict(found))


@router.get("/jobs", response_model=JobListOut)
def list_jobs(
    user: CurrentUser,
    services: ServicesDep,
    page_size: Annotated[int, Query(description="1..200")] = 50,
    page_token: Annotated[str, Query(max_length=_SHORT)] = "",
    state: Annotated[str, Query(max_length=_SHORT, description="only jobs in this state")] = "",
) -> JobListOut:
    """The caller's jobs, newest first."""
    page, next_token = jobs.jobs_page(services.db, user, page_size, page_token, state)
    return JobListOut(jobs=[JobOut(**_job_fields(j)) for j in page], next_page_token=next_token)


@router.get("/jobs/{job_id}", response_model=JobDetailOut)
def get_job(job_id: JobId, user: CurrentUser, services: ServicesDep) -> JobDetailOut:
    """One job with its tasks and their accepted outputs (owners and admins)."""
    job, tasks = jobs.job_with_tasks(services.db, user, job_id)
    return JobDetailOut(**_job_fields(job), tasks=[_task_out(t) for t in tasks])


@router.post("/jobs/{job_id}/cancel", response_model=CancelOut)
async def cancel_job(job_id: JobId, user: CurrentUser, services: ServicesDep) -> CancelOut:
    """Stop the job's tasks (workers kill their containers) and refund what was not consumed."""
    refund = await services.dispatcher.cancel(user, job_id)
    return CancelOut(
        job_id=job_id,
        refunded_micro=refund,
        message="Cancelled; running containers are being stopped.",
    )


# -- logs ----------------------------------------------------------------------------------------------------
@router.get(
    "/jobs/{job_id}/tasks/{index}/logs",
    response_model=list[LogLineOut],
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "example": 'id: 7\nevent: stdout\ndata: {"seq": 7, "stream": "stdout", '
                    '"text": "hello", "lease_id": "..."}\n\n'
                    'event: end\ndata: {"state": "accepted"}\n\n'
                }
            },
            "description": "JSON lines, or with follow=true server-sent events until the task ends",
        }
    },
)
async def task_logs(
    job_id: JobId,
    index: TaskIndex,
    user: CurrentUser,
    services: ServicesDep,
    after_seq: Annotated[int, Query(ge=0, description="only lines after this seq")] = 0,
    follow: Annotated[
        bool, Query(description="stream server-sent events until the task ends")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_PAGE, description="lines per page")] = 500,
    last_event_id: Annotated[
        int | None, Header(ge=0, description="set by EventSource on reconnect; resumes there")
    ] = None,
) -> Any:
    """A task's log lines. Without ``follow`` one page (ask again with ``after_seq`` = the last ``seq``
    until a page is empty); with ``follow`` an event per line (``event`` is the stream, ``id`` the seq),
    a comment every few seconds to keep the connection open, and a final ``end`` event."""
    task = await run_in_threadpool(jobs.task_at, services.db, user, job_id, index)
    dispatcher = services.dispatcher
    if not follow:
        rows, _ = await run_in_threadpool(dispatcher.logs_after, task.id, after_seq, limit)
        return [_log_out(r) for r in rows]

    async def events() -> AsyncIterator[str]:
        after = max(after_seq, last_event_id or 0)
        while True:
            rows, final = await run_in_threadpool(dispatcher.logs_after, task.id, after, limit)
            for row in rows:
                line = _log_out(row)
                after = line.seq
                yield f"id: {line.seq}\nevent: {line.stream}\ndata: {line.model_dump_json()}\n\n"
            if rows:
                continue
            if final:
                state = (
                    await run_in_threadpool(jobs.task_at, services.db, user, job_id, index)
                ).state
                yield f"event: end\ndata: {json.dumps({'state': state})}\n\n"
                return
            if not await dispatcher.wake.wait(f"logs:{task.id}", FOLLOW_WAIT_S):
                yield ": waiting for the task\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- results -------------------------------------------------------------------------------------------------
def _attachment(path: str) -> str:
    name = "stdout.txt" if path == STDOUT else path.rsplit("/", 1)[-1]
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.get(
    "/jobs/{job_id}/tasks/{index}/outputs/{path:path}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "the file's bytes; X-Content-SHA256 names their sha256",
        }
    },
)
async def download_output(
    job_id: JobId,
    index: TaskIndex,
    path: Annotated[str, Path(max_length=_SHORT, description=f"an output path, or {STDOUT}")],
    user: CurrentUser,
    services: ServicesDep,
) -> StreamingResponse:
    """One accepted output file of a task (or its stdout with the path ``@stdout``)."""
    sha = await run_in_threadpool(jobs.result_blob, services.db, user, job_id, index, path)
    size = await run_in_threadpool(services.blobs.size_of, sha)
    reader = services.blobs.read(sha)
    # Read the first chunk before answering, so a missing file is a 404 rather than a cut-off 200.
    first = await run_in_threadpool(next, reader, b"")

    def chunks() -> Iterator[bytes]:
        if first:
            yield first
        yield from reader

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": _attachment(path),
            "Content-Length": str(size),
            "X-Content-SHA256": sha,
        },
    )
