"""The installed app's entry point (the PyInstaller bundle's ``hivemind`` executable).

``hivemind`` opens the tray client; ``hivemind --worker [worker options]`` runs the headless worker
(the same code as ``hivemind worker``, which is accepted too, as is ``hivemind gui``);
``hivemind --version``; ``hivemind --self-test --coordinator HOST:PORT`` checks that the installed
app works on this computer and prints one line per check.
It runs unfrozen too: ``python -m client_gui.bundle_main --self-test --coordinator HOST:PORT``.

Imports stay lean and inside the functions that need them: the bundle holds only what these paths
import (no coordinator server side), and ``--version`` answers without loading Qt.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from client_gui.engine.coordinator_client import DEFAULT_TARGET

PROG = "hivemind"
WORKER_FLAG = "--worker"
MODULE_LIST_NAME = "hivemind_modules.txt"
"""Written into the bundle by the spec: the hidden imports, which ``--self-test`` imports one by one."""
HEALTH_TIMEOUT_S = 5.0
WINDOW_TIMEOUT_S = 30.0

REQUIRED_ICONS = (
    "app.svg",
    "app.ico",
    *(f"app-{size}.png" for size in (16, 32, 48, 64, 128, 256, 512)),
    *(
        f"tray-{state}{suffix}"
        for state in ("working", "idle", "paused", "offline", "error")
        for suffix in (".svg", "-16.png", "-22.png", "-32.png", "-64.png")
    ),
)
"""What the app loads from ``assets/icons`` (see client_gui/assets.py)."""

OS_KEYRING_BACKENDS = {
    "linux": ("SecretService", "KWallet"),
    "win32": ("Windows",),
    "darwin": ("macOS",),
}
"""keyring entry points that must be in the app on each OS, or it cannot keep secrets there."""


def version() -> str:
    from coordinator import __version__

    return __version__


def is_frozen() -> bool:
    """True inside the PyInstaller bundle."""
    return bool(getattr(sys, "frozen", False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="HiveMind: lend this computer to a volunteer-computing platform and earn CPT. "
        "Without options it opens the desktop app (in the system tray).",
        epilog=f"{PROG} {WORKER_FLAG} [worker options] runs the headless worker instead; "
        f"see {PROG} {WORKER_FLAG} --help.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    parser.add_argument(
        WORKER_FLAG,
        action="store_true",
        help="run the headless worker; must come first, followed by the worker's options",
    )
    parser.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="coordinator address (the app: default the saved one; --self-test: required)",
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        metavar="DIR",
        help="keep the app's settings and the worker's state here instead of the user's config folder",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="check this installation (benchmark, window, coordinator, icons, keyring), print a "
        "report and exit 0 if everything works",
    )
    parser.add_argument(
        "--tls", action="store_true", help="--self-test: connect to the coordinator with TLS"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # "worker" and "gui" as in the pip-installed `hivemind` command, so one command line (an autostart
    # entry, a systemd unit, the docs) works with either installation.
    if args[:1] in ([WORKER_FLAG], ["worker"]):
        return run_worker(args[1:])
    if args[:1] == ["gui"]:
        args = args[1:]
    parser = build_parser()
    ns = parser.parse_args(args)
    if ns.worker:
        parser.error(
            f"{WORKER_FLAG} must be the first option: {PROG} {WORKER_FLAG} [worker options]"
        )
    if ns.self_test:
        if not ns.coordinator:
            parser.error(f"--self-test needs --coordinator HOST:PORT (e.g. {DEFAULT_TARGET})")
        return run_self_test(ns.coordinator, tls=ns.tls, out=sys.stdout)
    if ns.tls:
        parser.error("--tls applies to --self-test only; the app saves its own connection settings")
    from client_gui.ui.app import main as app_main

    return app_main(coordinator=ns.coordinator, config_dir=ns.config_dir)


def run_worker(worker_args: Sequence[str]) -> int:
    """``hivemind --worker ...``: exactly ``hivemind worker ...`` (same parser, same code)."""
    from client_gui.engine.cli import add_worker_parser

    parser = argparse.ArgumentParser(prog=f"{PROG} {WORKER_FLAG}", add_help=False)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = add_worker_parser(sub)
    worker.prog = f"{PROG} {WORKER_FLAG}"
    ns = parser.parse_args(["worker", *worker_args])
    func: Callable[[argparse.Namespace], int] = ns.func
    return func(ns)


# -- self-test ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    """One sentence: what was found, or what is wrong and what to do."""


class CheckFailed(Exception):
    """A self-test check found a problem; ``str()`` is the sentence to print."""


def check_assets() -> str:
    from client_gui.assets import asset_path, assets_root

    missing: list[str] = []
    for name in REQUIRED_ICONS:
        try:
            asset_path("icons", name)
        except FileNotFoundError:
            missing.append(name)
    icons = assets_root() / "icons"
    if missing:
        raise CheckFailed(
            f"{len(missing)} of the app's {len(REQUIRED_ICONS)} icons are missing from {icons} "
            f"(e.g. {missing[0]}); reinstall HiveMind."
        )
    return f"{len(REQUIRED_ICONS)} icons found in {icons}"


def check_keyring() -> str:
    from importlib.metadata import entry_points

    import keyring

    from client_gui.engine.identity import is_os_keyring

    loaded: list[str] = []
    for entry in entry_points(group="keyring.backends"):
        try:
            entry.load()
        except (
            Exception
        ):  # a backend that cannot load here (e.g. another OS's extras) is just absent
            continue
        loaded.append(entry.name)
    needed = OS_KEYRING_BACKENDS.get(sys.platform, ())
    missing = [name for name in needed if name not in loaded]
    if missing:
        raise CheckFailed(
            f"The keyring backends for this OS ({', '.join(missing)}) are missing from the app, so "
            "it cannot keep your sign-in safe; reinstall HiveMind."
        )
    chosen = keyring.get_keyring()
    in_use = (
        f"in use: {chosen.name}"
        if is_os_keyring(chosen)
        else f"no OS keyring is running here (keyring chose {chosen.name}), so the app keeps the "
        "sign-in in a file only this user can read"
    )
    return f"backends {', '.join(sorted(loaded))}; {in_use}"


def _bundled_module_list() -> list[str] | None:
    """The hidden imports the spec recorded in the bundle, or (from a checkout) the repo's list."""
    if is_frozen():
        listing = Path(getattr(sys, "_MEIPASS", "")) / MODULE_LIST_NAME
        return listing.read_text(encoding="utf-8").split()
    source = Path(__file__).resolve().parents[1] / "installer" / "hiddenimports.py"
    if not source.is_file():
        return None  # an installed package without the build tooling
    spec = importlib.util.spec_from_file_location("_hivemind_hiddenimports", source)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [str(name) for name in module.HIDDEN_IMPORTS]


def check_platform() -> str:
    from client_gui.platform.autostart import default_autostart
    from client_gui.platform.idle import default_idle_source
    from client_gui.platform.power import default_power_source

    modules = _bundled_module_list()
    broken: list[str] = []
    for name in modules or ():
        try:
            importlib.import_module(name)
        except Exception as exc:
            broken.append(f"{name} ({exc.__class__.__name__}: {exc})")
    if broken:
        raise CheckFailed(
            f"{len(broken)} of the app's modules do not load: {'; '.join(broken[:3])}; "
            "reinstall HiveMind."
        )
    idle = default_idle_source()
    seconds = idle.idle_seconds()
    idle_text = "unknown on this desktop" if seconds is None else f"{seconds:.0f} s"
    battery = default_power_source().on_battery()
    power_text = {None: "unknown", True: "on battery", False: "on mains power"}[battery]
    checked = f"{len(modules)} bundled modules load; " if modules is not None else ""
    return (
        f"{checked}idle time from {idle.name} ({idle_text}); power {power_text}; "
        f"autostart via {default_autostart().description}"
    )


def check_coordinator(target: str, *, tls: bool = False) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from client_gui.engine.coordinator_client import open_channel

    channel = open_channel(target, tls=tls)
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=HEALTH_TIMEOUT_S
        )
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        reason = code.name if code is not None else exc.__class__.__name__
        raise CheckFailed(
            f"Cannot reach the coordinator at {target} ({reason}). Check the address, that the "
            "coordinator is running and that no firewall blocks the port."
        ) from None
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise CheckFailed(
            f"The coordinator at {target} answers but is not serving ({status}); it may be "
            "starting or shutting down. Try again in a minute."
        )
    return f"{target} is {status}"


def check_benchmark() -> str:
    from client_gui.engine.benchmark import BenchmarkError, run_benchmark

    try:
        report = run_benchmark(quick=True)
    except BenchmarkError as exc:
        raise CheckFailed(str(exc)) from None
    docker = "Docker running" if report.docker_status else f"Docker: {report.docker_message}"
    gpu = report.gpu_name or "no NVIDIA GPU"
    return (
        f"CPU score {report.cpu_score:.0f} (single-core {report.cpu_score_single:.0f}), "
        f"{report.cpu_cores} cores, {report.memory_gb:.1f} GB; {docker}; {gpu}"
    )


def check_window(timeout_s: float = WINDOW_TIMEOUT_S) -> str:
    # Offscreen, so the check needs no screen, unless the caller picked a platform to test (CI runs
    # it once under Xvfb with QT_QPA_PLATFORM=xcb). Qt reads this when the application starts.
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from client_gui.ui.app import self_test_window

    return self_test_window(timeout_s)


def self_test_checks(target: str, *, tls: bool = False) -> list[tuple[str, Callable[[], str]]]:
    """The checks in the order they run: the quick ones first, the window last."""
    return [
        ("assets", check_assets),
        ("keyring", check_keyring),
        ("platform", check_platform),
        ("coordinator", lambda: check_coordinator(target, tls=tls)),
        ("benchmark", check_benchmark),
        ("window", check_window),
    ]


def run_check(name: str, check: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, check())
    except CheckFailed as exc:
        return CheckResult(name, False, str(exc))
    except Exception as exc:  # anything else is a broken installation: say what broke
        return CheckResult(name, False, f"{exc.__class__.__name__}: {exc}")


def run_self_test(target: str, *, tls: bool = False, out: TextIO) -> int:
    """Run every check, print one line each and a verdict; 0 when all passed, else 1."""
    where = "bundle" if is_frozen() else "source"
    print(f"HiveMind {version()} self-test ({where}, {sys.platform})", file=out, flush=True)
    started = time.perf_counter()
    failed: list[str] = []
    for name, check in self_test_checks(target, tls=tls):
        result = run_check(name, check)
        mark = "ok  " if result.ok else "FAIL"
        print(f"{mark} {result.name:<12}{result.detail}", file=out, flush=True)
        if not result.ok:
            failed.append(result.name)
    elapsed = time.perf_counter() - started
    if failed:
        print(f"self-test FAILED ({', '.join(failed)}) in {elapsed:.1f} s", file=out, flush=True)
        return 1
    print(f"self-test passed in {elapsed:.1f} s", file=out, flush=True)
    return 0


if __name__ == "__main__":
    # In the bundle, the benchmark's spawned processes re-run this executable: hand them over first.
    multiprocessing.freeze_support()
    sys.exit(main())
