"""GPU detection: the clean no-GPU report on this (GPU-less) machine through the real NVML and nvidia-smi
paths, and the NVML reading and score formula against a fake standing in for ``pynvml`` at the seam."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from client_gui.engine import gpu
from client_gui.engine.gpu import GpuInfo, detect_gpus, gpu_score, gpu_usage_percent

GIB = 1024**3


def _machine_has_nvidia_driver() -> bool:
    if shutil.which("nvidia-smi"):
        return True
    try:
        import pynvml  # type: ignore[import-untyped]

        pynvml.nvmlInit()
    except Exception:
        return False
    pynvml.nvmlShutdown()
    return True


needs_no_gpu = pytest.mark.skipif(
    _machine_has_nvidia_driver(), reason="this machine has an NVIDIA driver"
)


class FakeNVMLError(Exception):
    """Like ``pynvml.NVMLError``: carries NVML's return code in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FakeGpu:
    name: str
    memory_mib: int
    cores: int | None
    sm_clock_mhz: int
    mem_clock_mhz: int
    bus_width: int
    utilization: int = 0
    lost: bool = False


@dataclass
class FakeNvml:
    """The few ``pynvml`` functions :mod:`client_gui.engine.gpu` calls, over a list of fake GPUs."""

    gpus: list[FakeGpu] = field(default_factory=list)
    init_error: int | None = None
    driver: str = "550.54.15"
    initialized: int = 0
    NVMLError: type[Exception] = FakeNVMLError

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise FakeNVMLError(self.init_error)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self.initialized -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: FakeGpu) -> bytes:
        if handle.lost:
            raise FakeNVMLError(15)  # NVML_ERROR_GPU_IS_LOST
        return handle.name.encode()  # older pynvml returns bytes

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        return f"GPU-{self.gpus.index(handle):08d}"

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> Any:
        total = handle.memory_mib * 1024**2
        return SimpleNamespace(total=total, free=total // 2, used=total // 2)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> Any:
        return SimpleNamespace(gpu=handle.utilization, memory=0)

    def nvmlDeviceGetNumGpuCores(self, handle: FakeGpu) -> int:
        if handle.cores is None:
            raise FakeNVMLError(gpu.NVML_ERROR_FUNCTION_NOT_FOUND)  # driver older than the call
        return handle.cores

    def nvmlDeviceGetMaxClockInfo(self, handle: FakeGpu, clock_type: int) -> int:
        return handle.sm_clock_mhz if clock_type == gpu.NVML_CLOCK_SM else handle.mem_clock_mhz

    def nvmlDeviceGetMemoryBusWidth(self, handle: FakeGpu) -> int:
        return handle.bus_width


def h100(**changes: Any) -> FakeGpu:
    """The reference GPU as NVML reports it."""
    reference = FakeGpu(
        name="NVIDIA H100 80GB HBM3",
        memory_mib=81559,
        cores=16896,
        sm_clock_mhz=1980,
        mem_clock_mhz=2619,
        bus_width=5120,
    )
    return dataclasses.replace(reference, **changes)


def rtx_4090() -> FakeGpu:
    return FakeGpu(
        name="NVIDIA GeForce RTX 4090",
        memory_mib=24564,
        cores=16384,
        sm_clock_mhz=2520,
        mem_clock_mhz=10501,
        bus_width=384,
        utilization=37,
    )


def no_gputil() -> list[GpuInfo]:
    return []


@needs_no_gpu
def test_a_machine_without_an_nvidia_driver_reports_no_gpu_cleanly() -> None:
    probe = detect_gpus()

    assert probe.gpus == []
    assert probe.source == "none"
    assert probe.message == "No NVIDIA GPU found (the NVIDIA driver is not installed)."
    assert probe.best is None


@needs_no_gpu
def test_live_usage_is_none_without_a_gpu() -> None:
    assert gpu_usage_percent() is None


@needs_no_gpu
def test_the_nvidia_smi_fallback_finds_nothing_without_a_driver() -> None:
    assert gpu._probe_gputil() == []


def test_the_reference_h100_scores_1000_and_is_fully_described() -> None:
    nvml = FakeNvml([h100()])

    probe = detect_gpus(nvml=nvml, gputil=no_gputil)

    assert probe.source == "nvml"
    assert probe.message == "Found 1 NVIDIA GPU: NVIDIA H100 80GB HBM3 (80 GB)."
    [info] = probe.gpus
    assert info == GpuInfo(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        memory_total_gb=79.65,
        memory_free_gb=39.82,
        uuid="GPU-00000000",
        driver_version="550.54.15",
        utilization_percent=0.0,
        cuda_cores=16896,
        max_sm_clock_mhz=1980,
        memory_bandwidth_gbps=3352.3,
    )
    assert info.score == 1000.0
    assert info.score_basis == "compute+bandwidth+memory"
    assert info.fp32_tflops == pytest.approx(66.9, abs=0.05)
    assert nvml.initialized == 0  # every nvmlInit was matched by nvmlShutdown


def test_the_score_follows_the_documented_formula_for_another_gpu() -> None:
    probe = detect_gpus(nvml=FakeNvml([rtx_4090(), h100()]), gputil=no_gputil)

    rtx = probe.gpus[0]
    compute = 16384 * 2520 * 2 / 1e6 / gpu.REF_COMPUTE_TFLOPS
    bandwidth = 384 / 8 * 10501 * 2 / 1000 / gpu.REF_BANDWIDTH_GBPS
    memory = 23.99 / gpu.REF_MEMORY_GB
    assert rtx.score == pytest.approx(
        1000 * (0.5 * compute + 0.3 * bandwidth + 0.2 * memory), abs=0.1
    )
    assert rtx.score == pytest.approx(767.5, abs=0.5)
    assert rtx.utilization_percent == 37.0
    assert probe.best is not None and probe.best.name == "NVIDIA H100 80GB HBM3"
    assert probe.message.startswith("Found 2 NVIDIA GPUs: NVIDIA GeForce RTX 4090 (24 GB), ")


def test_a_driver_without_the_core_count_scores_from_what_it_reports() -> None:
    probe = detect_gpus(nvml=FakeNvml([h100(cores=None)]), gputil=no_gputil)

    [info] = probe.gpus
    assert info.cuda_cores is None
    assert info.score_basis == "bandwidth+memory"
    assert info.score == 1000.0  # the reference still scores 1000 on the terms that are known


def test_a_lost_gpu_is_reported_and_the_others_still_listed() -> None:
    probe = detect_gpus(nvml=FakeNvml([h100(), h100(lost=True)]), gputil=no_gputil)

    assert [g.index for g in probe.gpus] == [0]
    assert "Could not read GPU 1" in probe.message


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            gpu.NVML_ERROR_LIBRARY_NOT_FOUND,
            "No NVIDIA GPU found (the NVIDIA driver is not installed).",
        ),
        (
            gpu.NVML_ERROR_DRIVER_NOT_LOADED,
            "No NVIDIA GPU found (the NVIDIA driver is installed but not running; restart the computer).",
        ),
        (
            gpu.NVML_ERROR_NO_PERMISSION,
            "An NVIDIA GPU may be present, but the driver refused access to it for this user.",
        ),
    ],
)
def test_nvml_failures_become_a_sentence_not_an_exception(code: int, message: str) -> None:
    probe = detect_gpus(nvml=FakeNvml(init_error=code), gputil=no_gputil)

    assert (probe.gpus, probe.source, probe.message) == ([], "none", message)


def test_nvidia_smi_is_the_fallback_when_nvml_fails() -> None:
    from_smi = GpuInfo(0, "NVIDIA GeForce RTX 3060", 12.0, 11.5, "GPU-x", "535.1", 3.0)

    probe = detect_gpus(
        nvml=FakeNvml(init_error=gpu.NVML_ERROR_LIBRARY_NOT_FOUND), gputil=lambda: [from_smi]
    )

    assert probe.source == "gputil"
    assert probe.gpus == [from_smi]
    assert from_smi.score_basis == "memory"
    assert from_smi.score == pytest.approx(1000 * 12.0 / gpu.REF_MEMORY_GB, abs=0.1)


def test_a_driver_that_sees_no_gpu_says_so() -> None:
    probe = detect_gpus(nvml=FakeNvml([]), gputil=no_gputil)

    assert probe.source == "none"
    assert probe.message == "No NVIDIA GPU found (driver 550.54.15 sees none)."


def test_live_usage_is_the_busiest_gpu() -> None:
    gpus = [rtx_4090(), h100(utilization=82)]

    assert gpu_usage_percent(nvml=FakeNvml(gpus)) == 82.0
    assert gpu_usage_percent(nvml=FakeNvml(init_error=gpu.NVML_ERROR_DRIVER_NOT_LOADED)) is None


def test_gpu_score_is_zero_when_nothing_is_known() -> None:
    assert gpu_score(GpuInfo(0, "mystery", 0.0, 0.0, "", "")) == 0.0
