"""Workers on this computer for demos and tests: a real :class:`Worker` (real Docker, real gRPC), signed
in as ``username`` and registered under ``home`` with an explicit owner-only credential file, since a
throwaway worker should not touch the OS keyring."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from client_gui.engine.benchmark import run_benchmark
from client_gui.engine.coordinator_client import CoordinatorClient
from client_gui.engine.identity import FileCredentialStore
from client_gui.engine.worker import (
    NodeIdentity,
    SignIn,
    TaskExecutor,
    Worker,
    WorkerEvent,
    WorkerLimits,
)


def local_worker(
    target: str,
    username: str,
    password: str,
    home: Path,
    *,
    limits: WorkerLimits | None = None,
    on_event: Callable[[WorkerEvent], None] | None = None,
    executor_factory: Callable[[bool], TaskExecutor] | None = None,
    heartbeat_interval_s: float = 1.0,
    poll_wait_s: float = 2.0,
    quick_benchmark: bool = True,
) -> Worker:
    """A started-ready (not yet started) worker whose state lives under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    client = CoordinatorClient(target)
    store = FileCredentialStore(home / "credentials.json")
    identity = NodeIdentity(
        store, target, config_path=home / "worker.json", credential_file=home / "credentials.json"
    )
    return Worker(
        client,
        identity,
        work_dir=home / "work",
        limits=limits or WorkerLimits(use_gpu=False, slots=2),
        on_event=on_event,
        sign_in=SignIn(client, store, username=username, password=password),
        executor_factory=executor_factory,
        benchmark=lambda: run_benchmark(quick=quick_benchmark),
        gpu_count=lambda: 0,
        poll_wait_s=poll_wait_s,
        heartbeat_interval_s=heartbeat_interval_s,
    )
