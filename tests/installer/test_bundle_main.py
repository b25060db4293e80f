"""The installed app's entry point, run from source as `python -m client_gui.bundle_main`: argument
handling, and the self-test against a real in-process coordinator (and without one)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from client_gui import bundle_main
from coordinator import __version__
from tests.support import RunningCoordinator

REPO = Path(__file__).resolve().parents[2]
CHECKS = ["assets", "keyring", "platform", "coordinator", "benchmark", "window"]


def run_app(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client_gui.bundle_main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **(env or {})},
    )


def report_lines(stdout: str) -> dict[str, str]:
    """``{check name: its whole line}`` from a self-test report."""
    lines = {}
    for line in stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("ok", "FAIL"):
            lines[words[1]] = line
    return lines


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_version_prints_the_project_version() -> None:
    result = run_app("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"hivemind {__version__}"


def test_gui_word_is_accepted_as_in_the_pip_command(capsys: pytest.CaptureFixture[str]) -> None:
    """The app's start-at-login entry runs `<bundle executable> gui` (ui/engine_controller.py)."""
    with pytest.raises(SystemExit) as exited:
        bundle_main.main(["gui", "--tls"])
    assert exited.value.code == 2
    assert "--tls applies to --self-test only" in capsys.readouterr().err


def test_self_test_needs_a_coordinator_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        bundle_main.main(["--self-test"])
    assert exited.value.code == 2
    assert "--self-test needs --coordinator HOST:PORT" in capsys.readouterr().err


def test_worker_must_come_first(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        bundle_main.main(["--coordinator", "127.0.0.1:1", "--worker"])
    assert exited.value.code == 2
    assert "--worker must be the first option" in capsys.readouterr().err


@pytest.mark.parametrize("word", ["--worker", "worker"])
def test_worker_takes_the_same_options_as_hivemind_worker(
    word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        bundle_main.main([word, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hivemind --worker")
    for option in ("--coordinator", "--username", "--max-cores", "--credential-file", "--drain"):
        assert option in out


def test_worker_rejects_a_bad_option_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        bundle_main.main(["--worker", "--max-cores", "zero"])
    assert exited.value.code == 2
    assert "'zero' is not a number" in capsys.readouterr().err


def test_self_test_passes_against_a_running_coordinator(
    sqlite_coordinator: RunningCoordinator,
) -> None:
    target = sqlite_coordinator.grpc_target
    result = run_app("--self-test", "--coordinator", target)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = report_lines(result.stdout)
    assert list(lines) == CHECKS
    assert all(line.startswith("ok ") for line in lines.values()), result.stdout
    assert f"{target} is SERVING" in lines["coordinator"]
    assert "icons found" in lines["assets"]
    assert "main window with" in lines["window"]
    assert "CPU score" in lines["benchmark"]
    assert result.stdout.splitlines()[0].startswith(f"HiveMind {__version__} self-test (source,")
    assert "self-test passed" in result.stdout.splitlines()[-1]


def test_self_test_says_why_when_the_coordinator_is_unreachable() -> None:
    target = f"127.0.0.1:{closed_port()}"
    result = run_app("--self-test", "--coordinator", target)
    assert result.returncode == 1
    lines = report_lines(result.stdout)
    assert lines["coordinator"].split(None, 2)[2] == (
        f"Cannot reach the coordinator at {target} (UNAVAILABLE). Check the address, that the "
        "coordinator is running and that no firewall blocks the port."
    )
    # Every other check still runs and reports.
    assert [name for name, line in lines.items() if line.startswith("ok ")] == [
        "assets",
        "keyring",
        "platform",
        "benchmark",
        "window",
    ]
    assert result.stdout.splitlines()[-1].startswith("self-test FAILED (coordinator)")


def test_self_test_reports_missing_icons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert bundle_main.run_check("assets", bundle_main.check_assets).ok  # the repo's icons
    (tmp_path / "icons").mkdir()
    (tmp_path / "icons" / "app.svg").write_text("<svg/>")
    monkeypatch.setenv("HIVEMIND_ASSETS", str(tmp_path))
    result = bundle_main.run_check("assets", bundle_main.check_assets)
    assert not result.ok
    total = len(bundle_main.REQUIRED_ICONS)
    assert result.detail == (
        f"{total - 1} of the app's {total} icons are missing from {tmp_path / 'icons'} "
        "(e.g. app.ico); reinstall HiveMind."
    )


@pytest.fixture
def not_serving_coordinator() -> Iterator[str]:
    """A real gRPC server whose health service says NOT_SERVING (a coordinator shutting down)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def test_coordinator_check_tells_a_server_that_is_not_serving(not_serving_coordinator: str) -> None:
    result = bundle_main.run_check(
        "coordinator", lambda: bundle_main.check_coordinator(not_serving_coordinator)
    )
    assert not result.ok
    assert result.detail == (
        f"The coordinator at {not_serving_coordinator} answers but is not serving (NOT_SERVING); "
        "it may be starting or shutting down. Try again in a minute."
    )
