"""WorkerService over gRPC: what a registered node does with its credential. Transport only; the
dispatcher (coordinator/scheduling/service.py) holds the behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import grpc

from coordinator.clock import to_unix
from coordinator.errors import HiveMindError, InvalidArgument, Unauthenticated
from coordinator.jobs.blobs import BlobStore, check_sha256
from coordinator.jobs.spec import check_relative_path
from coordinator.nodes.models import Node
from coordinator.nodes.service import NodeRegistry
from coordinator.rpc.common import RpcBase, abort_with, bearer_token
from coordinator.rpc.files import receive_blob, send_blob
from coordinator.scheduling.service import (
    Dispatcher,
    LeaseGrant,
    PollRequest,
    ReportedResult,
    ReportedUsage,
)
from shared_proto.v1 import jobs_pb2, worker_pb2, worker_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
logger = logging.getLogger(__name__)
MAX_REPORT_BATCH = 256
MAX_LOG_BATCH = 1000


@dataclass(slots=True)
class _Checked:
    node: Node
    checked_at: float  # when the read that found the credential valid started
    used_at: float


class NodeAuthCache:
    """Node credentials checked against the database, each trusted for ``ttl_s`` seconds.

    A worker calls every few seconds, so without a cache a fleet costs a database read per call, and with a
    plain one a read (and a Node built from it) per node every ``ttl_s``: 0.2 ms each, 2,000 a second for
    10,000 nodes. Here a caller whose entry is out of date checks it again together with every entry past half
    its time, in one read (``NodeRegistry.authenticate_many``), and callers that find such a check under way
    wait for it. The entries of a fleet so fall into one or two cohorts, each checked in one read per
    ``ttl_s``. Revoking a credential, or disabling its owner, still takes effect on a connected worker within
    ``ttl_s``. Entries unused for ``IDLE_TTLS`` times ``ttl_s`` are dropped rather than checked."""

    IDLE_TTLS = 12
    MAX_ENTRIES = 100_000

    def __init__(
        self,
        registry: NodeRegistry,
        ttl_s: float,
        executor: Executor,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.ttl_s = ttl_s
        self.executor = executor
        self.clock = clock
        self._entries: dict[str, _Checked] = {}
        self._recheck: asyncio.Future[None] | None = None

    def _fresh(self, credential: str) -> Node | None:
        entry = self._entries.get(credential)
        if entry is None:
            return None
        now = self.clock()
        if now - entry.checked_at >= self.ttl_s:
            return None
        entry.used_at = now
        return entry.node

    async def node(self, credential: str) -> Node:
        """The node of ``credential``; raises Unauthenticated as ``NodeRegistry.authenticate`` does."""
        node = self._fresh(credential)
        if node is not None:
            return node
        loop = asyncio.get_running_loop()
        if credential in self._entries:
            with contextlib.suppress(Exception):  # logged once, by the check; then this one alone
                await self._recheck_stale(loop)
            node = self._fresh(credential)
            if node is not None:
                return node
        # First seen, refused by the check together (its refusal is read again to say why), or that check
        # failed: check this one alone.
        started = self.clock()
        node = await loop.run_in_executor(self.executor, self.registry.authenticate, credential)
        if self.ttl_s > 0:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[credential] = _Checked(node, started, started)
        return node

    async def _recheck_stale(self, loop: asyncio.AbstractEventLoop) -> None:
        recheck = self._recheck
        if recheck is None:
            recheck = self._recheck = asyncio.ensure_future(self._run_recheck(loop))
            recheck.add_done_callback(self._recheck_done)
        await asyncio.shield(recheck)

    def _recheck_done(self, recheck: asyncio.Future[None]) -> None:
        if self._recheck is recheck:
            self._recheck = None

    async def _run_recheck(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            started = self.clock()
            stale: list[str] = []
            for credential, entry in list(self._entries.items()):
                if started - entry.used_at >= self.IDLE_TTLS * self.ttl_s:
                    del self._entries[credential]
                elif started - entry.checked_at >= self.ttl_s / 2:
                    stale.append(credential)
            if not stale:
                return
            answers = await loop.run_in_executor(
                self.executor, self.registry.authenticate_many, stale
            )
            for credential, answer in answers.items():
                current = self._entries.get(credential)
                if isinstance(answer, Unauthenticated):
                    self._entries.pop(credential, None)
                elif current is not None and current.checked_at < started:
                    current.node, current.checked_at = answer, started
        except Exception:
            logger.warning("node credentials could not be re-checked together", exc_info=True)
            raise


class WorkerServicer(RpcBase, worker_pb2_grpc.WorkerServiceServicer):
    def __init__(
        self,
        registry: NodeRegistry,
        dispatcher: Dispatcher,
        blobs: BlobStore,
        auth_cache_s: float,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.registry = registry
        self.dispatcher = dispatcher
        self.blobs = blobs
        self.auth = NodeAuthCache(registry, auth_cache_s, self.executor)

    async def node(self, context: Context) -> Node:
        credential = bearer_token(context)
        if not credential:
            await abort_with(
                context,
                Unauthenticated(
                    "This call needs the node credential (authorization: Bearer hmn_...)."
                ),
            )
        try:
            return await self.auth.node(credential)
        except HiveMindError as exc:
            await abort_with(context, exc)

    async def PollTasks(
        self, request: worker_pb2.PollTasksRequest, context: Context
    ) -> worker_pb2.PollTasksResponse:
        """Record the results the node sends along (as ReportResults), then long-poll for leases."""
        node = await self.node(context)
        outcomes: list[worker_pb2.ReportOutcome] = []
        if request.results:
            outcomes = await self._report(node, request.results, context)
        req = PollRequest(
            max_tasks=request.max_tasks or 1,
            free_cpu_cores=request.free_cpu_cores,
            free_memory_gb=request.free_memory_gb,
            free_gpus=request.free_gpus,
            wait_s=request.wait_s,
            docker_available=request.docker_available,
            allow_network=request.allow_network,
        )
        if not outcomes:
            grants = await self.guard(context, self.dispatcher.poll(node, req))
        else:
            try:
                grants = await self.dispatcher.poll(node, req)
            except Exception:  # the results are recorded: answer them, with no work this time
                logger.warning("a poll failed after recording its results", exc_info=True)
                grants = []
        return worker_pb2.PollTasksResponse(
            leases=[_lease_pb(g) for g in grants],
            heartbeat_interval_s=self.dispatcher.heartbeat_interval_s,
            outcomes=outcomes,
        )

    async def Heartbeat(
        self, request: worker_pb2.HeartbeatRequest, context: Context
    ) -> worker_pb2.HeartbeatResponse:
        node = await self.node(context)
        usage = {
            "cpu_usage_percent": request.cpu_usage_percent,
            "memory_usage_percent": request.memory_usage_percent,
            "gpu_usage_percent": request.gpu_usage_percent,
        }
        cancelled, unknown, deadline = await self.guard(
            context, self.dispatcher.heartbeat(node, list(request.lease_ids), usage, request.status)
        )
        return worker_pb2.HeartbeatResponse(
            cancelled_lease_ids=cancelled,
            unknown_lease_ids=unknown,
            deadline_ms=int(deadline.timestamp() * 1000),
        )

    async def AppendLogs(
        self, request: worker_pb2.AppendLogsRequest, context: Context
    ) -> worker_pb2.AppendLogsResponse:
        node = await self.node(context)
        if len(request.lines) > MAX_LOG_BATCH:
            await abort_with(
                context, InvalidArgument(f"Send at most {MAX_LOG_BATCH} log lines per call.")
            )
        lines = [(line.lease_id, line.stream, line.text) for line in request.lines]
        accepted = await self.guard(context, self.dispatcher.append_logs(node, lines))
        return worker_pb2.AppendLogsResponse(accepted=accepted)

    async def UploadOutput(
        self, request_iterator: AsyncIterator[jobs_pb2.FileChunk], context: Context
    ) -> jobs_pb2.UploadInputResponse:
        node = await self.node(context)
        iterator = request_iterator.__aiter__()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            await abort_with(
                context, InvalidArgument("The upload was empty: send at least one chunk.")
            )
        try:
            if first.path != "@stdout":
                check_relative_path(first.path, "output path")
        except HiveMindError as exc:
            await abort_with(context, exc)
        await self.call(context, self.dispatcher.lease_for_node, node, first.lease_id)

        async def chunks() -> AsyncIterator[jobs_pb2.FileChunk]:
            yield first
            async for chunk in iterator:
                yield chunk

        stored, _ = await self.guard(
            context,
            receive_blob(
                chunks(), self.blobs, self.executor, max_size=self.dispatcher.max_output_bytes
            ),
        )
        return jobs_pb2.UploadInputResponse(
            success=True,
            sha256=stored.sha256,
            size=stored.size,
            already_present=stored.already_present,
        )

    async def DownloadInput(
        self, request: worker_pb2.DownloadInputRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.FileChunk]:
        node = await self.node(context)
        try:
            check_sha256(request.sha256)
        except HiveMindError as exc:
            await abort_with(context, exc)
        await self.call(
            context, self.dispatcher.input_allowed, node, request.lease_id, request.sha256
        )
        try:
            async for chunk in send_blob(self.blobs, request.sha256, self.executor):
                yield chunk
        except HiveMindError as exc:
            await abort_with(context, exc)

    async def ReportResults(
        self, request: worker_pb2.ReportResultsRequest, context: Context
    ) -> worker_pb2.ReportResultsResponse:
        node = await self.node(context)
        return worker_pb2.ReportResultsResponse(
            outcomes=await self._report(node, request.results, context)
        )

    async def _report(
        self, node: Node, sent: Sequence[worker_pb2.TaskResult], context: Context
    ) -> list[worker_pb2.ReportOutcome]:
        """Check and record a batch of results (ReportResults, or the results a poll carries)."""
        if len(sent) > MAX_REPORT_BATCH:
            await abort_with(
                context, InvalidArgument(f"Report at most {MAX_REPORT_BATCH} results per call.")
            )
        results = []
        for r in sent:
            if any(o.size < 0 for o in r.outputs) or r.usage.peak_memory_bytes < 0:
                await abort_with(
                    context, InvalidArgument("Sizes and memory figures cannot be negative.")
                )
            results.append(
                ReportedResult(
                    lease_id=r.lease_id,
                    status=r.status,
                    exit_code=r.exit_code,
                    stdout_sha256=r.stdout_sha256,
                    outputs=tuple((o.path, o.sha256, o.size) for o in r.outputs),
                    usage=ReportedUsage(
                        r.usage.cpu_seconds,
                        r.usage.peak_memory_bytes,
                        r.usage.wall_seconds,
                        r.usage.gpu_seconds,
                    ),
                    reason=r.reason,
                )
            )
        outcomes = await self.guard(context, self.dispatcher.report(node, results))
        return [
            worker_pb2.ReportOutcome(lease_id=o.lease_id, outcome=o.outcome, reason=o.reason)
            for o in outcomes
        ]


def _lease_pb(g: LeaseGrant) -> worker_pb2.Lease:
    return worker_pb2.Lease(
        lease_id=g.lease_id,
        task_id=g.task_id,
        job_id=g.job_id,
        image=g.image,
        command=g.command,
        env=g.env,
        inputs=[worker_pb2.LeaseInput(path=i.path, sha256=i.sha256, size=i.size) for i in g.inputs],
        output_paths=g.output_paths,
        resources=jobs_pb2.Resources(**g.resources),
        timeout_s=g.timeout_s,
        network_access=g.network_access,
        deadline_ms=to_unix(g.deadline) * 1000,
        max_output_bytes=g.max_output_bytes,
    )
