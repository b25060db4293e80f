"""``hivemind worker``: run this computer as a headless HiveMind worker until SIGTERM/SIGINT.

:func:`add_worker_parser` adds the subcommand to the ``hivemind`` parser and :func:`run_worker` runs it.
Status lines go to stdout, logs to stderr.
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TextIO

from client_gui.engine.coordinator_client import DEFAULT_TARGET, CoordinatorClient
from client_gui.engine.identity import (
    CredentialStoreError,
    WorkerConfig,
    WorkerConfigError,
    open_credential_store,
)
from client_gui.engine.worker import (
    Error,
    NodeIdentity,
    Registered,
    SignIn,
    StateChanged,
    TaskFinished,
    TaskStarted,
    Worker,
    WorkerEvent,
    WorkerLimits,
)

PASSWORD_ENV = "HIVEMIND_PASSWORD"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def default_work_dir() -> Path:
    """Where downloaded inputs and task work dirs live while tasks run."""
    try:
        import platformdirs
    except ImportError:
        return Path.home() / ".cache" / "hivemind" / "work"
    return Path(platformdirs.user_cache_dir("hivemind", appauthor=False)) / "work"


def add_worker_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``worker`` to the ``hivemind`` subcommands; its handler is ``args.func = run_worker``."""
    p = subparsers.add_parser(
        "worker",
        help="run this computer as a HiveMind worker (tasks run in Docker only)",
        description="Register this computer with a coordinator (first run: sign in with --username), "
        "then lease tasks and run them in locked-down Docker containers until SIGTERM/SIGINT. "
        f"The password is read from {PASSWORD_ENV} or standard input, and only when this computer "
        "is not registered yet.",
    )
    p.add_argument(
        "--coordinator",
        default=DEFAULT_TARGET,
        metavar="HOST:PORT",
        help=f"the coordinator's gRPC address (default {DEFAULT_TARGET})",
    )
    p.add_argument("--tls", action="store_true", help="connect with TLS (system root certificates)")
    p.add_argument("--username", help="sign in as this user to register this computer")
    p.add_argument(
        "--max-cores", type=_positive_float, help="CPU cores tasks may use (default: all)"
    )
    p.add_argument(
        "--max-memory-gb", type=_positive_float, help="memory tasks may use, in GB (default: all)"
    )
    p.add_argument("--no-gpu", action="store_true", help="never run GPU tasks")
    p.add_argument(
        "--allow-network", action="store_true", help="accept tasks that need network access"
    )
    p.add_argument(
        "--slots", type=_positive_int, default=1, help="tasks to run at once (default 1)"
    )
    p.add_argument(
        "--credential-file",
        type=Path,
        metavar="PATH",
        help="without an OS keyring: keep the node credential in this file (readable only by you)",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help=f"the worker's settings file (default {WorkerConfig.default_path()})",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        metavar="PATH",
        help=f"folder for task inputs and work dirs (default {default_work_dir()})",
    )
    p.add_argument(
        "--drain",
        action="store_true",
        help="on SIGTERM/SIGINT let running tasks finish first (a second signal cancels them)",
    )
    p.add_argument("--log-format", choices=["json", "text"], default="text", help="log line format")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    p.set_defaults(func=run_worker)
    return p


class _StatusPrinter:
    """Turns worker events into one human line each on ``out``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._lock = threading.Lock()

    def __call__(self, event: WorkerEvent) -> None:
        line = self._line(event)
        if line is None:
            return
        with self._lock:
            print(f"{time.strftime('%H:%M:%S')} {line}", file=self.out, flush=True)

    @staticmethod
    def _line(event: WorkerEvent) -> str | None:
        if isinstance(event, StateChanged):
            return f"[{event.state}] {event.message}"
        if isinstance(event, Registered):
            return f"Registered as node {event.node_id}. {event.message}"
        if isinstance(event, TaskStarted):
            return f"Task {event.task_id} (job {event.job_id}) started: {event.image}"
        if isinstance(event, TaskFinished):
            outcome = event.outcome.replace("_", " ")
            reason = f" {event.reason}" if event.status != "succeeded" and event.reason else ""
            return f"Task {event.task_id} {event.status} ({outcome}).{reason}"
        if isinstance(event, Error):
            return f"Problem: {event.message}"
        return None  # task log lines go to the coordinator, not the terminal


def _read_password(username: str) -> str:
    from_env = os.environ.get(PASSWORD_ENV, "")
    if from_env:
        return from_env
    if sys.stdin is None:
        return ""
    if sys.stdin.isatty():
        return getpass.getpass(f"Password for {username}: ")
    return sys.stdin.readline().rstrip("\r\n")


def run_worker(args: argparse.Namespace) -> int:
    """Run the worker until SIGTERM/SIGINT (exit 0) or until it cannot go on (exit 1)."""
    from coordinator.logging_setup import configure_logging

    configure_logging(args.log_level, args.log_format)
    out = sys.stdout
    config_path: Path = args.config or WorkerConfig.default_path()
    try:
        config = WorkerConfig.load(config_path)
        credential_file: Path | None = args.credential_file or (
            Path(config.credential_file) if config.credential_file else None
        )
        store = open_credential_store(
            file_path=credential_file, allow_file_fallback=credential_file is not None
        )
    except (CredentialStoreError, WorkerConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    client = CoordinatorClient(args.coordinator, tls=args.tls)
    identity = NodeIdentity(
        store, args.coordinator, config_path=config_path, credential_file=credential_file
    )
    try:
        registered = identity.load() is not None
    except (CredentialStoreError, WorkerConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        client.close()
        return 1
    password = ""
    if args.username and not registered:
        password = _read_password(args.username)
        if not password:
            print(
                f"error: No password for {args.username}: pipe it on standard input or set "
                f"{PASSWORD_ENV}.",
                file=sys.stderr,
            )
            client.close()
            return 1
    sign_in = SignIn(client, store, username=args.username or "", password=password)
    if not registered and not sign_in.possible:
        print(
            f"error: This computer is not registered with the coordinator at {args.coordinator} "
            "yet. Sign in once to register it: hivemind worker --username NAME",
            file=sys.stderr,
        )
        client.close()
        return 1
    limits = WorkerLimits(
        max_cores=args.max_cores,
        max_memory_gb=args.max_memory_gb,
        use_gpu=not args.no_gpu,
        allow_network=args.allow_network,
        slots=args.slots,
    )
    worker = Worker(
        client,
        identity,
        work_dir=args.work_dir or default_work_dir(),
        limits=limits,
        on_event=_StatusPrinter(out),
        sign_in=sign_in,
    )
    try:
        return _run_until_signalled(worker, drain=args.drain, out=out)
    finally:
        client.close()


def _run_until_signalled(worker: Worker, *, drain: bool, out: TextIO) -> int:
    signals = 0
    asked = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        asked.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.start()
        # Short waits keep the main thread between bytecodes, where Python runs signal handlers.
        while not asked.is_set() and not worker.wait(0.5):
            pass
        if asked.is_set():
            cancel = not drain
            print(
                "Stopping: cancelling running tasks."
                if cancel
                else "Stopping after the running tasks finish (signal again to cancel them).",
                file=out,
                flush=True,
            )
            worker.stop(cancel_running=cancel, timeout=0)
            while not worker.wait(0.5):
                if not cancel and signals > 1:
                    cancel = True
                    print("Stopping: cancelling running tasks.", file=out, flush=True)
                    worker.stop(cancel_running=True, timeout=0)
        worker.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if worker.error_message:
        print(f"error: {worker.error_message}", file=sys.stderr)
        return 1
    return 0
