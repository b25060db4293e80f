"""Desktop app figures: time from launch to the window being ready, memory (RSS) when idle, and CPU use
while idle, for the real ``hivemind gui`` in a subprocess (Qt offscreen) against a throwaway coordinator
with a signed-in person whose computer is already registered. A second launch then measures the longest
stall of the GUI thread while the app idles and its worker runs a chatty Docker task.

    .venv/bin/python bench/gui_bench.py [--idle-s 10] [--window-s 10] [--json] [--no-stall]

Targets (issue 4): ready <= 2 s, idle RSS <= 200 MB, idle CPU < 1 % of one core; no GUI-thread call over
50 ms. Bounded: about ``idle_s + window_s + 45`` seconds in all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from client_gui.engine.benchmark import run_benchmark  # noqa: E402
from client_gui.engine.coordinator_client import CoordinatorClient  # noqa: E402
from client_gui.engine.identity import FileCredentialStore  # noqa: E402
from client_gui.engine.jobs_client import JobsClient  # noqa: E402
from client_gui.engine.preferences import Preferences  # noqa: E402
from client_gui.engine.worker import NodeIdentity  # noqa: E402
from client_gui.ui.app import KEYRING_NOTICE_FILE, READY_FILE_ENV, STALL_FILE_ENV  # noqa: E402
from client_gui.ui.session import AppSession  # noqa: E402
from coordinator.server import BackgroundCoordinator  # noqa: E402
from coordinator.settings import Settings  # noqa: E402
from shared_proto.v1 import users_pb2, users_pb2_grpc  # noqa: E402

READY_TIMEOUT_S = 60.0
PASSWORD = "correct horse battery"
TARGETS = {"ready_s": 2.0, "idle_rss_mb": 200.0, "idle_cpu_percent": 1.0}
STALL_TASK_WAIT_S = 30.0
CHATTY_TASK = "i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo log line $i; done; sleep 4"


def prepare(config_dir: Path, target: str) -> None:
    """A person who signed in here before and a computer already registered, as after a first run."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        users_pb2_grpc.UserServiceStub(channel).Register(
            users_pb2.RegisterRequest(
                username="bench", email="bench@example.org", password=PASSWORD
            )
        )
    store = FileCredentialStore(config_dir / "credentials.json")
    session = AppSession(target, store)
    try:
        session.sign_in("bench", PASSWORD)
        token = session.access_token()
    finally:
        session.close()
    with CoordinatorClient(target) as client:
        registration = client.register_node(token, run_benchmark(quick=True, processes=1))
    NodeIdentity(store, target, config_path=config_dir / "worker.json").save(
        registration.node_id, registration.credential
    )
    Preferences(coordinator_address=target, username="bench", use_gpu=False).save(
        config_dir / "app.json"
    )
    (config_dir / KEYRING_NOTICE_FILE).write_text("shown\n", encoding="utf-8")


def launch(config_dir: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``hivemind gui`` on ``config_dir``; returns the process and the seconds until it was
    ready (from the ready file it writes)."""
    ready_file = config_dir / "ready"
    ready_file.unlink(missing_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "QT_QPA_PLATFORM": "offscreen",
            READY_FILE_ENV: str(ready_file),
            # No OS keyring here: the app uses the credential file prepared above.
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "HIVEMIND_LOG_LEVEL": "WARNING",
            **extra_env,
        }
    )
    command = [
        sys.executable,
        "-c",
        "import sys; from coordinator.cli import main; sys.exit(main())",
        "gui",
        "--config-dir",
        str(config_dir),
    ]
    launched = time.time()
    app = subprocess.Popen(command, cwd=REPO, env=env)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready_file.exists() or not ready_file.read_text().strip():
        if app.poll() is not None:
            raise SystemExit(f"the app exited with {app.returncode} before it was ready")
        if time.monotonic() > deadline:
            end(app)
            raise SystemExit("the app was not ready within a minute")
        time.sleep(0.01)
    return app, float(ready_file.read_text().strip()) - launched


def end(app: subprocess.Popen[bytes]) -> None:
    app.terminate()
    try:
        app.wait(10)
    except subprocess.TimeoutExpired:
        app.kill()
        app.wait(10)


def measure(config_dir: Path, idle_s: float, window_s: float) -> dict[str, float]:
    app, ready_s = launch(config_dir, {})
    try:
        process = psutil.Process(app.pid)
        time.sleep(idle_s)
        rss_mb = process.memory_info().rss / 1024**2
        before = process.cpu_times()
        start = time.monotonic()
        time.sleep(window_s)
        after = process.cpu_times()
        elapsed = time.monotonic() - start
        used = (after.user - before.user) + (after.system - before.system)
        cpu_percent = 100.0 * used / elapsed
        threads = process.num_threads()
    finally:
        end(app)
    return {
        "ready_s": round(ready_s, 3),
        "idle_rss_mb": round(rss_mb, 1),
        "idle_cpu_percent": round(cpu_percent, 2),
        "threads": threads,
    }


def measure_stall(config_dir: Path, target: str, coordinator: object) -> tuple[float, float]:
    """The GUI thread's longest stall and longest busy stretch (ms, see the app's StallMonitor), from
    ready through a few idle seconds and one chatty task."""
    import grpc

    from coordinator.clock import utcnow
    from coordinator.ledger import service as ledger

    with grpc.insecure_channel(target) as channel:
        users = users_pb2_grpc.UserServiceStub(channel)
        user_id = users.Register(
            users_pb2.RegisterRequest(username="funder", email="f@example.org", password=PASSWORD)
        ).user_id
        token = users.Login(users_pb2.LoginRequest(username="funder", password=PASSWORD)).token
    with coordinator.db.write() as session:  # type: ignore[attr-defined]
        ledger.grant(session, int(user_id), 50_000_000, now=utcnow())

    stall_file = config_dir / "stall"
    app, _ready = launch(config_dir, {STALL_FILE_ENV: str(stall_file)})
    try:
        time.sleep(3)
        with JobsClient(target, token=token) as jobs:
            job_id = jobs.submit(
                {
                    "name": "chatty",
                    "image": "hivemind/busybox:latest",
                    "command": ["sh", "-c", CHATTY_TASK],
                    "resources": {"cpu_cores": 0.5, "memory_gb": 0.125},
                    "timeout_s": 60,
                    "budget_cpt": "1",
                }
            )
            deadline = time.monotonic() + STALL_TASK_WAIT_S
            # Taken once it leaves the queue (it then waits for a cross-check on another node,
            # which this bench does not run).
            while jobs.get(job_id).state == "queued":
                if time.monotonic() > deadline:
                    raise SystemExit("the app's worker did not take the task within 30 s")
                time.sleep(0.5)
        time.sleep(8)  # the task streams its log and ends; its report goes out
        gap, busy, _when = stall_file.read_text().split()
        return float(gap), float(busy)
    finally:
        end(app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-s", type=float, default=10.0, help="wait before reading RSS")
    parser.add_argument("--window-s", type=float, default=10.0, help="CPU measurement window")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-stall", action="store_true", help="skip the GUI-thread stall run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hivemind-gui-bench-") as tmp:
        root = Path(tmp)
        settings = Settings(
            db=f"sqlite:///{root / 'coordinator.db'}",
            data_dir=root / "coordinator",
            grpc_port=0,
            http_port=0,
            jwt_secret="bench-secret-" + "x" * 40,
            log_format="text",
            log_level="WARNING",
        )
        with BackgroundCoordinator(settings) as coordinator:
            target = f"127.0.0.1:{coordinator.grpc_port}"
            config_dir = root / "config"
            config_dir.mkdir()
            prepare(config_dir, target)
            figures: dict[str, float] = measure(config_dir, args.idle_s, args.window_s)
            if not args.no_stall:
                gap, busy = measure_stall(config_dir, target, coordinator)
                figures["longest_stall_ms"], figures["longest_busy_ms"] = gap, busy

    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"hivemind gui, offscreen, {psutil.cpu_count()} logical cores, Python {sys.version.split()[0]}"
    )
    rows = (
        ("launch to window ready", f"{figures['ready_s']:.2f} s", "<= 2 s", "ready_s", True),
        (
            f"idle RSS after {args.idle_s:g} s",
            f"{figures['idle_rss_mb']:.0f} MB",
            "<= 200 MB",
            "idle_rss_mb",
            True,
        ),
        (
            f"idle CPU over {args.window_s:g} s",
            f"{figures['idle_cpu_percent']:.2f} % of one core",
            "< 1 %",
            "idle_cpu_percent",
            False,
        ),
    )
    for name, value, target_text, key, inclusive in rows:
        limit = TARGETS[key]
        ok = figures[key] <= limit if inclusive else figures[key] < limit
        print(f"  {name:<28} {value:<22} target {target_text:<10} {'met' if ok else 'MISSED'}")
    if "longest_stall_ms" in figures:
        busy, stall = figures["longest_busy_ms"], figures["longest_stall_ms"]
        print(
            f"  {'longest GUI-thread busy run':<28} {f'{busy:.0f} ms of CPU':<22} target <= 50 ms    "
            f"{'met' if busy <= 50 else 'MISSED'} (idle, then one task streaming its log)"
        )
        print(
            f"  {'longest GUI-thread stall':<28} {f'{stall:.0f} ms wall':<22} "
            f"(includes waiting for a core: load average {os.getloadavg()[0]:.1f})"
        )
    print(f"  threads in the app: {figures['threads']:.0f}")


if __name__ == "__main__":
    main()
