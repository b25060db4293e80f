"""The benchmark on this real machine (real psutil, real spawned processes, the real Docker engine), and its
refusal to score a machine that computes a wrong result. Scores are not asserted against times: see bench/."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import docker
import psutil
import pytest

from client_gui.engine import benchmark, sysinfo
from client_gui.engine.benchmark import (
    EXPECTED_UNIT_DIGEST,
    BenchmarkError,
    run_benchmark,
    workload_unit,
)
from client_gui.engine.gpu import GpuInfo, GpuProbe


def _docker_engine_answers() -> bool:
    try:
        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


needs_docker = pytest.mark.skipif(not _docker_engine_answers(), reason="no Docker engine here")


def benchmark_processes() -> list[psutil.Process]:
    """This process's live children started by multiprocessing's spawn (not its resource tracker)."""
    found = []
    for child in psutil.Process().children():
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != "zombie":
                found.append(child)
        except psutil.Error:  # exited while we looked
            pass
    return found


def test_the_workload_is_deterministic_and_checked() -> None:
    assert workload_unit() == EXPECTED_UNIT_DIGEST
    assert workload_unit() == EXPECTED_UNIT_DIGEST
    assert workload_unit(seed=benchmark.WORKLOAD_SEED + 1) != EXPECTED_UNIT_DIGEST


@needs_docker
def test_a_quick_benchmark_reports_this_machine() -> None:
    steps: list[tuple[float, str]] = []

    report = run_benchmark(lambda fraction, message: steps.append((fraction, message)), quick=True)

    assert report.cpu_cores == psutil.cpu_count(logical=True) == os.cpu_count()
    assert report.memory_gb == pytest.approx(psutil.virtual_memory().total / 1024**3, abs=0.01)
    assert 0 < report.available_memory_gb <= report.memory_gb
    assert report.cpu_score_single > 0
    assert report.cpu_score > 0
    assert report.hostname == sysinfo.hostname() != ""
    assert report.cpu_model
    assert report.docker_status is True
    assert report.docker_version == docker.from_env().version()["Version"]
    assert (
        report.docker_message == f"Docker {report.docker_version} is running and ready for tasks."
    )
    assert report.duration_s > 0
    fractions = [fraction for fraction, _ in steps]
    assert fractions == sorted(fractions)
    assert steps[0][0] == 0.0
    assert steps[-1] == (1.0, "Benchmark finished")
    assert any("multi-core" in message for _, message in steps)


def test_without_a_gpu_the_gpu_fields_are_empty() -> None:
    no_gpu = GpuProbe([], "none", "No NVIDIA GPU found (the NVIDIA driver is not installed).")

    report = run_benchmark(quick=True, processes=1, gpu_probe=lambda: no_gpu)

    assert (report.gpu_score, report.gpu_memory_gb, report.gpu_name, report.gpus) == (
        0.0,
        0.0,
        "",
        [],
    )
    assert report.gpu_message == "No NVIDIA GPU found (the NVIDIA driver is not installed)."


def test_the_best_gpu_fills_the_registration_fields() -> None:
    small = GpuInfo(0, "NVIDIA GeForce RTX 3060", 12.0, 11.0, "GPU-a", "550.54.15")
    h100 = GpuInfo(
        1,
        "NVIDIA H100 80GB HBM3",
        79.65,
        79.0,
        "GPU-b",
        "550.54.15",
        cuda_cores=16896,
        max_sm_clock_mhz=1980,
        memory_bandwidth_gbps=3352.3,
    )
    probe = GpuProbe([small, h100], "nvml", "Found 2 NVIDIA GPUs")

    report = run_benchmark(quick=True, processes=1, gpu_probe=lambda: probe)

    assert report.gpu_name == "NVIDIA H100 80GB HBM3"
    assert report.gpu_score == 1000.0
    assert report.gpu_memory_gb == 79.65
    assert report.gpus == [small, h100]


def test_docker_that_is_not_running_is_reported_as_a_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-docker.sock'}")

    status = sysinfo.docker_status()

    assert status.available is False
    assert status.version == ""
    assert status.message.startswith("Docker is not running on this computer.")


def test_a_machine_that_computes_a_wrong_result_gets_no_score(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if the CPU miscomputed: the expected digest no longer matches what the machine produces.
    monkeypatch.setattr(benchmark, "EXPECTED_UNIT_DIGEST", "0" * 64)

    with pytest.raises(BenchmarkError, match="computed a wrong result"):
        run_benchmark(quick=True)


def test_the_multi_core_run_checks_every_process_result(monkeypatch: pytest.MonkeyPatch) -> None:
    # The digests come back from the spawned processes and are checked in this one.
    monkeypatch.setattr(benchmark, "EXPECTED_UNIT_DIGEST", "0" * 64)

    with pytest.raises(BenchmarkError, match="computed a wrong result"):
        benchmark.measure_multi_core(processes=2, units=1)


def test_multi_core_runs_one_process_per_core_and_scores_them_together() -> None:
    score = benchmark.measure_multi_core(processes=2, units=1)

    assert score > 0
    assert benchmark_processes() == []  # all joined: none outlives the measurement


def test_a_benchmark_process_that_dies_fails_the_run_at_once() -> None:
    outcome: list[BaseException | float] = []

    def measure() -> None:
        try:
            outcome.append(benchmark.measure_multi_core(processes=2, units=100_000))
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=measure)
    runner.start()
    workers: list[psutil.Process] = []
    for _ in range(600):  # until both processes exist (spawn is slow on a busy machine)
        workers = benchmark_processes()
        if len(workers) == 2:
            break
        time.sleep(0.1)
    workers[0].kill()  # as the OS does to a process when memory runs out
    runner.join(timeout=60)

    assert not runner.is_alive()
    [error] = outcome
    assert isinstance(error, BenchmarkError)
    assert str(error) == "The multi-core benchmark failed. See the log for details."
    assert benchmark_processes() == []
