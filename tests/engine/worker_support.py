"""A small in-test coordinator for the worker's tests: a real grpc.aio server on 127.0.0.1:0 serving
UserService.Login, NodeManagerService.RegisterWorkerNode and WorkerService, that records what the worker
sends and hands out the leases a test queues. Not the real scheduler: that one is tested end to end
against the real coordinator."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from shared_proto.v1 import (
    jobs_pb2,
    nodes_pb2,
    nodes_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)

NODE_CREDENTIAL = "hmn_testcredential"
USER = "alice"
PASSWORD = "correct horse battery"
USER_TOKEN = "jwt-for-alice"
NODE_ID = "node-test-1"
DOWNLOAD_CHUNK = 100 * 1024

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class Upload:
    lease_id: str
    path: str
    data: bytes
    expected_sha256: str
    total_size: int
    chunks: list[jobs_pb2.FileChunk]


@dataclass
class Recorded:
    """Everything the worker sent, guarded by ``lock`` (the server runs in another thread)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    polls: list[worker_pb2.PollTasksRequest] = field(default_factory=list)
    heartbeats: list[worker_pb2.HeartbeatRequest] = field(default_factory=list)
    logs: list[worker_pb2.LogLine] = field(default_factory=list)
    uploads: dict[tuple[str, str], Upload] = field(default_factory=dict)
    results: list[worker_pb2.TaskResult] = field(default_factory=list)
    """Every result received, whether in ReportResults or with a poll."""
    report_calls: int = 0
    """ReportResults calls (results that went with a poll do not count)."""
    arrivals: list[tuple[str, str, str]] = field(default_factory=list)
    """In the order they came: ("log", lease id, text) and ("result", lease id, "")."""
    registrations: list[nodes_pb2.RegisterWorkerNodeRequest] = field(default_factory=list)


def _bearer(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            return text.removeprefix("Bearer ")
    return ""


class FakeCoordinator(
    users_pb2_grpc.UserServiceServicer,
    nodes_pb2_grpc.NodeManagerServiceServicer,
    worker_pb2_grpc.WorkerServiceServicer,
):
    def __init__(self, heartbeat_interval_s: int = 1) -> None:
        self.seen = Recorded()
        self.heartbeat_interval_s = heartbeat_interval_s
        self.blobs: dict[str, bytes] = {}
        self.corrupted: set[str] = set()
        self.cancelled: set[str] = set()
        self.refused_in_polls: set[str] = set()
        """Leases whose result a poll refuses (PERMISSION_DENIED) while ReportResults accepts it."""
        self.polls_ignore_results = False
        """Act as a coordinator from before results in polls: drop them, answer no outcomes."""
        self._pending: list[worker_pb2.Lease] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- test controls --

    def add_blob(self, data: bytes, *, corrupt: bool = False) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.blobs[sha] = data
        if corrupt:
            self.corrupted.add(sha)
        return sha

    def queue_lease(self, lease: worker_pb2.Lease) -> None:
        with self.seen.lock:
            self._pending.append(lease)
        assert self._loop is not None and self._ready is not None
        self._loop.call_soon_threadsafe(self._ready.set)

    def cancel_lease(self, lease_id: str) -> None:
        with self.seen.lock:
            self.cancelled.add(lease_id)

    def snapshot(self, read: Callable[[Recorded], T]) -> T:
        with self.seen.lock:
            return read(self.seen)

    def wait_for(self, what: str, check: Callable[[Recorded], T], timeout_s: float = 60.0) -> T:
        """Poll ``check`` until it returns something truthy; fails the test with ``what`` if it never does."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.snapshot(check)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    # -- serving --

    @classmethod
    @contextmanager
    def serve(cls, port: int = 0, **kwargs: Any) -> Iterator[FakeCoordinator]:
        """Serve on ``port`` (0: a free one) in a background thread until the block ends."""
        fake = cls(**kwargs)
        started = threading.Event()
        stop: list[Callable[[], object]] = []
        failure: list[BaseException] = []

        async def main() -> None:
            server = grpc.aio.server()
            users_pb2_grpc.add_UserServiceServicer_to_server(fake, server)
            nodes_pb2_grpc.add_NodeManagerServiceServicer_to_server(fake, server)
            worker_pb2_grpc.add_WorkerServiceServicer_to_server(fake, server)
            fake.port = server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            loop = fake._loop = asyncio.get_running_loop()
            fake._ready = asyncio.Event()
            done = asyncio.Event()
            stop.append(lambda: loop.call_soon_threadsafe(done.set))
            started.set()
            await done.wait()
            await server.stop(grace=None)

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:
                failure.append(exc)
                started.set()

        thread = threading.Thread(target=run, name="fake-coordinator", daemon=True)
        thread.start()
        started.wait(30)
        if failure:
            raise failure[0]
        try:
            yield fake
        finally:
            stop[0]()
            thread.join(30)

    async def _node(self, context: Context) -> None:
        if _bearer(context) != NODE_CREDENTIAL:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "Unknown node credential.")

    # UserService / NodeManagerService

    async def Login(
        self, request: users_pb2.LoginRequest, context: Context
    ) -> users_pb2.LoginResponse:
        if (request.username, request.password) != (USER, PASSWORD):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "Wrong username or password.")
        return users_pb2.LoginResponse(
            success=True, token=USER_TOKEN, refresh_token="refresh-1", expires_in=900, role="user"
        )

    async def RegisterWorkerNode(
        self, request: nodes_pb2.RegisterWorkerNodeRequest, context: Context
    ) -> nodes_pb2.RegisterWorkerNodeResponse:
        if _bearer(context) != USER_TOKEN:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "Sign in first.")
        with self.seen.lock:
            self.seen.registrations.append(request)
        return nodes_pb2.RegisterWorkerNodeResponse(
            success=True,
            message=f"Node '{request.hostname}' is registered to {USER}.",
            node_id=NODE_ID,
            node_credential=NODE_CREDENTIAL,
        )

    # WorkerService

    async def PollTasks(
        self, request: worker_pb2.PollTasksRequest, context: Context
    ) -> worker_pb2.PollTasksResponse:
        await self._node(context)
        assert self._loop is not None and self._ready is not None
        if any(r.lease_id in self.refused_in_polls for r in request.results):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "Not this node's lease.")
        carried = [] if self.polls_ignore_results else list(request.results)
        with self.seen.lock:
            self.seen.polls.append(request)
            self.seen.results.extend(carried)
            self.seen.arrivals += [("result", r.lease_id, "") for r in carried]
        outcomes = [
            worker_pb2.ReportOutcome(lease_id=r.lease_id, outcome="accepted") for r in carried
        ]
        deadline = self._loop.time() + request.wait_s
        while True:
            # Cleared before looking, so a lease queued meanwhile still wakes the wait below.
            self._ready.clear()
            with self.seen.lock:
                leases = self._pending[: max(0, request.max_tasks)]
                del self._pending[: len(leases)]
            remaining = deadline - self._loop.time()
            if leases or remaining <= 0:
                return worker_pb2.PollTasksResponse(
                    leases=leases,
                    heartbeat_interval_s=self.heartbeat_interval_s,
                    outcomes=outcomes,
                )
            with suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout=remaining)

    async def Heartbeat(
        self, request: worker_pb2.HeartbeatRequest, context: Context
    ) -> worker_pb2.HeartbeatResponse:
        await self._node(context)
        with self.seen.lock:
            self.seen.heartbeats.append(request)
            stop = [i for i in request.lease_ids if i in self.cancelled]
        return worker_pb2.HeartbeatResponse(cancelled_lease_ids=stop)

    async def AppendLogs(
        self, request: worker_pb2.AppendLogsRequest, context: Context
    ) -> worker_pb2.AppendLogsResponse:
        await self._node(context)
        with self.seen.lock:
            self.seen.logs.extend(request.lines)
            self.seen.arrivals += [("log", x.lease_id, x.text.rstrip("\n")) for x in request.lines]
        return worker_pb2.AppendLogsResponse(accepted=len(request.lines))

    async def UploadOutput(
        self, request_iterator: AsyncIterator[jobs_pb2.FileChunk], context: Context
    ) -> jobs_pb2.UploadInputResponse:
        await self._node(context)
        chunks = [chunk async for chunk in request_iterator]
        data = b"".join(chunk.data for chunk in chunks)
        first = chunks[0]
        upload = Upload(
            first.lease_id, first.path, data, first.expected_sha256, first.total_size, chunks
        )
        with self.seen.lock:
            self.seen.uploads[(first.lease_id, first.path)] = upload
        return jobs_pb2.UploadInputResponse(
            success=True, sha256=hashlib.sha256(data).hexdigest(), size=len(data)
        )

    async def DownloadInput(
        self, request: worker_pb2.DownloadInputRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.FileChunk]:
        await self._node(context)
        data = self.blobs.get(request.sha256)
        if data is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "No such input.")
            return
        if request.sha256 in self.corrupted:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        for start in range(0, len(data), DOWNLOAD_CHUNK):
            yield jobs_pb2.FileChunk(data=data[start : start + DOWNLOAD_CHUNK])

    async def ReportResults(
        self, request: worker_pb2.ReportResultsRequest, context: Context
    ) -> worker_pb2.ReportResultsResponse:
        await self._node(context)
        with self.seen.lock:
            self.seen.results.extend(request.results)
            self.seen.report_calls += 1
            self.seen.arrivals += [("result", r.lease_id, "") for r in request.results]
        return worker_pb2.ReportResultsResponse(
            outcomes=[
                worker_pb2.ReportOutcome(lease_id=r.lease_id, outcome="accepted")
                for r in request.results
            ]
        )


def busybox_lease(
    lease_id: str,
    script: str,
    *,
    cpu_cores: float = 1.0,
    memory_gb: float = 0.25,
    timeout_s: int = 120,
    inputs: list[worker_pb2.LeaseInput] | None = None,
    output_paths: list[str] | None = None,
    network_access: bool = False,
) -> worker_pb2.Lease:
    """A lease running ``sh -c script`` in the local busybox image."""
    return worker_pb2.Lease(
        lease_id=lease_id,
        task_id=f"task-{lease_id}",
        job_id="job-1",
        image="hivemind/busybox:latest",
        command=["sh", "-c", script],
        inputs=inputs or [],
        output_paths=output_paths or [],
        resources=jobs_pb2.Resources(cpu_cores=cpu_cores, memory_gb=memory_gb),
        timeout_s=timeout_s,
        network_access=network_access,
        max_output_bytes=16 * 1024 * 1024,
    )
