"""Settings precedence, production safety, and the hivemind command itself (run as a real process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from pydantic import ValidationError

from coordinator.settings import Settings, load_settings
from shared_proto.v1 import nodes_pb2, nodes_pb2_grpc, users_pb2, users_pb2_grpc
from tests.support import PASSWORD

HIVEMIND = [sys.executable, "-m", "coordinator"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_production_refuses_missing_or_weak_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIVEMIND_JWT_SECRET", raising=False)
    for secret in (None, "changeme", "short"):
        with pytest.raises(ValidationError, match="strong JWT secret"):
            Settings(env="production", jwt_secret=secret)
    assert Settings(env="production", jwt_secret="s" * 40).env == "production"


def test_precedence_flag_over_env_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hivemind.toml"
    config.write_text("grpc_port = 6001\nhttp_port = 6002\nsignup_grant_micro = 7\n")
    monkeypatch.setenv("HIVEMIND_HTTP_PORT", "7002")
    s = load_settings(config_file=config, grpc_port=None, signup_grant_micro=9)
    assert (s.grpc_port, s.http_port, s.signup_grant_micro) == (6001, 7002, 9)


def test_dev_secret_is_generated_once_and_owner_only(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    first = s.resolved_jwt_secret()
    assert len(first) >= 32 and first == Settings(data_dir=tmp_path).resolved_jwt_secret()
    assert (tmp_path / "dev-jwt-secret").stat().st_mode & 0o777 == 0o600


def test_help_lists_the_subcommands() -> None:
    out = subprocess.run([*HIVEMIND, "--help"], capture_output=True, text=True, check=True).stdout
    assert "coordinator" in out
    out = subprocess.run(
        [*HIVEMIND, "coordinator", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--grpc-port" in out and "create-admin" in out


def test_production_cli_refuses_to_start_without_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    r = subprocess.run(
        [*HIVEMIND, "coordinator", "--production", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "HIVEMIND_JWT_SECRET" in r.stderr


def test_serve_create_admin_and_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["HIVEMIND_DATA_DIR"] = str(tmp_path)
    created = subprocess.run(
        [*HIVEMIND, "coordinator", "create-admin", "--username", "root-op"],
        input=PASSWORD + "\n", capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "Admin 'root-op' is ready" in created.stdout

    grpc_port, http_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [*HIVEMIND, "coordinator", "--grpc-port", str(grpc_port), "--http-port", str(http_port)],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        deadline = time.monotonic() + 30
        while True:  # the gRPC port opens a moment before migrations finish serving
            try:
                nodes_pb2_grpc.NodeManagerServiceStub(channel).HealthCheck(
                    nodes_pb2.HealthCheckRequest()
                )
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        login = users_pb2_grpc.UserServiceStub(channel).Login(
            users_pb2.LoginRequest(username="root-op", password=PASSWORD)
        )
        assert login.role == "admin"
        channel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert '"msg": "coordinator stopped"' in err


@pytest.fixture
def collector_state() -> Iterator[None]:
    """Put Python's garbage collector back as it was after a test that tunes it."""
    import gc

    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector_state")
def test_a_serving_coordinator_collects_garbage_less_often_and_skips_its_startup_objects() -> None:
    import gc

    from coordinator.server import tune_garbage_collector

    before = gc.get_freeze_count()
    tune_garbage_collector(Settings(gc_young_threshold=40_000).gc_young_threshold)
    assert gc.get_threshold()[0] == 40_000
    assert gc.get_freeze_count() > before  # what existed at startup is no longer walked


@pytest.mark.usefixtures("collector_state")
def test_garbage_left_by_startup_is_collected_not_frozen() -> None:
    """Frozen objects are never collected, so what startup left in reference cycles goes first."""
    import gc
    import weakref

    from coordinator.server import tune_garbage_collector

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the cyclic collector can free it
    gone = weakref.ref(a)
    del a, b
    gc.disable()  # no collection may run by chance before the tuning does
    try:
        tune_garbage_collector(40_000)
        assert gone() is None
    finally:
        gc.enable()


@pytest.mark.usefixtures("collector_state")
def test_a_young_threshold_of_zero_leaves_the_collector_as_python_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    from coordinator.server import tune_garbage_collector

    monkeypatch.setenv("HIVEMIND_GC_YOUNG_THRESHOLD", "0")
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    tune_garbage_collector(load_settings().gc_young_threshold)
    assert (gc.get_threshold(), gc.get_freeze_count()) == (thresholds, frozen)
