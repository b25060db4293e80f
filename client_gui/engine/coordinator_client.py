"""The worker's typed client for the coordinator: sign-in, node registration and the WorkerService calls.

Only this module touches the ``_pb2`` types on the worker side; the engine works with the dataclasses
below. Every gRPC failure becomes a :class:`CoordinatorError` whose ``message`` is a sentence a volunteer
can act on; the technical detail goes to the log. No Qt here.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, ClassVar, Self

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

if TYPE_CHECKING:
    from client_gui.engine.benchmark import BenchmarkReport
    from client_gui.engine.usage import HostUsage

logger = logging.getLogger(__name__)

DEFAULT_TARGET = "127.0.0.1:50051"
CHUNK_SIZE = 256 * 1024
"""Bytes per ``FileChunk`` of an upload (well under the coordinator's 8 MiB message limit)."""
CALL_TIMEOUT_S = 30.0
TRANSFER_TIMEOUT_S = 3600.0
"""Deadline of one whole upload or download; keepalive pings notice a dead connection long before."""
MAX_POLL_WAIT_S = 30.0
POLL_GRACE_S = 15.0
"""A long poll's deadline is its ``wait_s`` plus this, so a slow answer is not mistaken for a dead link."""

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    # Pings notice a silently dropped connection (NAT timeout, sleeping laptop) during a long poll or a
    # stream. 60 s stays clear of the server's default ping policing: the worker's heartbeats make the
    # server send data every few seconds, which resets its ping strikes.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.max_pings_without_data", 0),
    # The channel reconnects by itself; these bound how long it waits between attempts.
    ("grpc.initial_reconnect_backoff_ms", 1_000),
    ("grpc.min_reconnect_backoff_ms", 1_000),
    ("grpc.max_reconnect_backoff_ms", 30_000),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]


def open_channel(target: str, *, tls: bool = False) -> grpc.Channel:
    """A channel to the coordinator with the keepalive and reconnect options above."""
    if tls:
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


# --- errors ---------------------------------------------------------------------------------------


class CoordinatorError(Exception):
    """A coordinator call failed. ``message`` is a sentence for the person; ``code`` the gRPC status.

    ``transient`` says whether the same call may succeed later: true for this base class (a fault inside
    the coordinator, INTERNAL or UNKNOWN, worth a few more tries), false for refusals.
    """

    transient: ClassVar[bool] = True

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class CoordinatorUnreachable(CoordinatorError):
    """No answer (network down, wrong address, coordinator stopped or too slow): retry later."""

    def retry_message(self, delay_s: float) -> str:
        """The message with when the next attempt happens, e.g. ``...; retrying in 8 s.``"""
        return f"{self.message.rstrip('.')}; retrying in {max(1, round(delay_s))} s."


class NotAuthenticated(CoordinatorError):
    """The user's token or the node credential was refused (wrong, expired or revoked)."""

    transient = False


class PermissionRefused(CoordinatorError):
    """A valid credential that may not do this."""

    transient = False


class RateLimited(CoordinatorError):
    """Too many attempts; wait before trying again."""


class RequestRefused(CoordinatorError):
    """The coordinator refused the request itself (e.g. a lease it no longer holds for this node)."""

    transient = False


class TransferCorrupted(CoordinatorError):
    """A file arrived (or left) with a sha256 other than the one expected; nothing was kept. Transient:
    sending it again may work."""


def _translate(exc: grpc.RpcError, target: str, action: str) -> CoordinatorError:
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    detail = (exc.details() if isinstance(exc, grpc.Call) else "") or ""
    logger.info("Coordinator call %s failed: %s %s", action, code, detail)
    if code is grpc.StatusCode.UNAVAILABLE:
        return CoordinatorUnreachable(
            f"The coordinator at {target} cannot be reached. Check the address and your network.",
            code=code,
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return CoordinatorUnreachable(
            f"The coordinator at {target} did not answer in time. Check your network.", code=code
        )
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return NotAuthenticated(
            detail or "The coordinator did not accept the credentials.", code=code
        )
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return PermissionRefused(detail or "The coordinator does not allow this.", code=code)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RateLimited(detail or "Too many attempts; wait a minute and try again.", code=code)
    if code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    ):
        return RequestRefused(detail or f"The coordinator refused to {action}.", code=code)
    return CoordinatorError(
        f"The coordinator failed to {action}"
        + (f": {detail}" if detail else ". See the coordinator's log."),
        code=code,
    )


class Backoff:
    """Growing, jittered delays between retries: 1 s, 2 s, 4 s ... up to ``maximum``; ``reset()`` on success."""

    def __init__(
        self,
        initial_s: float = 1.0,
        maximum_s: float = 60.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng
        self._attempt = 0

    def next_delay(self) -> float:
        base = min(self.maximum_s, self.initial_s * self.factor**self._attempt)
        self._attempt += 1
        # Jitter spreads out many workers that lost the coordinator at the same moment.
        return base * (1 - self.jitter + 2 * self.jitter * self._rng())

    def reset(self) -> None:
        self._attempt = 0


# --- values the engine works with ----------------------------------------------------------------


@dataclass(frozen=True)
class UserSession:
    """A signed-in user: the access token registers nodes; the refresh token renews it (single use)."""

    token: str
    refresh_token: str
    expires_in_s: int
    role: str


def user_session_from_pb(response: users_pb2.LoginResponse) -> UserSession:
    """The session in a Login/RefreshToken answer; :class:`NotAuthenticated` when it refused."""
    if not response.success or not response.token:
        raise NotAuthenticated(response.message or "The coordinator refused the sign-in.")
    return UserSession(
        token=response.token,
        refresh_token=response.refresh_token,
        expires_in_s=int(response.expires_in),
        role=response.role,
    )


@dataclass(frozen=True)
class NodeRegistration:
    node_id: str
    credential: str
    message: str


@dataclass(frozen=True)
class LeaseInput:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class LeaseResources:
    cpu_cores: float = 0.0
    memory_gb: float = 0.0
    gpu_count: int = 0
    gpu_memory_gb: float = 0.0
    disk_gb: float = 0.0
    gpu_name: str = ""


@dataclass(frozen=True)
class Lease:
    """One task this node may run until ``deadline_ms`` (heartbeats move the deadline forward)."""

    lease_id: str
    task_id: str
    job_id: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    inputs: tuple[LeaseInput, ...]
    output_paths: tuple[str, ...]
    resources: LeaseResources
    timeout_s: int
    network_access: bool
    deadline_ms: int
    max_output_bytes: int


@dataclass(frozen=True)
class PollResult:
    leases: tuple[Lease, ...]
    heartbeat_interval_s: int
    """0 when the coordinator suggested none (or the poll was interrupted)."""
    outcomes: tuple[ReportOutcome, ...] = ()
    """The answers to the results the poll carried."""
    answered: bool = True
    """False when the poll was interrupted: whether the results it carried were recorded is unknown."""


@dataclass(frozen=True)
class HeartbeatReply:
    cancelled_lease_ids: frozenset[str]
    unknown_lease_ids: frozenset[str]
    deadline_ms: int


@dataclass(frozen=True)
class LogLine:
    lease_id: str
    stream: str
    text: str


@dataclass(frozen=True)
class UploadedFile:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class TaskUsage:
    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0
    wall_seconds: float = 0.0
    gpu_seconds: float = 0.0


@dataclass(frozen=True)
class TaskReport:
    """The result of one lease, as ReportResults carries it."""

    lease_id: str
    status: str
    exit_code: int = 0
    stdout_sha256: str = ""
    outputs: tuple[UploadedFile, ...] = ()
    usage: TaskUsage = field(default_factory=TaskUsage)
    reason: str = ""


@dataclass(frozen=True)
class ReportOutcome:
    lease_id: str
    outcome: str
    """accepted, duplicate or rejected."""
    reason: str


def _lease_from_pb(lease: worker_pb2.Lease) -> Lease:
    r = lease.resources
    return Lease(
        lease_id=lease.lease_id,
        task_id=lease.task_id,
        job_id=lease.job_id,
        image=lease.image,
        command=tuple(lease.command),
        env=dict(lease.env),
        inputs=tuple(LeaseInput(i.path, i.sha256, i.size) for i in lease.inputs),
        output_paths=tuple(lease.output_paths),
        resources=LeaseResources(
            cpu_cores=r.cpu_cores,
            memory_gb=r.memory_gb,
            gpu_count=r.gpu_count,
            gpu_memory_gb=r.gpu_memory_gb,
            disk_gb=r.disk_gb,
            gpu_name=r.gpu_name,
        ),
        timeout_s=lease.timeout_s,
        network_access=lease.network_access,
        deadline_ms=lease.deadline_ms,
        max_output_bytes=lease.max_output_bytes,
    )


def _report_to_pb(report: TaskReport) -> worker_pb2.TaskResult:
    u = report.usage
    return worker_pb2.TaskResult(
        lease_id=report.lease_id,
        status=report.status,
        exit_code=report.exit_code,
        stdout_sha256=report.stdout_sha256,
        outputs=[
            jobs_pb2.OutputFile(path=o.path, sha256=o.sha256, size=o.size) for o in report.outputs
        ],
        usage=worker_pb2.Usage(
            cpu_seconds=u.cpu_seconds,
            peak_memory_bytes=u.peak_memory_bytes,
            wall_seconds=u.wall_seconds,
            gpu_seconds=u.gpu_seconds,
        ),
        reason=report.reason,
    )


# --- the client ---------------------------------------------------------------------------------


class _Channel:
    """Owns one gRPC channel (``self._channel``); a context manager that closes it."""

    _channel: grpc.Channel

    def close(self) -> None:
        """Close the channel; calls still in flight end with CANCELLED."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class UserChannel(_Channel):
    """One channel for calls made as a signed-in person: they send ``authorization: Bearer <token>``.
    The base of the submitter's and the account clients; a context manager that closes the channel."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        token: str | None = None,
        *,
        tls: bool = False,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self.target = target
        self.token = token or ""
        self.call_timeout_s = call_timeout_s
        self._channel = open_channel(target, tls=tls)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        if not self.token:
            raise NotAuthenticated("Sign in first: no access token was given.")
        return (("authorization", f"Bearer {self.token}"),)


class CoordinatorClient(_Channel):
    """One channel to the coordinator. Thread-safe: the worker's threads share one instance.

    Node calls send ``authorization: Bearer <node credential>``; set it with :meth:`set_node_credential`
    once the node is registered. The channel reconnects by itself after a network loss; calls made while
    it is down raise :class:`CoordinatorUnreachable`, and retrying is the caller's choice.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        node_credential: str = "",
        tls: bool = False,
        call_timeout_s: float = CALL_TIMEOUT_S,
        transfer_timeout_s: float = TRANSFER_TIMEOUT_S,
    ) -> None:
        self.target = target
        self.call_timeout_s = call_timeout_s
        self.transfer_timeout_s = transfer_timeout_s
        self._channel = open_channel(target, tls=tls)
        self._users = users_pb2_grpc.UserServiceStub(self._channel)
        self._nodes = nodes_pb2_grpc.NodeManagerServiceStub(self._channel)
        self._worker = worker_pb2_grpc.WorkerServiceStub(self._channel)
        self._lock = threading.Lock()
        self._credential = node_credential
        self._polls: set[grpc.Future[worker_pb2.PollTasksResponse]] = set()

    # -- lifecycle (close, and use as a context manager: _Channel) --

    def set_node_credential(self, credential: str) -> None:
        with self._lock:
            self._credential = credential

    @property
    def has_node_credential(self) -> bool:
        with self._lock:
            return bool(self._credential)

    def _node_metadata(self) -> tuple[tuple[str, str], ...]:
        with self._lock:
            credential = self._credential
        if not credential:
            raise NotAuthenticated("This computer is not registered with the coordinator yet.")
        return (("authorization", f"Bearer {credential}"),)

    # -- user --

    def login(self, username: str, password: str) -> UserSession:
        """Sign in; raises :class:`NotAuthenticated` with the coordinator's sentence when refused."""
        try:
            response = self._users.Login(
                users_pb2.LoginRequest(username=username, password=password),
                timeout=self.call_timeout_s,
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "sign in") from None
        return self._session(response)

    def refresh(self, refresh_token: str) -> UserSession:
        """Exchange a refresh token (single use) for a new access + refresh token pair."""
        try:
            response = self._users.RefreshToken(
                users_pb2.RefreshTokenRequest(refresh_token=refresh_token),
                timeout=self.call_timeout_s,
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "renew the session") from None
        return self._session(response)

    @staticmethod
    def _session(response: users_pb2.LoginResponse) -> UserSession:
        return user_session_from_pb(response)

    def register_node(
        self, user_token: str, report: BenchmarkReport, *, node_id: str = ""
    ) -> NodeRegistration:
        """Register this computer to the signed-in user (or re-register ``node_id``, keeping its id).

        Returns the node id and its new credential; the credential is shown only this once.
        """
        request = nodes_pb2.RegisterWorkerNodeRequest(
            node_id=node_id,
            hostname=report.hostname,
            cpu_cores=report.cpu_cores,
            memory_gb=report.memory_gb,
            cpu_score=report.cpu_score,
            gpu_score=report.gpu_score,
            gpu_memory_gb=report.gpu_memory_gb,
            gpu_name=report.gpu_name,
            docker_status=report.docker_status,
        )
        try:
            response = self._nodes.RegisterWorkerNode(
                request,
                timeout=self.call_timeout_s,
                metadata=(("authorization", f"Bearer {user_token}"),),
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "register this computer") from None
        if not response.success or not response.node_credential:
            raise RequestRefused(response.message or "The coordinator refused the registration.")
        return NodeRegistration(response.node_id, response.node_credential, response.message)

    # -- worker --

    def poll(
        self,
        *,
        max_tasks: int,
        free_cpu_cores: float,
        free_memory_gb: float,
        free_gpus: int = 0,
        wait_s: float = 20.0,
        docker_available: bool = True,
        allow_network: bool = False,
        should_abort: Callable[[], bool] = lambda: False,
        results: Sequence[TaskReport] = (),
    ) -> PollResult:
        """Long-poll for up to ``max_tasks`` leases that fit the free resources, first reporting
        ``results`` (finished leases) as :meth:`report_results` would.

        Returns early, with no leases and ``answered`` false, after :meth:`interrupt_poll` or when
        ``should_abort()`` is true once the call is in flight (the worker pauses or stops).
        """
        wait_s = max(0.0, min(wait_s, MAX_POLL_WAIT_S))
        request = worker_pb2.PollTasksRequest(
            results=[_report_to_pb(r) for r in results],
            max_tasks=max_tasks,
            free_cpu_cores=free_cpu_cores,
            free_memory_gb=free_memory_gb,
            free_gpus=free_gpus,
            wait_s=wait_s,
            docker_available=docker_available,
            allow_network=allow_network,
        )
        future: grpc.Future[worker_pb2.PollTasksResponse] = self._worker.PollTasks.future(
            request, timeout=wait_s + POLL_GRACE_S, metadata=self._node_metadata()
        )
        with self._lock:
            self._polls.add(future)
        # Checked after registering, so an interrupt that raced with the start is never lost.
        if should_abort():
            future.cancel()
        try:
            response = future.result()
        except grpc.FutureCancelledError:
            return PollResult((), 0, answered=False)
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() is grpc.StatusCode.CANCELLED:
                return PollResult((), 0, answered=False)
            raise _translate(exc, self.target, "hand out work") from None
        finally:
            with self._lock:
                self._polls.discard(future)
        return PollResult(
            tuple(_lease_from_pb(lease) for lease in response.leases),
            int(response.heartbeat_interval_s),
            tuple(ReportOutcome(o.lease_id, o.outcome, o.reason) for o in response.outcomes),
        )

    def interrupt_poll(self) -> None:
        """End any long poll in flight now (it returns no leases)."""
        with self._lock:
            polls = list(self._polls)
        for future in polls:
            future.cancel()

    def heartbeat(self, lease_ids: Iterable[str], usage: HostUsage, status: str) -> HeartbeatReply:
        """Renew these leases and the node's liveness; learn which leases to stop."""
        request = worker_pb2.HeartbeatRequest(
            lease_ids=list(lease_ids),
            cpu_usage_percent=usage.cpu_percent,
            memory_usage_percent=usage.memory_percent,
            gpu_usage_percent=usage.gpu_percent or 0.0,
            status=status,
        )
        try:
            response = self._worker.Heartbeat(
                request, timeout=self.call_timeout_s, metadata=self._node_metadata()
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "renew the leases") from None
        return HeartbeatReply(
            frozenset(response.cancelled_lease_ids),
            frozenset(response.unknown_lease_ids),
            int(response.deadline_ms),
        )

    def append_logs(self, lines: Sequence[LogLine]) -> int:
        """Send log lines of running leases; returns how many the coordinator accepted."""
        request = worker_pb2.AppendLogsRequest(
            lines=[
                worker_pb2.LogLine(lease_id=x.lease_id, stream=x.stream, text=x.text) for x in lines
            ]
        )
        try:
            response = self._worker.AppendLogs(
                request, timeout=self.call_timeout_s, metadata=self._node_metadata()
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "store the task's log") from None
        return int(response.accepted)

    def upload_output(
        self, lease_id: str, path: str, source: Path | bytes, *, expected_sha256: str = ""
    ) -> UploadedFile:
        """Stream one output file of a lease (``path`` "@stdout" for its stdout) in 256 KiB chunks.

        The first chunk carries ``lease_id``, ``path`` and the size (and ``expected_sha256`` when known).
        Returns what was sent; raises :class:`TransferCorrupted` if the coordinator stored other bytes or
        the local file changed against ``expected_sha256`` while being sent.
        """
        digest = hashlib.sha256()
        if isinstance(source, bytes):
            stream: BinaryIO = io.BytesIO(source)
            size = len(source)
            expected_sha256 = expected_sha256 or hashlib.sha256(source).hexdigest()
        else:
            stream = source.open("rb")
            size = os.fstat(stream.fileno()).st_size
        try:
            chunks = _file_chunks(stream, digest, lease_id, path, size, expected_sha256)
            response = self._worker.UploadOutput(
                chunks, timeout=self.transfer_timeout_s, metadata=self._node_metadata()
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, f"store the output {path}") from None
        finally:
            stream.close()
        sent = digest.hexdigest()
        if expected_sha256 and sent != expected_sha256:
            raise TransferCorrupted(
                f"The output {path} changed while it was being uploaded; it was not kept."
            )
        if response.sha256 and response.sha256 != sent:
            raise TransferCorrupted(
                f"The output {path} arrived at the coordinator corrupted (sha256 mismatch)."
            )
        return UploadedFile(path=path, sha256=sent, size=size)

    def download_input(self, lease_id: str, sha256: str, dest: Path) -> int:
        """Download an input blob of a lease into ``dest`` and return its size.

        The bytes go to a temporary file beside ``dest`` and are renamed into place only when their
        sha256 is ``sha256``; otherwise nothing is kept and :class:`TransferCorrupted` is raised.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.part")
        digest = hashlib.sha256()
        size = 0
        request = worker_pb2.DownloadInputRequest(lease_id=lease_id, sha256=sha256)
        try:
            with partial.open("wb") as out:
                for chunk in self._worker.DownloadInput(
                    request, timeout=self.transfer_timeout_s, metadata=self._node_metadata()
                ):
                    digest.update(chunk.data)
                    out.write(chunk.data)
                    size += len(chunk.data)
        except grpc.RpcError as exc:
            partial.unlink(missing_ok=True)
            raise _translate(exc, self.target, "send an input file") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if digest.hexdigest() != sha256.lower():
            partial.unlink(missing_ok=True)
            logger.warning(
                "Input %s of lease %s arrived as %s (%d bytes); discarded",
                sha256,
                lease_id,
                digest.hexdigest(),
                size,
            )
            raise TransferCorrupted(
                f"The input file {sha256[:12]} arrived corrupted (its sha256 does not match); "
                "it was discarded."
            )
        partial.replace(dest)
        return size

    def report_results(self, reports: Sequence[TaskReport]) -> list[ReportOutcome]:
        """Report finished leases; the coordinator answers each (a repeat is answered, never paid twice)."""
        request = worker_pb2.ReportResultsRequest(results=[_report_to_pb(r) for r in reports])
        try:
            response = self._worker.ReportResults(
                request, timeout=self.call_timeout_s, metadata=self._node_metadata()
            )
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, "accept the results") from None
        return [ReportOutcome(o.lease_id, o.outcome, o.reason) for o in response.outcomes]


def _file_chunks(
    stream: BinaryIO,
    digest: hashlib._Hash,
    lease_id: str,
    path: str,
    size: int,
    expected_sha256: str,
) -> Iterator[jobs_pb2.FileChunk]:
    """The chunks of one upload; the first (sent even for an empty file) names the lease and path."""
    first = True
    while True:
        data = stream.read(CHUNK_SIZE)
        if not data and not first:
            return
        digest.update(data)
        if first:
            yield jobs_pb2.FileChunk(
                data=data,
                lease_id=lease_id,
                path=path,
                total_size=size,
                expected_sha256=expected_sha256,
            )
            first = False
        else:
            yield jobs_pb2.FileChunk(data=data)
        if not data:
            return
