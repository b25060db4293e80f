"""JobService over gRPC: upload inputs, submit, follow, download, cancel. Transport only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import grpc

from coordinator.errors import HiveMindError
from coordinator.jobs import service as jobs
from coordinator.jobs.blobs import BlobStore
from coordinator.jobs.estimate import estimate
from coordinator.rpc.common import RpcBase, abort_with
from coordinator.rpc.convert import job_to_pb, spec_to_dict
from coordinator.rpc.files import receive_blob, send_blob
from coordinator.scheduling.service import Dispatcher
from shared_proto.v1 import jobs_pb2, jobs_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
FOLLOW_WAIT_S = 5.0


class JobServicer(RpcBase, jobs_pb2_grpc.JobServiceServicer):
    def __init__(
        self, dispatcher: Dispatcher, blobs: BlobStore, max_input_bytes: int, **base: Any
    ) -> None:
        super().__init__(**base)
        self.dispatcher = dispatcher
        self.blobs = blobs
        self.max_input_bytes = max_input_bytes
        self.db = dispatcher.db

    async def UploadInput(
        self, request_iterator: AsyncIterator[jobs_pb2.FileChunk], context: Context
    ) -> jobs_pb2.UploadInputResponse:
        await self.user(context)
        stored, _ = await self.guard(
            context,
            receive_blob(
                request_iterator, self.blobs, self.executor, max_size=self.max_input_bytes
            ),
        )
        return jobs_pb2.UploadInputResponse(
            success=True,
            sha256=stored.sha256,
            size=stored.size,
            already_present=stored.already_present,
        )

    async def SubmitJob(
        self, request: jobs_pb2.SubmitJobRequest, context: Context
    ) -> jobs_pb2.SubmitJobResponse:
        user = await self.user(context)
        submitted = await self.guard(
            context,
            self.dispatcher.submit(
                user, spec_to_dict(request.spec), request.idempotency_key or None
            ),
        )
        job = submitted.job
        message = (
            "Already submitted with this idempotency key."
            if submitted.replayed
            else "Job submitted."
        )
        return jobs_pb2.SubmitJobResponse(
            success=True,
            message=message,
            job_id=job.id,
            escrow_micro=job.escrow_micro,
            task_count=job.task_count,
        )

    async def EstimateJob(
        self, request: jobs_pb2.EstimateJobRequest, context: Context
    ) -> jobs_pb2.EstimateJobResponse:
        await self.user(context)
        dispatcher = self.dispatcher
        found = await self.call(
            context,
            lambda: estimate(
                spec_to_dict(request.spec),
                prices=dispatcher.prices(),
                default_max_attempts=dispatcher.default_max_attempts,
            ),
        )
        return jobs_pb2.EstimateJobResponse(**asdict(found))

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Context) -> jobs_pb2.JobStatus:
        user = await self.user(context)
        job, tasks = await self.call(context, jobs.job_with_tasks, self.db, user, request.job_id)
        return job_to_pb(job, tasks)

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: Context
    ) -> jobs_pb2.ListJobsResponse:
        user = await self.user(context)
        page, token = await self.call(
            context,
            jobs.jobs_page,
            self.db,
            user,
            request.page_size,
            request.page_token,
            request.state,
        )
        return jobs_pb2.ListJobsResponse(jobs=[job_to_pb(j) for j in page], next_page_token=token)

    async def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: Context
    ) -> jobs_pb2.CancelJobResponse:
        user = await self.user(context)
        refund = await self.guard(context, self.dispatcher.cancel(user, request.job_id))
        return jobs_pb2.CancelJobResponse(
            success=True,
            message="Cancelled; running containers are being stopped.",
            refunded_micro=refund,
        )

    async def StreamLogs(
        self, request: jobs_pb2.StreamLogsRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.LogChunk]:
        user = await self.user(context)
        task = await self.call(
            context, jobs.task_at, self.db, user, request.job_id, request.task_index
        )
        after = request.after_seq
        while True:
            rows, final = await self.call(context, self.dispatcher.logs_after, task.id, after)
            for row in rows:
                assert row.id is not None
                after = row.id
                yield jobs_pb2.LogChunk(
                    seq=row.id, stream=row.stream, text=row.text, lease_id=row.lease_id
                )
            if rows:
                continue
            if final or not request.follow:
                return
            await self.dispatcher.wake.wait(f"logs:{task.id}", FOLLOW_WAIT_S)

    async def DownloadResult(
        self, request: jobs_pb2.DownloadResultRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.FileChunk]:
        user = await self.user(context)
        sha = await self.call(
            context,
            jobs.result_blob,
            self.db,
            user,
            request.job_id,
            request.task_index,
            request.path,
        )
        try:
            async for chunk in send_blob(self.blobs, sha, self.executor):
                yield chunk
        except HiveMindError as exc:
            await abort_with(context, exc)
