"""Screenshots of the desktop app for the docs: one PNG per view in ``docs/screenshots/client-<view>.png``,
plus the first-run dialog.

    .venv/bin/python bench/gui_screenshots.py [--out docs/screenshots]

It starts Xvfb (a real X server, so the app draws as on a desktop), a demo coordinator with data (a
submitter, the volunteer using the app, a second volunteer's worker for the cross-checks), runs the app as
the volunteer, lets its worker earn from a few real Docker jobs, then shows each view and saves it.
Needs Xvfb and a Docker engine with ``hivemind/busybox:latest``. Takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WIDTH, HEIGHT = 1200, 760
PASSWORD = "correct horse battery"
BUSYBOX = "hivemind/busybox:latest"
VIEWS = ("earnings", "machine", "tasks", "submit", "wallet", "settings")


def start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    if not shutil.which("Xvfb"):
        raise SystemExit("Xvfb is not installed: sudo apt install xvfb")
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        xvfb.kill()
        raise SystemExit("Xvfb did not start")
    return xvfb, f":{number}"


def wait(what: str, check: Callable[[], bool], timeout_s: float = 120.0) -> None:
    from PySide6.QtCore import QCoreApplication

    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        QCoreApplication.processEvents()
        time.sleep(0.05)


def settle(seconds: float) -> None:
    from PySide6.QtCore import QCoreApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    xvfb, display = start_xvfb()
    os.environ["DISPLAY"] = display
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    try:
        with tempfile.TemporaryDirectory(prefix="hivemind-shots-") as tmp:
            run(Path(tmp), out)
    finally:
        xvfb.terminate()
        xvfb.wait(10)


def run(root: Path, out: Path) -> None:
    import grpc
    from PySide6.QtCore import QTime
    from PySide6.QtWidgets import QApplication

    from client_gui.engine.account_client import AccountClient
    from client_gui.engine.benchmark import run_benchmark
    from client_gui.engine.identity import FileCredentialStore
    from client_gui.engine.jobs_client import JobsClient
    from client_gui.engine.local import local_worker
    from client_gui.engine.preferences import Preferences
    from client_gui.engine.worker import WorkerLimits
    from client_gui.platform.autostart import MemoryAutostart
    from client_gui.platform.idle import ManualIdleSource
    from client_gui.platform.power import ManualPowerSource
    from client_gui.ui.app import AppOptions, HiveMindApp, _application
    from client_gui.ui.controllers.first_run import FirstRunController
    from client_gui.ui.controllers.settings import SettingsController
    from client_gui.ui.engine_controller import WorkerOptions
    from client_gui.ui.session import AppSession
    from client_gui.ui.views.first_run import FirstRunView
    from coordinator.clock import utcnow
    from coordinator.ledger import service as ledger
    from coordinator.server import BackgroundCoordinator
    from coordinator.settings import Settings
    from shared_proto.v1 import users_pb2, users_pb2_grpc

    qapp: QApplication = _application()
    settings = Settings(
        db=f"sqlite:///{root / 'demo.db'}",
        data_dir=root / "coordinator",
        grpc_port=0,
        http_port=0,
        jwt_secret="demo-secret-" + "x" * 40,
        log_format="text",
        log_level="WARNING",
        heartbeat_interval_s=1,
        lease_ttl_s=8,
        spot_check_rate=0.0,
    )
    with BackgroundCoordinator(settings) as coordinator:
        target = f"127.0.0.1:{coordinator.grpc_port}"
        tokens: dict[str, str] = {}
        with grpc.insecure_channel(target) as channel:
            users = users_pb2_grpc.UserServiceStub(channel)
            for name, grant in (("alice", 500), ("vera", 40), ("hal", 0)):
                reply = users.Register(
                    users_pb2.RegisterRequest(
                        username=name, email=f"{name}@example.org", password=PASSWORD
                    )
                )
                if grant:
                    with coordinator.db.write() as session:
                        ledger.grant(session, int(reply.user_id), grant * 1_000_000, now=utcnow())
                tokens[name] = users.Login(
                    users_pb2.LoginRequest(username=name, password=PASSWORD)
                ).token

        # The volunteer signed in here before (as after the first run), with a few settings.
        config_dir = root / "vera"
        store = FileCredentialStore(config_dir / "credentials.json")
        session = AppSession(target, store)
        session.sign_in("vera", PASSWORD)
        session.close()
        Preferences(
            coordinator_address=target,
            username="vera",
            max_cpu_percent=75,
            max_memory_gb=1.5,
            use_gpu=False,
            idle_minutes=5,
            start_at_login=True,
        ).save(config_dir / "app.json")

        app = HiveMindApp(
            AppOptions(
                config_dir=config_dir,
                store=store,
                idle_source=ManualIdleSource(3600.0),
                power_source=ManualPowerSource(False),
                autostart=MemoryAutostart(),
                worker=WorkerOptions(
                    benchmark=run_benchmark,
                    poll_wait_s=2.0,
                    heartbeat_interval_s=1.0,
                    gpu_count=lambda: 0,
                ),
                policy_interval_ms=500,
                earnings_refresh_ms=2_000,
            )
        )
        app.start()
        wait("the app", lambda: app.window is not None)
        assert app.window is not None and app.engine is not None
        app.window.resize(WIDTH, HEIGHT)
        wait("registration", lambda: app.engine is not None and app.engine.node_id != "")
        wait("the engine to be idle", lambda: app.engine is not None and app.engine.state == "idle")

        hal = local_worker(
            target, "hal", PASSWORD, root / "hal", limits=WorkerLimits(use_gpu=False, slots=2)
        )
        hal.start()
        try:
            jobs = JobsClient(target, token=tokens["alice"])
            names = ("protein fold 17", "render frame 0042", "monte carlo pi", "genome shard 3")
            ids = [
                jobs.submit(
                    {
                        "name": name,
                        "image": BUSYBOX,
                        "command": [
                            "sh",
                            "-c",
                            f"echo {name}; i=0; while [ $i -lt 3 ]; do "
                            "i=$((i+1)); echo step $i; sleep 1; done",
                        ],
                        "resources": {"cpu_cores": 0.5, "memory_gb": 0.25},
                        "timeout_s": 120,
                        "budget_cpt": "2",
                    }
                )
                for name in names
            ]
            wait("the demo jobs", lambda: all(jobs.get(i).finished for i in ids), 240)
            # Vera submits a job of her own, and alice thanks her.
            own = JobsClient(target, token=tokens["vera"])
            mine = own.submit(
                {
                    "name": "thumbnail batch",
                    "image": BUSYBOX,
                    "command": ["sh", "-c", "mkdir -p out; echo done > out/result.txt"],
                    "output_paths": ["out/result.txt"],
                    "resources": {"cpu_cores": 0.5, "memory_gb": 0.25},
                    "timeout_s": 60,
                    "budget_cpt": "1",
                }
            )
            wait("vera's job", lambda: own.get(mine).finished, 120)
            with AccountClient(target, token=tokens["alice"]) as account:
                account.transfer("vera", 5_000_000, memo="thanks for the renders")
            # A long task running on the app's worker while the Tasks view is shot.
            hal.pause()
            jobs.submit(
                {
                    "name": "climate ensemble 7",
                    "image": BUSYBOX,
                    "command": [
                        "sh",
                        "-c",
                        "i=0; while [ $i -lt 60 ]; do i=$((i+1)); "
                        'echo "member $i: integrating timestep $((i*120))"; sleep 1; done',
                    ],
                    "resources": {"cpu_cores": 0.5, "memory_gb": 0.25},
                    "timeout_s": 300,
                    "budget_cpt": "3",
                }
            )
            wait("a running task", lambda: app.engine is not None and bool(app.engine.current), 120)
            settle(6.0)
            for controller in app.controllers:
                for name in ("refresh", "refresh_jobs"):
                    method = getattr(controller, name, None)
                    if callable(method):
                        method()
            assert app.earnings is not None
            app.earnings.refresh()
            app.background.wait_idle(20)
            settle(1.5)

            # The schedule editor in use (shown, not saved: the demo must work at any hour).
            settings_view = next(c for c in app.controllers if isinstance(c, SettingsController))
            for days, start, end in (
                (range(5), QTime(19, 0), QTime(7, 30)),
                ((5, 6), QTime(0, 0), QTime(0, 0)),
            ):
                row = settings_view.add_window()
                for day in days:
                    row.days[day].setChecked(True)
                row.start.setTime(start)
                row.end.setTime(end)

            window = app.window
            for key in VIEWS:
                window.show_page(key)
                settle(2.5 if key == "machine" else 0.6)
                path = out / f"client-{key}.png"
                window.grab().save(str(path))
                print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")

            # The first-run dialog, on its account step.
            dialog = FirstRunView()
            FirstRunController(
                dialog,
                store=FileCredentialStore(root / "other" / "credentials.json"),
                background=app.background,
                preferences=Preferences(coordinator_address="hivemind.example.org:50051"),
                save_preferences=lambda _p: None,
                make_engine=app.make_engine,
                start_page="account",
            )
            dialog.username.setText("vera")
            dialog.password.setText(PASSWORD)
            dialog.show()
            settle(0.6)
            path = out / "client-first-run.png"
            dialog.grab().save(str(path))
            print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
            dialog.close()
        finally:
            hal.stop(cancel_running=True, timeout=30)
            hal.client.close()
            app.shutdown(30)
    qapp.processEvents()


if __name__ == "__main__":
    main()
